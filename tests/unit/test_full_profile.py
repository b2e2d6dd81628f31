"""The study's second edition (``full``): one profile made of the others.

No training: the union's rules, the full profile's definition, a run reported
under a second name (``same_as``) by the runner and the report.
"""

import dataclasses
import json

import pytest

from xlt_plugin.runs import append_metrics, metrics_path
from xlt_plugin.study.estimates import estimate
from xlt_plugin.study.full import full_profile, union
from xlt_plugin.study.own_profiles import REMAP_CHOSEN, remap_tiny_profile
from xlt_plugin.study.profiles import PROFILES
from xlt_plugin.study.reader import Study
from xlt_plugin.study.runner import execute, plan, write_definition, write_manifest
from xlt_plugin.study.spec import Corpus, Profile, Run


def _run(name, seed=1, **fields):
    over = {"number_of_epochs": 2, "seed": seed}
    return Run(name, "CommonVoice", "es_xfer.yaml", "es", "remap", "xfer",
               **{"overrides": over, **fields})  # fmt: skip


def test_union_trains_one_definition_once():
    first = _run("a")
    same = dataclasses.replace(
        _run("b"), overrides={"seed": 1, "number_of_epochs": 2}, task="language"
    )  # the same overrides in another order
    other = _run("c", seed=2)
    corpus = Corpus("es", "es", 10)
    both = union("u", [Profile("p", [corpus], [first]),
                       Profile("q", [corpus], [same, other, first])], "")  # fmt: skip
    assert [r.name for r in both.runs] == ["a", "b", "c"]
    assert [r.same_as for r in both.runs] == [None, "a", None]
    assert [r.name for r in both.trained()] == ["a", "c"]
    assert both.runs[1].task == "language"  # its own labels stay


def test_union_refuses_two_definitions_of_one_name():
    corpus = Corpus("es", "es", 10)
    with pytest.raises(ValueError, match="Corpus es differs"):
        union("u", [Profile("p", [corpus], []),
                    Profile("q", [Corpus("es", "es", 20)], [])], "")  # fmt: skip
    with pytest.raises(ValueError, match="Run a differs"):
        union("u", [Profile("p", [corpus], [_run("a")]),
                    Profile("q", [corpus], [_run("a", seed=2)])], "")  # fmt: skip


def test_a_second_name_must_name_a_trained_run():
    alias = _run("b", same_as="missing")
    with pytest.raises(ValueError, match="same_as 'missing'"):
        Profile("p", [], [_run("a"), alias]).trained()
    with pytest.raises(ValueError, match="its base 'b'"):
        Profile("p", [], [_run("a"), _run("b", same_as="a"), _run("c", base="b")]
                ).trained()  # fmt: skip


def test_full_profile_definition():
    profile = PROFILES["full"](seeds=2)
    assert profile is not None and profile.name == "full"
    trained = {r.name: r for r in profile.trained()}  # every second name resolves
    corpora = {c.name for c in profile.corpora}
    assert len(corpora) == len(profile.corpora)
    assert all(r.data in corpora for r in profile.runs)
    assert all(c.conditions == "realistic" for c in profile.corpora
               if c.name not in ("en_clean", "es_clean", "es_clean_10min"))  # fmt: skip
    for run in profile.runs:  # a second name is the same training
        if run.same_as:
            target = trained[run.same_as]
            assert (run.recipe, run.hparams, run.data) == (
                target.recipe, target.hparams, target.data), run.name  # fmt: skip
    chosen = REMAP_CHOSEN[0]
    names = {r.name: r for r in profile.runs}
    assert names["language_de_xfer_s2"].same_as == f"remap_de_all_{chosen}_s2"
    assert names["accent_en_xfer_s1"].same_as == "continual_accents_full_s1"
    assert names["accent_en_xfer_none_s1"].same_as is None  # trained here
    assert names["accent_en_xfer_none_s1"].overrides["remap_strategy"] == "none"
    # The ladder bases (2 seeds) and their Spanish transfers at every size.
    assert {r.name for r in profile.runs if r.task == "bases"} >= {
        "bases_quartznet_small_s2"}  # fmt: skip
    size = [r for r in profile.runs if r.task == "size" and r.variant == "xfer"]
    # Seed k of a transfer starts from seed k of its base.
    assert {(r.seed, r.base) for r in size if "mini" in r.base} == {
        (seed, f"bases_quartznet_mini_s{seed}") for seed in (1, 2)
    }  # fmt: skip
    assert {r.base for r in size if r.size == "all"} == {
        "bases_quartznet_tiny_s1", "bases_quartznet_mini_s1", "bases_quartznet_small_s1"
    }  # fmt: skip
    assert {r.size for r in size if r.seed == 2} == {"10min", "30min"}
    tasks = {r.task for r in profile.runs}
    assert tasks >= {"language", "accent", "domain", "size", "freezing", "remap",
                     "continual", "difficulty", "bases"}  # fmt: skip
    hours = estimate(profile)["hours"]
    assert f"About {hours:.0f} h" in profile.description
    assert estimate(full_profile(seeds=1))["hours"] < hours


def test_runner_and_report_read_a_second_name(tmp_path):
    """A second name is not trained: it takes its run's status and numbers."""
    profile = union("u", [remap_tiny_profile(1)], "")
    target = next(r for r in profile.runs if r.task == "remap" and r.size == "all")
    alias = dataclasses.replace(target, name="language_es_xfer_s1", task="language",
                                same_as=target.name)  # fmt: skip
    profile.runs.append(alias)
    folders = {c.name: tmp_path / "data" / c.name for c in profile.corpora}
    runs_dir = tmp_path / "runs"
    for run in profile.trained():  # every trained run already finished
        folder = runs_dir / run.name
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{}")
        write_definition(folder, dataclasses.asdict(run))
        append_metrics(metrics_path(folder), {"epoch": 2, "stage": "test",
                       "CER": 12.5, "WER": 40.0, "test_set": "test",
                       "zero_shot": False})  # fmt: skip
    status = execute(profile, folders, runs_dir, progress=False)
    assert status[alias.name] == status[target.name] == "ok"
    assert not (runs_dir / alias.name).exists()
    write_manifest(profile, folders, tmp_path)
    study = Study(tmp_path)
    assert study.path(alias.name) == runs_dir / target.name
    (run,) = study.select(task="language")
    assert run["name"] == alias.name and study.final(run) == 12.5
    assert json.loads((tmp_path / "study.json").read_text())["runs"][-1][
        "same_as"] == target.name  # fmt: skip
    # What is left: nothing; then one run whose definition changed.
    trained = len(profile.trained())
    assert f"({trained} finished, 0 left, 0 made by another" in plan(profile, tmp_path)
    write_definition(runs_dir / target.name, {"name": target.name, "seed": 9})
    text = plan(profile, tmp_path)
    assert f"({trained - 1} finished, 0 left, 1 made by another" in text
    assert f"changed: {target.name}" in text and "1 second names" in text


def test_plan_says_when_each_task_ends_and_how_runs_kept_to_their_estimate(tmp_path):
    """Finished runs that took twice their estimate (start to last log line):
    the plan says 2.00x; the tasks left get their end times."""
    import os

    from xlt_plugin.study.estimates import RUN_OVERHEAD_SECONDS, run_seconds

    profile = remap_tiny_profile(1)
    runs_dir = tmp_path / "runs"
    done = [r for r in profile.trained() if r.task == "base"]
    for run in done:
        folder = runs_dir / run.name
        folder.mkdir(parents=True)
        write_definition(folder, dataclasses.asdict(run))
        (folder / "log.txt").write_text("done\n")
        start = (folder / "study_definition.json").stat().st_mtime
        end = start + 2 * run_seconds(run, profile)
        os.utime(folder / "log.txt", (end, end))
        (folder / "model").mkdir()
        (folder / "model" / "config.json").write_text("{}")
        append_metrics(metrics_path(folder), {"epoch": 1, "stage": "test",
                       "CER": 50.0, "WER": 90.0, "test_set": "test",
                       "zero_shot": False})  # fmt: skip
    text = plan(profile, tmp_path)
    assert f"finished runs took 2.00x their estimate (median of {len(done)};" in text
    assert "each task's last run ends in about" not in text  # one task left
    # Checked out from a pack (file times now, the same second): the runs' own
    # clock (elapsed 3x the estimate, less the fixed overhead) stands in.
    for run in done:
        folder = runs_dir / run.name
        seconds = 3 * run_seconds(run, profile) - RUN_OVERHEAD_SECONDS
        append_metrics(metrics_path(folder), {"epoch": 1, "stage": "train",
                       "elapsed": seconds})  # fmt: skip
        now = (folder / "log.txt").stat().st_mtime - 2 * run_seconds(run, profile)
        os.utime(folder / "log.txt", (now, now))
        os.utime(folder / "study_definition.json", (now, now))
    assert "took 3.00x their estimate" in plan(profile, tmp_path)
    fresh = plan(profile, tmp_path / "elsewhere")  # nothing finished: two tasks
    assert "each task's last run ends in about: base " in fresh and ", remap " in fresh
    assert "finished runs took" not in fresh


def test_report_of_one_task_of_a_study_still_training(tmp_path, capsys):
    """``xlt report STUDY --task T`` reports T's runs (a second name read through
    its run, whose own task stays out) while the other runs are unfinished; a
    task the study lacks, or a run folder of another definition, is refused."""
    from xlt_plugin.cli import main
    from xlt_plugin.study.runner import read_profile

    profile = union("u", [remap_tiny_profile(1)], "")
    target = next(r for r in profile.runs if r.task == "remap" and r.size == "all")
    alias = dataclasses.replace(target, name="language_es_xfer_s1", task="language",
                                same_as=target.name)  # fmt: skip
    profile.runs.append(alias)
    study = tmp_path / "study"
    study.mkdir()
    write_manifest(profile, {c.name: study / "data" / c.name
                             for c in profile.corpora}, study)  # fmt: skip
    folder = study / "runs" / target.name  # the only finished run
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text("{}")
    write_definition(folder, dataclasses.asdict(target))
    append_metrics(metrics_path(folder), {"epoch": 2, "stage": "test", "CER": 12.5,
                   "WER": 40.0, "test_set": "test", "zero_shot": False})  # fmt: skip

    assert main(["report", str(study), "--task", "language"]) == 0
    view = tmp_path / "study-language"
    kept = read_profile(view)
    assert {r.task for r in kept.runs} == {"language", "base"}
    assert "remap" not in {r.task for r in kept.runs}
    (run,) = Study(view).select(task="language")
    assert Study(view).final(run) == 12.5
    text = (view / "REPORT.md").read_text(encoding="utf-8")
    assert text.startswith("# Cross-language transfer study (u profile, its "
                           "language runs)\n")  # fmt: skip
    assert "## Remap remedies" not in text and "the language runs of the u study" in (
        text.lower())  # fmt: skip

    assert main(["report", str(study), "--task", "nosuch"]) != 0
    assert "no run of task nosuch" in capsys.readouterr().err
    write_definition(folder, {"name": target.name, "seed": 9})
    assert main(["report", str(study), "--task", "language"]) != 0
    assert "made by another definition" in capsys.readouterr().err


def test_a_pinned_default_keeps_the_runs_that_trained_with_it(tmp_path):
    """A profile that names a recipe default (``augment: False``) keeps finished
    runs that trained with it, also when their definition predates a field
    (``same_as``); one that names another value does not."""
    from xlt_plugin.study.runner import definition_mismatch

    run = Run("r", "CommonVoice", "es_xfer.yaml", "es", "remap", "xfer",
              overrides={"seed": 1})  # fmt: skip
    old = dataclasses.asdict(run)
    del old["same_as"]  # written before the field existed
    write_definition(tmp_path, old)
    (tmp_path / "hyperparams.yaml").write_text(
        "seed: 1\naugment: false\naugmentation: !apply:f [false]\n"
    )
    pinned = dataclasses.replace(run, overrides={"seed": 1, "augment": False})
    assert definition_mismatch(tmp_path, dataclasses.asdict(pinned)) is None
    other = dataclasses.replace(run, overrides={"seed": 1, "augment": True})
    assert "augment" in definition_mismatch(tmp_path, dataclasses.asdict(other))
    moved = dataclasses.replace(pinned, data="de")
    assert "data: 'es' -> 'de'" in definition_mismatch(
        tmp_path, dataclasses.asdict(moved)
    )


def test_an_interrupted_run_counts_only_its_epochs_left():
    """The estimate of a run that trained half its epochs (it resumes from its
    last checkpoint) is half its training time plus the fixed overhead."""
    from xlt_plugin.study.estimates import (
        RUN_OVERHEAD_SECONDS,
        planned_epochs,
        run_seconds,
    )

    profile = remap_tiny_profile(1)
    base = next(r for r in profile.trained() if r.task == "base")
    others = frozenset(r.name for r in profile.trained() if r != base)
    full = run_seconds(base, profile)
    half = planned_epochs(base) / 2
    assert planned_epochs(base) % 2 == 0
    fresh = estimate(profile, 1, others)["train_hours"] * 3600
    resumed = estimate(profile, 1, others, {base.name: half})["train_hours"] * 3600
    assert fresh == pytest.approx(full)
    assert resumed == pytest.approx((full - RUN_OVERHEAD_SECONDS) / 2
                                    + RUN_OVERHEAD_SECONDS)  # fmt: skip


def test_plan_names_the_runs_started_and_not_finished(tmp_path):
    """A run folder with its definition and one trained epoch, no final test:
    the plan names it with its epochs, and counts only the epochs it has left."""
    from xlt_plugin.study.estimates import planned_epochs

    profile = remap_tiny_profile(1)
    base = next(r for r in profile.trained() if r.task == "base")
    folder = tmp_path / "runs" / base.name
    folder.mkdir(parents=True)
    write_definition(folder, dataclasses.asdict(base))
    append_metrics(metrics_path(folder), {"epoch": 1, "stage": "train", "loss": 1.0,
                   "seconds": 1.0, "elapsed": 1.0})  # fmt: skip
    text = plan(profile, tmp_path)
    assert (f"  started, not finished: {base.name} (epoch 1 of "
            f"{planned_epochs(base)})") in text  # fmt: skip
    assert "started, not finished" not in plan(profile, tmp_path / "elsewhere")
