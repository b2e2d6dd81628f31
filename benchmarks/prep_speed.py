"""Rows per second of ``prepare_common_voice`` on a large tsv, and what it decodes.

A small corpus is synthesized (``xlt synth``, a few hundred clips); a Common
Voice folder is then made with a ``train.tsv`` of many rows, each row a copy of
a real row under its own clip name, hard-linked to one of the real clips. Every
row is thus a distinct, existing, decodable clip, as in a real release, without
synthesizing thousands of clips. (The clips are few and stay in the page cache:
a real release would add disk reads.)

Interleaved, several times:

- ``csv``: a plain ``csv.DictReader`` read of the same tsv (the floor: what
  reading the rows costs at all);
- ``prep``: ``prepare_common_voice`` into a fresh save folder, with soundfile's
  ``SoundFile.read``, ``read`` and ``info`` counted (which clips get decoded,
  which only have their header read);
- ``decode`` and ``header``: decoding each real clip once (``soundfile.read``)
  and reading each header once (``soundfile.info``), scaled to the row count:
  what a prep that decodes every clip, or one that reads only headers, costs
  at the least.

Usage:
    python benchmarks/prep_speed.py [--quick] [--rows 100000] [--clips 300]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf
from overhead import machine_line

from xlt_plugin.data.commonvoice import prepare_common_voice
from xlt_plugin.synth.corpus import synthesize_corpus

#: A 100k-row release prepared within 10 minutes on 2 cores. Issue 8 gives no
#: rows/s target; this is ours.
TARGET_ROWS_PER_SECOND = 100_000 / 600


def real_rows(corpus: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of every split of a synthesized corpus."""
    rows: list[dict] = []
    columns: list[str] = []
    for split in ("train", "dev", "test"):
        with open(corpus / f"{split}.tsv", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            columns = list(reader.fieldnames or [])
            rows += list(reader)
    return columns, rows


def make_large_folder(corpus: Path, out: Path, rows: int, locale: str) -> list[Path]:
    """A Common Voice folder whose ``train.tsv`` has ``rows`` distinct clips.

    Arguments
    ---------
    corpus : Path
        A synthesized corpus (the real clips).
    out : Path
        The folder to write (``train.tsv``, ``clips/``).
    rows : int
        Rows of ``train.tsv``.
    locale : str
        For the clip names.

    Returns
    -------
    list of Path
        The real clips the rows point at.
    """
    columns, sources = real_rows(corpus)
    clips = out / "clips"
    clips.mkdir(parents=True)
    real = [corpus / "clips" / row["path"] for row in sources]
    with open(out / "train.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=columns, delimiter="\t", quoting=csv.QUOTE_NONE
        )
        writer.writeheader()
        for i in range(rows):
            name = f"common_voice_{locale}_{i:08d}.mp3"
            source = real[i % len(real)]
            try:
                os.link(source, clips / name)
            except OSError:  # a file system without hard links
                os.symlink(source, clips / name)
            writer.writerow({**sources[i % len(sources)], "path": name})
    return real


def read_csv(tsv: Path) -> int:
    """Rows of the tsv read with ``csv.DictReader`` (the floor)."""
    with open(tsv, encoding="utf-8", newline="") as f:
        return len(list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)))


class SoundfileCounter(contextlib.AbstractContextManager):
    """Counts, while active, which files soundfile decodes or only inspects.

    ``decoded`` holds the names of files whose audio was read (``SoundFile.read``
    or ``soundfile.read``), ``inspected`` those whose header was read
    (``soundfile.info``). The wrappers cost about a microsecond a call.
    """

    def __init__(self):
        self.decoded: set[str] = set()
        self.inspected: set[str] = set()
        self.read_calls = 0
        self.info_calls = 0
        self._saved = {}

    def __enter__(self):
        counter = self
        block_read, whole_read, info = sf.SoundFile.read, sf.read, sf.info
        self._saved = {"block": block_read, "read": whole_read, "info": info}

        def counted_block_read(self, *args, **kwargs):
            counter.read_calls += 1
            counter.decoded.add(str(self.name))
            return block_read(self, *args, **kwargs)

        def counted_read(file, *args, **kwargs):
            counter.decoded.add(str(file))
            return whole_read(file, *args, **kwargs)

        def counted_info(file, *args, **kwargs):
            counter.info_calls += 1
            counter.inspected.add(str(file))
            return info(file, *args, **kwargs)

        sf.SoundFile.read, sf.read, sf.info = (
            counted_block_read,
            counted_read,
            counted_info,
        )
        return self

    def __exit__(self, *exc):
        sf.SoundFile.read = self._saved["block"]
        sf.read, sf.info = self._saved["read"], self._saved["info"]
        return False


def time_interleaved(runners: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each runner (called with the repeat index), order flipping."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](r)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds (tests)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--clips", type=int, default=300, help="real clips made")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--jobs", type=int, default=None, help="prep threads")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.clips, args.repeats = 2_000, 20, 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        info = synthesize_corpus(
            root / "corpus", args.lang, args.clips, seed=0, jobs=2, progress=False
        )
        folder = root / "cv"
        real = make_large_folder(root / "corpus", folder, args.rows, args.lang)
        print(
            f"{args.rows} rows over {len(real)} real clips "
            f"({info['total_seconds'] / len(real):.1f} s each on average), made in "
            f"{time.perf_counter() - start:.1f} s; {args.repeats} interleaved repeats"
        )
        counters, reports = [], []

        def csv_read(r):
            if read_csv(folder / "train.tsv") != args.rows:
                raise RuntimeError("the tsv lost rows")

        def prep(r):
            with SoundfileCounter() as counter:
                reports.append(
                    prepare_common_voice(
                        folder, root / f"save{r}", args.lang, ["train"], jobs=args.jobs
                    )
                )
            counters.append(counter)

        def decode(r):
            for clip in real:
                sf.read(clip, dtype="float32")

        def header(r):
            for clip in real:
                sf.info(str(clip))

        runners = {"csv": csv_read, "prep": prep, "decode": decode, "header": header}
        times = time_interleaved(runners, args.repeats)
    # decode and header ran once per real clip: scale them to the rows.
    for name in ("decode", "header"):
        times[name] = [t * args.rows / len(real) for t in times[name]]
    split = reports[-1]["splits"]["train"]
    print(
        f"prep kept {split['kept']} of {args.rows} rows; skipped: "
        f"{split['skipped'] or 'none'}"
    )
    for name, values in times.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        rate = args.rows / statistics.median(values)
        print(f"{name:6s} seconds per repeat: {shown}; {rate:,.0f} rows/s")
    counter = counters[-1]
    print(
        f"soundfile during prep: {len(counter.decoded)} clips decoded "
        f"({counter.read_calls} block reads), {len(counter.inspected)} headers "
        f"read ({counter.info_calls} calls), for {args.rows} rows"
    )
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        "prep time / decoding every clip once on one thread: "
        f"{median['prep'] / median['decode']:.2f}; / reading every header once: "
        f"{median['prep'] / median['header']:.1f}"
    )
    rate = args.rows / median["prep"]
    print(
        f"RESULT prep_rows_per_s: {rate:.0f} (target >= {TARGET_ROWS_PER_SECOND:.0f})"
    )
    cost = median["prep"] / median["csv"]
    print(f"RESULT prep_cost_vs_csv_read: {cost:.0f} (target none)")
    per_row = len(counter.decoded) / args.rows
    print(f"RESULT prep_clips_decoded_per_row: {per_row:.2f} (target 0)")


if __name__ == "__main__":
    main()
