"""The study pipeline end to end in its tiny profile, and the report's sources."""

import dataclasses
import json
import re

import pytest

from xlt_plugin.runs import final_tests, is_finished, read_metrics
from xlt_plugin.study import runner as study_mod
from xlt_plugin.study.reader import convergence_ratio, corpus_sizes
from xlt_plugin.study.spec import Corpus, Profile, Run


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = study_mod.run_study("tiny", out, jobs=2, progress=False)
    assert not result.failed, result.failed
    return out, result.report


def _row(report_text: str, *cells: str) -> list[str]:
    for line in report_text.splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if all(c in parts for c in cells):
            return parts
    raise AssertionError(f"no table row with {cells}")


def test_every_run_finished_and_report_has_every_section(tiny_study):
    out, report = tiny_study
    manifest = json.loads((out / "study.json").read_text())
    for run in manifest["runs"]:
        assert is_finished(out / "runs" / run["name"]), run["name"]
        kept = json.loads(
            (out / "runs" / run["name"] / study_mod.DEFINITION).read_text()
        )
        assert kept == json.loads(json.dumps(run))
    text = report.read_text()
    for heading in (
        "## 1. Languages",
        "## 2. Accents",
        "## 3. Domains",
        "## 4. Larger base",
        "## 5. Convergence",
        "## 7. Forgetting",
        "synthetic",
    ):
        assert heading in text
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "convergence_language_es.png" in figures and len(figures) == 3
    # Fine-tuning and scratch runs share one feature cache: their definitions
    # name it by reference, their commands by the study's folder.
    tuned = [r for r in manifest["runs"] if r["overrides"].get("feature_cache")]
    assert tuned and {r["overrides"]["feature_cache"] for r in tuned} == {
        "study:features"}  # fmt: skip
    for run in tuned:
        if not run.get("same_as"):
            command = (out / "runs" / run["name"] / "log.txt").read_text()
            assert f"--feature_cache={out / 'features'} " in command.splitlines()[0]
    assert len(list((out / "features").glob("*/*.pt"))) >= 16 + 12 + 12
    for name in figures:
        assert f"(figures/{name})" in text
        assert (out / "figures" / name).stat().st_size > 5000


def test_report_numbers_come_from_the_runs_files(tiny_study):
    out, report = tiny_study
    text = report.read_text()
    for variant, label in [
        ("scratch", "from scratch"),
        ("xfer", "transfer, head remapped (xlt_plugin)"),
    ]:
        records = read_metrics(out / "runs" / f"language_es_{variant}_s1")
        cer = final_tests(records)["test"]["CER"]
        row = _row(text, "es", label)
        assert row[2] == f"{cer:.1f}"
    remap = json.loads((out / "runs/language_es_xfer_s1/remap_report.json").read_text())
    row = _row(text, "es", "transfer, head remapped (xlt_plugin)")
    assert row[6] == f"{remap['copied'] + remap['averaged']}/{remap['n_target'] - 1}"
    # The claims list compares exactly the numbers in the table.
    claim = re.search(r"es: transfer test CER ([\d.]+) vs scratch (\d+\.\d)", text)
    assert claim and claim.group(2) == _row(text, "es", "from scratch")[2]


def test_rerun_reuses_finished_runs(tiny_study):
    out, _ = tiny_study
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/metrics.jsonl")}
    study_mod.run_study("tiny", out, jobs=2, progress=False)
    after = {p: p.stat().st_mtime for p in (out / "runs").glob("*/metrics.jsonl")}
    assert before == after  # nothing retrained


def test_a_packed_study_goes_on_in_another_folder(tiny_study, tmp_path):
    """`xlt pack` then `xlt unpack` elsewhere: the study there reuses every run
    (it makes the corpora again), and its report has the same numbers, the
    forgetting check's English scores included (cached in the run folders: the
    pack has no weights but the bases')."""
    from xlt_plugin.study.pack import pack_study, unpack_study

    out, report = tiny_study
    done = pack_study(out, tmp_path / "pack")
    manifest = json.loads((out / "study.json").read_text())
    trained = {r["name"] for r in manifest["runs"] if not r.get("same_as")}
    bases = {r["base"] for r in manifest["runs"] if r.get("base")}
    assert set(done["packed"]) == trained and not done["unfinished"]
    packed = tmp_path / "pack" / "runs"
    assert not list(packed.glob("*/save/CKPT*"))
    assert {p.parent.parent.name for p in packed.glob("*/model/*.ckpt")} == bases
    assert unpack_study(tmp_path / "pack", tmp_path / "new") == sorted(trained)
    result = study_mod.run_study("tiny", tmp_path / "new", jobs=2, progress=False)
    assert not result.failed
    for name in trained:  # nothing retrained
        assert (tmp_path / "new" / "runs" / name / "metrics.jsonl").read_bytes() == (
            out / "runs" / name / "metrics.jsonl").read_bytes()  # fmt: skip
    text, again = report.read_text(), result.report.read_text()
    for cells in [
        ("es", "from scratch"),
        ("es", "transfer, head remapped (xlt_plugin)"),
    ]:
        assert _row(again, *cells) == _row(text, *cells)
    section = text[text.index("## 7. Forgetting") :].split("\n## ")[0]
    assert section in again
    # The corpora made again are the same bytes; packing again says so.
    assert pack_study(tmp_path / "new", tmp_path / "pack")["corpora_changed"] == []


def test_convergence_ratio_edge_cases():
    s = [{"epoch": 1, "CER": 80.0}, {"epoch": 2, "CER": 50.0}]
    never = [{"epoch": 1, "CER": 90.0}, {"epoch": 2, "CER": 70.0}]
    assert convergence_ratio(never, s)["xfer_epochs"] is None
    assert convergence_ratio(never, s)["ratio"] is None
    assert convergence_ratio([], s)["ratio"] is None


def test_subset_keeps_dev_and_test(tmp_path, corpora):
    parent = corpora("es", 16)
    sub = study_mod.make_subset(parent, tmp_path / "sub", 4)
    assert len((sub / "train.tsv").read_text().splitlines()) == 5
    for split in ("dev", "test"):
        assert (sub / f"{split}.tsv").read_text() == (
            parent / f"{split}.tsv"
        ).read_text()
    sizes = corpus_sizes(sub)
    assert sizes["train"]["utterances"] == 4 and sizes["train"]["minutes"] > 0
    assert sizes["dev"] == corpus_sizes(parent)["dev"]
    with pytest.raises(ValueError, match="fewer than"):
        study_mod.make_subset(parent, tmp_path / "big", 10_000)


def test_pinning_the_value_a_run_used_keeps_the_run(tmp_path):
    """A profile that adds an override equal to what the run's hyperparams.yaml
    says it used (a recipe default pinned before it changes) keeps the run; an
    added override with another value, or a changed one, does not."""
    run = Run("r", "CommonVoice", "es_xfer.yaml", "es", "remap", "xfer",
              overrides={"seed": 1})  # fmt: skip
    folder = tmp_path / "r"
    folder.mkdir()
    study_mod.write_definition(folder, dataclasses.asdict(run))
    (folder / "hyperparams.yaml").write_text(
        "seed: 1\nhead_calibration: none\ncopy_blank: true\n"
        "output_folder: !ref results/<seed>\n",
        encoding="utf-8",
    )

    def mismatch(**overrides):
        new = dataclasses.replace(run, overrides={"seed": 1, **overrides})
        return study_mod.definition_mismatch(folder, dataclasses.asdict(new))

    assert mismatch(head_calibration="none", copy_blank=True) is None
    assert "head_calibration" in mismatch(head_calibration="rescale")
    assert "output_folder" in mismatch(output_folder="results/1")  # a !ref: unknown
    assert "seed" in study_mod.definition_mismatch(
        folder, dataclasses.asdict(dataclasses.replace(run, overrides={"seed": 2}))
    )


def test_changed_definitions_are_reported_not_reused(tmp_path):
    # A corpus folder made for 300 utterances, now asked for with 500.
    data = tmp_path / "data" / "es"
    data.mkdir(parents=True)
    (data / "validated.tsv").write_text("made earlier\n")
    study_mod.write_definition(data, dataclasses.asdict(Corpus("es", "es", 300)))
    profile = Profile("t", [Corpus("es", "es", 500)], [])
    with pytest.raises(ValueError, match="utterances: 300 -> 500"):
        study_mod.make_corpora(profile, tmp_path / "data")
    # A run folder made with another lr: neither reused nor overwritten, and the
    # run that starts from it is skipped.
    base = Run(
        "base", "EnglishBase", "quartznet_small.yaml", "es", "base", "small",
        overrides={"lr": 0.002},
    )  # fmt: skip
    runs_dir = tmp_path / "runs"
    (runs_dir / "base").mkdir(parents=True)
    study_mod.write_definition(runs_dir / "base", dataclasses.asdict(base))
    child = Run(
        "child", "CommonVoice", "es_xfer.yaml", "es", "language", "xfer", base="base"
    )
    changed = dataclasses.replace(base, overrides={"lr": 0.005})
    profile = Profile("t", [], [changed, child])
    status = study_mod.execute(profile, {"es": data}, runs_dir, progress=False)
    assert "lr" in status["base"] and "0.002" in status["base"]
    assert "delete it" in status["base"]
    assert status["child"].startswith("skipped")
    assert not (runs_dir / "child").exists()
    assert not (runs_dir / "base" / "log.txt").exists()
