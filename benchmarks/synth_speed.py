"""Speed of ``xlt synth``: times realtime, clean and realistic conditions side by side.

Synthesizes the same corpus (espeak-ng, resampling, noise, MP3 encoding and the
tsv files: everything ``xlt synth`` does) with ``--conditions clean`` and with
``--conditions realistic`` (room pool, babble pool, noise, reverberation and
channel), for each number of jobs asked, and prints seconds of audio written
per second of wall time (and per CPU second, which a busy machine disturbs
less) and the ratio realistic / clean. The realistic
numbers include the corpus's one-off costs (importing pyroomacoustics,
simulating the room pool, speaking the babble pool), so they grow with the
corpus size.

Usage:
    python benchmarks/synth_speed.py [--lang es] [--utterances 200] [--jobs 1,2]
"""

import argparse
import os
import resource
import tempfile
import time

from xlt_plugin.synth.corpus import synthesize_corpus
from xlt_plugin.synth.texts import build_vocabulary


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    locale: str, utterances: int, jobs: int, conditions: str, root: str
) -> tuple[float, float, float]:
    """Return (audio seconds, wall seconds, CPU seconds) of one corpus."""
    out = os.path.join(root, f"{locale}-{jobs}-{conditions}")
    start, cpu = time.perf_counter(), cpu_seconds()
    info = synthesize_corpus(
        out,
        locale,
        utterances,
        seed=0,
        jobs=jobs,
        progress=False,
        conditions=conditions,
    )
    return info["total_seconds"], time.perf_counter() - start, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="es")
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--jobs", default="2", help="comma list, e.g. 1,2 (2)")
    parser.add_argument("--conditions", default="clean,realistic")
    args = parser.parse_args()
    build_vocabulary(args.lang)  # word lists load once; keep them out of timings
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    names = args.conditions.split(",")
    width = 40
    print(f"{'jobs':>4}  " + "  ".join(f"{n:>{width}}" for n in names) + "   ratio")
    with tempfile.TemporaryDirectory() as root:
        for jobs in (int(j) for j in args.jobs.split(",")):
            speeds, cells = [], []
            for name in names:
                audio, wall, cpu = measure(args.lang, args.utterances, jobs, name, root)
                speeds.append(audio / wall)
                cells.append(
                    f"{audio:4.0f} s in {wall:5.1f} s = {audio / wall:3.0f}x "
                    f"({audio / cpu:3.0f}x per CPU)"
                )
            ratio = f"{speeds[-1] / speeds[0]:.2f}" if len(speeds) > 1 else ""
            print(
                f"{jobs:>4}  "
                + "  ".join(f"{c:>{width}}" for c in cells)
                + f"   {ratio}"
            )
    print("target: realistic >= 60x realtime with 2 jobs on 2 cores")


if __name__ == "__main__":
    main()
