"""Smoke tests of the benchmarks: each runs in ``--quick`` mode and prints its lines.

Timings and ratios are never asserted (the machine is shared and noisy): only
that every figure is printed, well formed, with its target and the machine.
The scripts run in this process (``runpy``), except ``memory.py``'s child,
which must be a process of its own, and ``train_speed.py``, which sets torch's
thread count (process-wide state) and runs in a subprocess.
"""

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULT = re.compile(r"^RESULT (\w+): (\S+) \(target ([^)]+)\)$")


@pytest.fixture
def run_script(monkeypatch, capsys):
    """Run ``benchmarks/<name>`` as ``__main__`` with ``args``; its stdout."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import overhead.py

    def run(name, *args):
        monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *map(str, args)])
        try:
            runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
        except SystemExit as exit_:  # convergence.py exits with its status
            assert exit_.code in (0, None), capsys.readouterr()
        return capsys.readouterr().out

    return run


def results(out: str) -> dict[str, tuple[str, str]]:
    """RESULT name -> (value, target), in the format every script prints."""
    found = {}
    for line in out.splitlines():
        if line.startswith("RESULT"):
            match = RESULT.match(line)
            assert match, f"malformed RESULT line: {line!r}"
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def assert_numbers(found: dict, names: list[str]) -> None:
    assert sorted(found) == sorted(names)
    for name in names:
        float(found[name][0])  # a number, whatever its value


def test_overhead_quick(run_script):
    out = run_script("overhead.py", "--quick")
    assert "machine: " in out and "cpus=" in out and "torch threads=1" in out
    assert re.search(r"^bare +wall +s/step per block: ", out, re.M)
    assert re.search(r"^brain +cpu +s/step per block: ", out, re.M)
    found = results(out)
    assert_numbers(found, ["brain_overhead_percent", "brain_overhead_percent_cpu"])
    assert found["brain_overhead_percent"][1] == "<= 5"


def test_freezing_quick(run_script):
    out = run_script("freezing.py", "--quick")
    # The frozen variants leave the encoder out of the optimizer.
    counts = dict(re.findall(r"^(\w+) +trainable parameters +(\d+)", out, re.M))
    assert int(counts["frozen"]) < int(counts["frozen_bn"]) < int(counts["full"])
    found = results(out)
    assert_numbers(
        found,
        ["frozen_vs_full", "frozen_bn_vs_full", "frozen_vs_full_cpu"]
        + ["frozen_bn_vs_full_cpu"],
    )
    assert found["frozen_vs_full"][1] == "<= 0.5"


def test_memory_quick(run_script):
    out = run_script("memory.py", "--quick")
    assert re.search(r"^train peak RSS MB per child: \d+", out, re.M)
    found = results(out)
    assert_numbers(found, ["peak_rss_mb"])
    assert found["peak_rss_mb"][1] == "<= 2048"


def test_prep_speed_quick(run_script):
    out = run_script("prep_speed.py", "--quick")
    assert "prep kept 2000 of 2000 rows" in out
    assert re.search(r"^soundfile during prep: \d+ clips decoded", out, re.M)
    for name in ("csv", "prep", "decode", "header"):
        assert re.search(rf"^{name} +seconds per repeat: ", out, re.M), name
    found = results(out)
    assert_numbers(
        found,
        ["prep_rows_per_s", "prep_cost_vs_csv_read", "prep_clips_decoded_per_row"],
    )


def test_prep_memory_quick(run_script):
    out = run_script("prep_memory.py", "--quick")
    for name in ("floor", "quarter", "all"):
        assert re.search(rf"^{name} +[\d,]+ rows: peak RSS \d+ MB", out, re.M), name
    found = results(out)
    assert_numbers(found, ["prep_peak_rss_mb", "prep_rows_per_s"])
    assert found["prep_peak_rss_mb"][1] == "<= 2048"


def test_convergence_quick(run_script):
    out = run_script("convergence.py", "--quick")
    found = results(out)
    assert_numbers(
        found,
        [
            "convergence_language_es_xfer",
            "convergence_language_es_xfer_none",
            "convergence_accent_en_accents_xfer",
        ],
    )
    assert found["convergence_language_es_xfer"][1] == "< 1"


def test_convergence_reads_a_study_folder(run_script, tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from convergence import write_fixture
    finally:
        sys.path.remove(str(BENCHMARKS))
    from xlt_plugin.runs import read_metrics, valid_curve
    from xlt_plugin.study.report import convergence_ratio

    write_fixture(tmp_path)
    # A transfer that never reaches scratch's best: a flat, high curve.
    worse = tmp_path / "runs" / "accent_en_accents_xfer_s1" / "metrics.jsonl"
    lines = [json.loads(x) for x in worse.read_text().splitlines()]
    for line in lines:
        line["CER"] = 99.0
    worse.write_text("".join(json.dumps(x) + "\n" for x in lines))
    found = results(run_script("convergence.py", tmp_path))
    assert found["convergence_accent_en_accents_xfer"][0] == "never"
    expected = convergence_ratio(
        valid_curve(read_metrics(tmp_path / "runs" / "language_es_xfer_s1")),
        valid_curve(read_metrics(tmp_path / "runs" / "language_es_scratch_s1")),
    )["ratio"]
    assert found["convergence_language_es_xfer"][0] == f"{expected:.2f}"


def test_convergence_without_a_study_says_what_to_give(monkeypatch, tmp_path, capsys):
    script = str(BENCHMARKS / "convergence.py")
    for args in ([], [str(tmp_path)]):
        monkeypatch.setattr(sys, "argv", [script, *args])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(script, run_name="__main__")
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "give a study folder" in err
    assert f"{tmp_path}/study.json is missing" in err


def mean_sd(token: str) -> tuple[float, float]:
    """``mean+-sd`` as train_speed.py prints it."""
    mean, sd = token.split("+-")
    return float(mean), float(sd)


def test_train_speed_quick():
    # A subprocess: the script sets torch's thread count for the whole process.
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_speed.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "machine: " in out and "cpus=" in out
    assert re.search(r"^1 thread\(s\): sgemm \d+\.\d GFLOP/s$", out, re.M)
    presets = ("quartznet_tiny", "quartznet_mini")  # --quick's
    rows = re.findall(
        r"^(\w+) +(\d+) (old|new) +(\w+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) "
        r"+(\S+) +(\d+)$",
        out,
        re.M,
    )
    seen = {(preset, side) for preset, _, side, *_ in rows}
    assert seen == {(p, s) for p in presets for s in ("old", "new")}, out
    for _, threads, side, mode, rate, gflops, sgemm, mfu, pad, per, steps in rows:
        assert threads == "1"  # --quick's
        assert (side, mode) in (("old", "sorted"), ("new", "dynamic"))
        for token in (rate, gflops, mfu):
            mean, sd = mean_sd(token)
            assert mean > 0 and sd >= 0, token
        assert float(sgemm) > 0 and float(per) > 0 and int(steps) > 0
        assert 0 <= float(pad) <= 1
    ratios = dict(re.findall(r"^(\w+) +1 old/new wall (\S+) cpu \S+$", out, re.M))
    assert sorted(ratios) == sorted(presets), out
    for token in ratios.values():
        assert mean_sd(token)[0] > 0
    found = results(out)
    names = [f"padding_{m}" for m in ("random", "sorted", "dynamic_sb", "dynamic")]
    names += [f"old_vs_new_{p}_1t" for p in presets]
    names += [f"mfu_dynamic_{p}_1t" for p in presets]
    assert_numbers(found, names)
    assert found["old_vs_new_quartznet_tiny_1t"][1] == "> 1"
    for mode in ("random", "sorted", "dynamic_sb", "dynamic"):
        assert 0 <= float(found[f"padding_{mode}"][0]) <= 1
    # Sorted and bucketed batches pad less than shuffled fixed-size ones.
    assert float(found["padding_dynamic"][0]) < float(found["padding_random"][0])


def test_depthwise_quick(run_script):
    out = run_script("depthwise.py", "--quick")
    assert re.search(r"^quartznet_small B1 +K=13 conv +[\d.]+ ms \| shift x", out, re.M)
    found = results(out)
    assert_numbers(
        found,
        [
            "depthwise_shift_speedup",
            "depthwise_shift_step_speedup",
            "pointwise_share_of_sgemm",
        ],
    )


def test_feature_cache_quick(tmp_path):
    """Two recipe runs side by side: a subprocess (the recipes set torch state)."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "feature_cache.py"), "--quick",
         "--out", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    found = results(done.stdout)
    assert_numbers(found, ["feature_cache_speedup", "feature_cache_first_epoch"])
    assert found["feature_cache_speedup"][1] == "> 1"
    assert (tmp_path / "bench" / "features").is_dir()
