"""What the feature cache saves: one recipe trained twice side by side, with and
without ``feature_cache``, one thread each (the study's two one-thread jobs).

Both runs train the same model on the same corpus from the same seed
(``EnglishBase``, ``--encoder_preset`` given, no augmentation: cached features
take no waveform augmentation). The first epoch of the cached run computes and
writes the features; later epochs read them. It prints, per epoch, the training
seconds of each run from its ``metrics.jsonl``, and the ratio without / with
the cache over the epochs after the first (``feature_cache_speedup``, > 1: the
cache is faster) and in the first (``feature_cache_first_epoch``), and both
runs' dev CER at each epoch (the cache stores features in float16: the
curves should agree to within noise, not to the digit).

Without ``--data`` it first synthesizes a realistic English corpus of
``--utterances`` clips (600 by default, 480 of them for training, as the study's
task corpora: about a minute on 2 cores); ``--quick`` takes 20 clips and 2
epochs (a smoke test: its ratio means little).

Usage:
    python benchmarks/feature_cache.py [--data DATA_FOLDER] [--utterances 600]
        [--preset quartznet_tiny] [--epochs 4] [--out /tmp/feature_cache_bench]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from overhead import machine_line

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "EnglishBase"


def command(data: Path, out: Path, preset: str, epochs: int, cache: Path | None):
    """The recipe's command line for one of the two runs."""
    return [
        sys.executable,
        str(RECIPE / "train.py"),
        str(RECIPE / "hparams" / "quartznet_small.yaml"),
        f"--data_folder={data}",
        f"--output_folder={out}",
        f"--encoder_preset={preset}",
        f"--number_of_epochs={epochs}",
        "--augment=False",
        "--noprogressbar",
        f"--feature_cache={cache if cache else 'null'}",
    ]


def epochs_of(run: Path) -> dict[int, dict]:
    """epoch -> {"train_s": seconds, "dev_cer": CER} from a run's metrics."""
    rows: dict[int, dict] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("stage") == "train":
            rows.setdefault(record["epoch"], {})["train_s"] = record["seconds"]
        elif record.get("stage") == "valid":
            rows.setdefault(record["epoch"], {})["dev_cer"] = record["CER"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a CV-layout folder (default: made)")
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--preset", default="quartznet_tiny")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("/tmp/feature_cache_bench"))
    parser.add_argument("--quick", action="store_true", help="20 clips, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.epochs = 20, 2
    shutil.rmtree(args.out, ignore_errors=True)
    if args.data is None:
        from xlt_plugin.synth.corpus import synthesize_corpus

        args.data = args.out / "corpus"
        synthesize_corpus(args.data, "en", args.utterances, seed=1, jobs=2,
                          conditions="realistic", progress=False)  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    runs = {"no cache": args.out / "plain", "cache": args.out / "cached"}
    procs = []
    for name, run in runs.items():
        cache = args.out / "features" if name == "cache" else None
        run.mkdir(parents=True)
        log = open(run.parent / f"{run.name}.log", "w", encoding="utf-8")
        cmd = command(args.data, run, args.preset, args.epochs, cache)
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                       env=env), log))  # fmt: skip
    for proc, log in procs:
        if proc.wait():
            sys.exit(f"a run failed: see {log.name}")
        log.close()
    plain, cached = (epochs_of(run) for run in runs.values())
    print(machine_line())
    print(f"{args.preset} on {args.data}, two one-thread runs side by side")
    print("epoch | train s, no cache | train s, cache | dev CER, no cache | cache")
    for epoch in sorted(plain):
        a, b = plain[epoch], cached.get(epoch, {})
        print(f"{epoch:5d} | {a['train_s']:17.1f} | {b.get('train_s', 0):14.1f} | "
              f"{a.get('dev_cer', 0):17.1f} | {b.get('dev_cer', 0):5.1f}")  # fmt: skip
    later = [e for e in plain if e > 1 and e in cached]
    ratios = [plain[e]["train_s"] / cached[e]["train_s"] for e in later]
    first = plain[1]["train_s"] / cached[1]["train_s"]
    print(f"RESULT feature_cache_speedup: {statistics.mean(ratios):.2f} (target > 1)")
    print(f"RESULT feature_cache_first_epoch: {first:.2f} (target none)")


if __name__ == "__main__":
    main()
