"""Speed of ``xlt synth``: times realtime with 1 and with 2 synthesis jobs.

Synthesizes the same corpus (espeak-ng, resampling, noise, MP3 encoding and the
tsv files: everything ``xlt synth`` does) once with ``--jobs 1`` and once with
``--jobs 2``, and prints seconds of audio written per second of wall time.

Usage:
    python benchmarks/synth_speed.py [--lang es] [--utterances 200]
"""

import argparse
import os
import tempfile
import time

from xlt_plugin.synth.corpus import synthesize_corpus
from xlt_plugin.synth.texts import build_vocabulary


def measure(locale: str, utterances: int, jobs: int, root: str) -> tuple[float, float]:
    """Return (audio seconds, wall seconds) of one corpus."""
    out = os.path.join(root, f"{locale}-{jobs}")
    start = time.perf_counter()
    info = synthesize_corpus(out, locale, utterances, seed=0, jobs=jobs, progress=False)
    return info["total_seconds"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="es")
    parser.add_argument("--utterances", type=int, default=200)
    args = parser.parse_args()
    build_vocabulary(args.lang)  # word lists load once; keep them out of timings
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for jobs in (1, 2):
            audio, wall = measure(args.lang, args.utterances, jobs, root)
            results[jobs] = audio / wall
            print(
                f"--jobs {jobs}: {args.utterances} clips, {audio:.0f} s of audio "
                f"in {wall:.2f} s = {results[jobs]:.0f}x realtime"
            )
    print(f"speed-up with 2 jobs: {results[2] / results[1]:.2f}x (target >= 100x)")


if __name__ == "__main__":
    main()
