"""Which letters a remapped head gets wrong: per-letter recall from test outputs.

Issue 13 lists, among the causes to check with numbers, that "copied rows of
letters whose sound differs between the languages pull the encoder toward
English early". If so, the plain remap should lose most, against the
re-initialised head, on those letters. This script reads the ``wer_test.txt``
of finished runs (SpeechBrain's alignments: each test sentence's reference and
hypothesis), aligns them character by character (jiwer) and prints, per start,
the recall of every reference letter (the share aligned to itself, pooled over
the seeds), then each group's recall (the letters that sound different in
English, and the others) as mean ± sd over the seeds, with each start's
difference to the reference start and its standard error ("lower"/"higher"
only beyond twice it, the study's standard).

The letter groups are a linguist's call, not a measurement: for each language,
the letters (or letters of digraphs) whose usual sound in the target differs
from English's (:data:`SOUND_DIFFERS`). Runs are grouped by the name of their
folder without the seed (``remap_es_10min_xfer_s1`` -> ``remap_es_10min_xfer``).

Usage (reads files only; seconds):
    python benchmarks/remap_letters.py --lang es \\
        /work/exp/study_own/runs/remap_es_10min_{xfer_none,xfer,calibrate}_s[123]
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import Counter
from pathlib import Path

#: Letters whose usual sound in the target differs from English's (es: j /x/,
#: h silent, v /b/, z and c before e/i /θ/, ll /ʝ/, ñ, the tapped or trilled r,
#: the pure vowels; de: w /v/, v /f/, z /ts/, j /j/, the umlauts and ß, ch /x,ç/,
#: ei/ie). Vowels count for both: their English values differ throughout.
SOUND_DIFFERS = {
    "es": set("jhvzlñraeiouáéíóúü"),
    "de": set("wvzjäöüßchaeiou"),
}


def read_alignments(path: Path) -> list[tuple[str, str]]:
    """(reference, hypothesis) of each sentence in a SpeechBrain ``wer_*.txt``.

    Example
    -------
    >>> import tempfile
    >>> text = ("=" * 80 + "\\nid1, %WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ]\\n"
    ...         " hola ; mundo\\n  =   ;   S  \\n hola ; mudo \\n" + "=" * 80 + "\\n")
    >>> f = Path(tempfile.mkdtemp()) / "wer_test.txt"
    >>> _ = f.write_text(text)
    >>> read_alignments(f)
    [('hola mundo', 'hola mudo')]
    """
    pairs = []
    for block in re.split(r"^=+$", path.read_text(encoding="utf-8"), flags=re.M):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if len(lines) != 4 or "%WER" not in lines[0]:
            continue

        def words(line: str) -> str:
            return " ".join(w.strip() for w in line.split(";") if w.strip() != "<eps>")

        pairs.append((words(lines[1]), words(lines[3])))
    return pairs


def letter_recall(pairs: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """Letter -> (times aligned to itself, times in the references).

    Example
    -------
    >>> letter_recall([("abc", "abd")])
    {'a': (1, 1), 'b': (1, 1), 'c': (0, 1)}
    """
    import jiwer

    hit, total = Counter(), Counter()
    for ref, hyp in pairs:
        if not ref:
            continue
        out = jiwer.process_characters(ref, hyp or " ")
        for chunk in out.alignments[0]:
            letters = ref[chunk.ref_start_idx : chunk.ref_end_idx]
            for ch in letters:
                if ch == " ":
                    continue
                total[ch] += 1
                hit[ch] += chunk.type == "equal"
    return {ch: (hit[ch], total[ch]) for ch in sorted(total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--lang", required=True, choices=sorted(SOUND_DIFFERS))
    parser.add_argument(
        "--reference", default=None, help="the start to compare with (default: "
        "the first whose name ends in xfer_none)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    starts: dict[str, list[dict]] = {}
    for run in args.runs:
        name = re.sub(r"_s\d+$", "", run.name)
        recall = letter_recall(read_alignments(run / "wer_test.txt"))
        starts.setdefault(name, []).append(recall)
    reference = args.reference or next(
        (s for s in starts if s.endswith("xfer_none")), next(iter(starts))
    )
    differs = SOUND_DIFFERS[args.lang]
    letters = sorted({ch for runs in starts.values() for r in runs for ch in r})

    def mean_recall(name: str, chars) -> float:
        # Pooled over the seeds and the letters: hits / occurrences.
        hits = sum(r.get(ch, (0, 0))[0] for r in starts[name] for ch in chars)
        total = sum(r.get(ch, (0, 0))[1] for r in starts[name] for ch in chars)
        return 100 * hits / total if total else float("nan")

    print("letter " + " ".join(f"{s[-14:]:>14s}" for s in starts))
    for ch in letters:
        mark = "*" if ch in differs else " "
        cells = " ".join(f"{mean_recall(s, [ch]):14.1f}" for s in starts)
        print(f"{ch}{mark}     {cells}")
    groups = {
        "sounds different": [c for c in letters if c in differs],
        "sounds alike": [c for c in letters if c not in differs],
    }
    print(f"\nrecall (%) per group: mean ± sd over seeds, and the difference to "
          f"{reference} with its standard error; * = sounds different")  # fmt: skip
    from xlt_plugin.study.evidence import compare_seeds

    def per_seed(name: str, chars) -> list[float]:
        values = []
        for r in starts[name]:
            hits = sum(r.get(ch, (0, 0))[0] for ch in chars)
            total = sum(r.get(ch, (0, 0))[1] for ch in chars)
            values.append(100 * hits / total if total else float("nan"))
        return values

    for label, chars in groups.items():
        cells = []
        for s in starts:
            values = per_seed(s, chars)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cell = f"{s}: {statistics.mean(values):.1f} ± {sd:.1f}"
            if s != reference:
                d = compare_seeds(values, per_seed(reference, chars))
                se = "n/a" if d.se is None else f"{d.se:.1f}"
                verdict = {-1: ", lower", 1: ", higher", 0: ""}[d.sign]
                cell += f" ({d.diff:+.1f}, SE {se}{verdict})"
            cells.append(cell)
        print(f"{label}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
