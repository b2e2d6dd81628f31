"""benchmarks/remap_letters.py: per-letter recall from SpeechBrain alignments."""

import runpy
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RULE = "=" * 80


def _wer_file(folder: Path, sentences: list[tuple[list[str], list[str]]]) -> None:
    """A wer_test.txt in SpeechBrain's layout: one block per sentence."""
    folder.mkdir(parents=True)
    lines = ["%WER 0.00 [ 0 / 1, 0 ins, 0 del, 0 sub ]", RULE, "ALIGNMENTS", RULE]
    for i, (ref, hyp) in enumerate(sentences):
        lines += [f"utt{i}, %WER 0.00 [ 0 / 1, 0 ins, 0 del, 0 sub ]",
                  " ; ".join(ref), " ; ".join("=" * len(ref)), " ; ".join(hyp),
                  RULE]  # fmt: skip
    (folder / "wer_test.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_letters_that_sound_different_are_scored_apart(tmp_path, monkeypatch, capsys):
    # The re-initialised head gets every letter; the remap misses every 'j' (a
    # letter that sounds different in Spanish) and nothing else.
    for seed in (1, 2):
        _wer_file(tmp_path / f"remap_es_xfer_none_s{seed}",
                  [(["jota", "sol"], ["jota", "sol"])] * 3)  # fmt: skip
        _wer_file(tmp_path / f"remap_es_xfer_s{seed}",
                  [(["jota", "sol"], ["ota", "sol"])] * 3)  # fmt: skip
    args = [str(tmp_path / f"remap_es_{v}_s{s}") for v in ("xfer_none", "xfer")
            for s in (1, 2)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["remap_letters.py", "--lang", "es", *args])
    try:
        runpy.run_path(str(BENCHMARKS / "remap_letters.py"), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    j_row = next(line for line in out.splitlines() if line.startswith("j*"))
    assert j_row.split()[1:] == ["100.0", "0.0"]
    # j, o, a, l sound different in Spanish: j, o, a of "jota" and o, l of "sol"
    # (5 letters) -> the remap recalls 4 of them; t and s sound alike: both.
    different = next(line for line in out.splitlines()
                     if line.startswith("sounds different:"))  # fmt: skip
    assert "remap_es_xfer: 80.0 ± 0.0 (-20.0, SE 0.0, lower)" in different
    alike = next(line for line in out.splitlines() if line.startswith("sounds alike:"))
    assert "remap_es_xfer: 100.0 ± 0.0 (+0.0, SE 0.0)" in alike
