"""Peak memory (RSS) and rows per second of the Common Voice prep on a large release.

The release is made as ``prep_speed.py`` makes it (reused from there): a small
synthesized corpus, then a ``train.tsv`` of ``--rows`` rows (default one
million), each row its own clip name hard-linked to one of the real clips.

``prepare_common_voice`` runs in a child process of its own, whose peak
resident set it reports as it exits: ``VmHWM`` of ``/proc/self/status`` on
Linux, the kernel's high-water mark of the child's own memory. (``ru_maxrss``
from ``os.wait4`` is not that: Linux carries the parent's resident set over
``fork`` and ``exec`` into it, so a child of this 600 MB script would never
read less than 600 MB; it is the fallback elsewhere.) The memory of this
script (torch, the synthesizer, the tsv writer) does not count.

Three children: the floor (imports the prep, prepares nothing), the prep of the
first quarter of the rows and the prep of all of them; the growth between the
last two, per row, extrapolates the peak to a million rows when ``--rows`` is
smaller (a rough figure, printed from 20k rows up: allocator noise swamps the
growth of smaller runs).

Usage:
    python benchmarks/prep_memory.py [--quick] [--rows 1000000] [--clips 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The issue's target for a 1,000,000-row release.
TARGET_MB = 2048
MILLION = 1_000_000


def child(folder: str, save: str, lang: str, jobs: int | None) -> None:
    """Prepare ``folder``'s train.tsv ("": only import the prep); print JSON."""
    from xlt_plugin.data.commonvoice import prepare_common_voice

    result = {"rows": 0, "kept": 0, "seconds": 0.0}
    if folder:
        start = time.perf_counter()
        report = prepare_common_voice(folder, save, lang, ["train"], jobs=jobs)
        result["seconds"] = time.perf_counter() - start
        result.update({k: report["splits"]["train"][k] for k in ("rows", "kept")})
    result["peak_rss_mb"] = own_peak_rss_mb()
    print(json.dumps(result))


def own_peak_rss_mb() -> float | None:
    """This process's peak resident set in MB (``VmHWM``), None where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            line = next(ln for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024  # kB


def run_child(argv: list[str]) -> tuple[float, dict]:
    """Run this script as a child with ``argv``: (its peak RSS in MB, its JSON).

    Arguments
    ---------
    argv : list of str
        Arguments of the child (``--child ...``).

    Returns
    -------
    (float, dict)
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # wait4 reaps the child and returns the rusage of that one process.
        _, status, usage = os.wait4(proc.pid, 0)
        log.seek(0)
        out = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {argv} failed:\n{out[-2000:]}")
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("{"))
    result = json.loads(line)
    if result["peak_rss_mb"] is not None:
        return result["peak_rss_mb"], result
    # Includes this process's own peak (see the module docstring). Linux reports
    # KiB, macOS bytes.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss / scale, result


def first_rows(folder: Path, out: Path, rows: int) -> None:
    """A release with the first ``rows`` rows of ``folder``'s train.tsv, same clips."""
    out.mkdir()
    (out / "clips").symlink_to((folder / "clips").resolve())
    with open(folder / "train.tsv", encoding="utf-8") as src:
        with open(out / "train.tsv", "w", encoding="utf-8") as dst:
            for n, line in enumerate(src):
                if n > rows:
                    break
                dst.write(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds (tests)")
    parser.add_argument("--rows", type=int, default=MILLION)
    parser.add_argument("--clips", type=int, default=20, help="real clips made")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--jobs", type=int, default=None, help="prep threads")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.lang, args.jobs)
        return
    if args.quick:
        args.rows, args.clips = 2_000, 10
    # The parent alone imports torch (machine_line) and the synthesizer.
    from overhead import machine_line
    from prep_speed import TARGET_ROWS_PER_SECOND, make_large_folder

    from xlt_plugin.synth.corpus import synthesize_corpus

    print(machine_line())
    jobs = [f"--jobs={args.jobs}"] if args.jobs else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        synthesize_corpus(
            root / "corpus", args.lang, args.clips, seed=0, jobs=2, progress=False
        )
        make_large_folder(root / "corpus", root / "cv", args.rows, args.lang)
        quarter = max(1, args.rows // 4)
        first_rows(root / "cv", root / "quarter", quarter)
        print(
            f"{args.rows} rows over {args.clips} real clips, made in "
            f"{time.perf_counter() - start:.1f} s"
        )
        peaks, outs = {}, {}
        for name, folder, rows in (
            ("floor", "", 0),
            ("quarter", root / "quarter", quarter),
            ("all", root / "cv", args.rows),
        ):
            argv = ["--child", str(folder), str(root / f"save-{name}"), *jobs]
            peaks[name], outs[name] = run_child([*argv, f"--lang={args.lang}"])
            seconds = outs[name]["seconds"]
            rate = f"{rows / seconds:,.0f} rows/s" if rows else "imports only"
            print(
                f"{name:7s} {rows:>9,} rows: peak RSS {peaks[name]:.0f} MB, "
                f"{seconds:.1f} s ({rate}), kept {outs[name]['kept']:,}"
            )
    if outs["all"]["rows"] != args.rows:
        raise RuntimeError(f"the prep read {outs['all']['rows']} of {args.rows} rows")
    grown = max(0.0, peaks["all"] - peaks["quarter"])
    per_row = grown / max(1, args.rows - quarter)
    print(
        f"the prep adds {peaks['all'] - peaks['floor']:.0f} MB to the "
        f"{peaks['floor']:.0f} MB floor; {per_row * 100_000:.1f} MB per 100k rows "
        f"between {quarter:,} and {args.rows:,} rows"
    )
    # Rough, and only from 20k rows: below, allocator noise swamps the growth.
    if 20_000 <= args.rows < MILLION:
        estimate = peaks["all"] + per_row * (MILLION - args.rows)
        print(f"extrapolated to {MILLION:,} rows: {estimate:.0f} MB")
    rate = args.rows / outs["all"]["seconds"]
    print(f"RESULT prep_peak_rss_mb: {peaks['all']:.0f} (target <= {TARGET_MB})")
    print(
        f"RESULT prep_rows_per_s: {rate:.0f} (target >= {TARGET_ROWS_PER_SECOND:.0f})"
    )


if __name__ == "__main__":
    main()
