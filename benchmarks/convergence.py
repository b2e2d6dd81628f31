"""How much sooner transfer converges: epochs to scratch's best dev CER, as a ratio.

For each task of a study folder (``xlt study``: ``study.json`` and
``runs/<name>/metrics.jsonl``) that has a from-scratch run and transfer runs on
the same data and seed, prints ``xlt_plugin.study.report.convergence_ratio``: the
epochs a transfer run needs to reach the scratch run's best dev CER, divided by
the epochs the scratch run needed (below 1: transfer converges sooner; "never":
it did not get there). The same ratio in training seconds (the runs' own
``elapsed``) follows, since a transfer epoch can cost more or less than a
scratch epoch. Seeds are paired; the median over seeds is the figure.

Nothing is timed here: the numbers come from the runs' files. ``--quick``
writes a small synthetic study folder first (two tasks, made-up curves) and
reads that, to exercise the script without a study.

Usage:
    python benchmarks/convergence.py results/study
    python benchmarks/convergence.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from xlt_plugin.runs import valid_curve
from xlt_plugin.study.report import Study, convergence_ratio


def write_fixture(folder: Path, epochs: int = 8) -> Path:
    """A study folder with two tasks and made-up dev CER curves.

    Scratch curves fall slowly, transfer curves start lower and fall faster;
    one task also has a head-re-initialised transfer (``xfer_none``).

    Arguments
    ---------
    folder : Path
        Where to write ``study.json`` and ``runs/``.
    epochs : int
        Epochs per run.

    Returns
    -------
    Path
        ``folder``.
    """
    curves = {
        ("language", "es", "scratch"): (100.0, 4.0, 20.0),
        ("language", "es", "xfer"): (60.0, 1.5, 15.0),
        ("language", "es", "xfer_none"): (80.0, 2.5, 18.0),
        ("accent", "en_accents", "scratch"): (90.0, 3.0, 25.0),
        ("accent", "en_accents", "xfer"): (40.0, 2.0, 22.0),
    }
    runs = []
    for (task, data, variant), (start, tau, floor) in curves.items():
        name = f"{task}_{data}_{variant}_s1"
        runs.append(
            {"name": name, "task": task, "data": data, "variant": variant, "seed": 1}
        )
        lines, elapsed = [], 0.0
        for epoch in range(1, epochs + 1):
            elapsed += 10.0 if variant == "scratch" else 12.0
            cer = floor + start * math.exp(-epoch / tau)
            for stage in ("train", "valid"):
                lines.append(
                    {"epoch": epoch, "stage": stage, "CER": cer, "elapsed": elapsed}
                )
        lines.append({"epoch": epochs, "stage": "test", "CER": cer, "test_set": None})
        out = folder / "runs" / name
        out.mkdir(parents=True)
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (out / "metrics.jsonl").write_text(text, encoding="utf-8")
    manifest = {"profile": "benchmark fixture", "runs": runs}
    (folder / "study.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def seconds_to(curve: list[dict], epoch: int | None) -> float | None:
    """Training seconds (``elapsed``) at the end of ``epoch`` (None: never)."""
    if epoch is None:
        return None
    return next((r.get("elapsed") for r in curve if r["epoch"] == epoch), None)


def pairs(study: Study) -> dict[tuple, list[tuple[dict, dict]]]:
    """(task, data, variant) -> [(transfer run, scratch run)], one per seed."""
    found: dict[tuple, list] = {}
    for scratch in study.select(variant="scratch"):
        for run in study.manifest["runs"]:
            same = all(run.get(k) == scratch.get(k) for k in ("task", "data", "seed"))
            if same and run is not scratch and study.records[run["name"]]:
                key = (run["task"], run["data"], run["variant"])
                found.setdefault(key, []).append((run, scratch))
    return found


def _fmt(value, digits: int = 2) -> str:
    return "never" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", nargs="?", help="a study folder (study.json)")
    parser.add_argument("--quick", action="store_true", help="use a made-up study")
    args = parser.parse_args(argv)
    if not args.quick and not args.study_dir:
        parser.error("give a study folder (with study.json), or --quick")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_fixture(Path(tmp)) if args.quick else Path(args.study_dir)
        if not (folder / "study.json").is_file():
            parser.error(
                f"{folder}/study.json is missing: give the folder `xlt study --out` "
                "wrote (it holds study.json and runs/)."
            )
        study = Study(folder)
        found = pairs(study)
        print(f"study: {folder} ({study.manifest.get('profile', '?')} profile)")
        if not found:
            print("no task has both a finished scratch run and a transfer run")
            return 1
        for (task, data, variant), runs in sorted(found.items()):
            ratios, second_ratios = [], []
            for run, scratch in runs:
                xfer_curve = valid_curve(study.records[run["name"]])
                scratch_curve = valid_curve(study.records[scratch["name"]])
                result = convergence_ratio(xfer_curve, scratch_curve)
                t_scratch = seconds_to(scratch_curve, result["scratch_epochs"])
                t_xfer = seconds_to(xfer_curve, result["xfer_epochs"])
                seconds = t_xfer / t_scratch if t_xfer and t_scratch else None
                ratios.append(result["ratio"])
                second_ratios.append(seconds)
                print(
                    f"{task} {data} {variant} seed {run.get('seed')}: scratch best "
                    f"dev CER {_fmt(result['target'], 1)} at epoch "
                    f"{result['scratch_epochs']} ({_fmt(t_scratch, 1)} s); transfer "
                    f"reaches it at epoch {_fmt(result['xfer_epochs'], 0)} "
                    f"({_fmt(t_xfer, 1)} s); ratio epochs {_fmt(result['ratio'])}, "
                    f"seconds {_fmt(seconds)}"
                )
            reached = [r for r in ratios if r is not None]
            # A seed that never got there counts as worse than any that did.
            figure = (
                statistics.median(reached) if len(reached) * 2 > len(ratios) else None
            )
            print(
                f"RESULT convergence_{task}_{data}_{variant}: {_fmt(figure)} "
                "(target < 1)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
