"""Smoke tests of the benchmarks: each runs in ``--quick`` mode and prints its lines.

Timings and ratios are never asserted (the machine is shared and noisy): only
that every figure is printed, well formed, with its target and the machine.
The scripts run in this process (``runpy``), except ``memory.py``'s child,
which must be a process of its own.
"""

import json
import re
import runpy
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
