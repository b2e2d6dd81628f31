"""Smoke test of ``benchmarks/rtf.py --quick``: both beam engines side by side,
their ratio, and the acoustic model's ratio to its FLOP floor with its spread.
Timings are printed, never asserted (the machine is shared)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from xlt_plugin.decode.flashlight import flashlight_available

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rtf.py"
RESULT = re.compile(r"^RESULT (\w+): (\S+) \(target ([^)]+)\)$", re.M)


def test_rtf_quick_prints_both_engines():
    if not flashlight_available():
        pytest.skip("flashlight-text not installed (extra [lm])")
    # A subprocess: the script sets process-wide torch state (grad mode, threads).
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--profile"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "beam engines: python, flashlight" in out
    assert re.search(r"acoustic model +RTF \S+ \+- \S+ \(mean \+- sd over 2", out)
    assert re.search(r"measured / floor = \S+ \+- \S+x", out)
    shares = dict(
        (kind, float(pct))
        for kind, pct in re.findall(
            r"^ +(depthwise|pointwise|head|other) +(\S+) %", out, re.M
        )
    )
    assert set(shares) == {"depthwise", "pointwise", "head", "other"}
    assert abs(sum(shares.values()) - 100.0) < 0.5  # every second of the forward
    for engine in ("python", "flashlight"):
        assert re.search(rf"beam 16 \+ 3-gram LM +{engine} +RTF \d", out), engine
    assert re.search(r"beam 16 \+ 3-gram LM: python / flashlight RTF = \S+x", out)
    found = {name: (value, target) for name, value, target in RESULT.findall(out)}
    assert sorted(found) == [
        "acoustic_vs_floor_quartznet_small",
        "beam_lm_rtf_flashlight",
        "beam_lm_speedup",
    ]
    assert found["beam_lm_rtf_flashlight"][1] == "<= 0.03"
    for value, _ in found.values():
        float(value)
