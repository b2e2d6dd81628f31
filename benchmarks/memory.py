"""Peak memory (RSS) of training the small English base, in MB.

A child process trains the base model (``quartznet_small`` + head through
``CTCTransferBrain.fit_batch``) for a few steps on the largest batches the
English base recipe admits (``batch_size`` 8, clips up to ``max_duration`` 12 s);
another child does everything but the training steps (imports, model, Brain,
batches): the floor that torch and SpeechBrain cost before any step. The peak
resident set of each child (``ru_maxrss`` from ``os.wait4``, the kernel's own
high-water mark of that process) is read when it exits. The two kinds of child
run alternately, several times; medians are printed.

Usage:
    python benchmarks/memory.py [--quick] [--steps 6] [--seconds 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import torch
from overhead import (
    add_common_arguments,
    brain_step,
    build_modules,
    machine_line,
    make_batches,
    make_brain,
    parse_common,
)


def child(preset: str, batch: int, seconds: float, steps: int) -> None:
    """Build everything, then train ``steps`` steps (0: the floor)."""
    batches = make_batches(min(max(steps, 1), 3), batch, seconds)
    brain = make_brain(build_modules(preset), max(steps, 1))
    step = brain_step(brain)
    for s in range(steps):
        loss = step(batches[s % len(batches)])
        if not torch.isfinite(loss):
            raise SystemExit(f"non-finite loss at step {s}")


def peak_rss_mb(argv: list[str], threads: int) -> float:
    """Run this script as a child with ``argv``; its peak RSS in MB.

    Arguments
    ---------
    argv : list of str
        Arguments of the child (``--child ...``).
    threads : int
        Torch / OpenMP threads of the child.

    Returns
    -------
    float
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # wait4 reaps the child and returns the rusage of that one process.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"child {argv} failed ({proc.returncode}):\n{tail}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, seconds=12.0, repeats=2, steps=6)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, preset = parse_common(parser, quick_repeats=1, quick_steps=2)
    if args.child:
        child(preset, args.batch, args.seconds, args.steps)
        return
    print(machine_line())
    common = [
        "--child",
        f"--preset={preset}",
        f"--threads={args.threads}",
        f"--batch={args.batch}",
        f"--seconds={args.seconds}",
    ]
    kinds = {
        "floor": [*common, "--steps=0"],
        "train": [*common, f"--steps={args.steps}"],
    }
    if args.quick:  # one child only: each costs seconds of imports alone
        del kinds["floor"]
    print(
        f"model: {preset} + head, batch {args.batch} x {args.seconds:g} s, "
        f"{args.steps} training steps; {args.repeats} x ({', '.join(kinds)}) "
        "children, alternating"
    )
    peaks: dict[str, list[float]] = {name: [] for name in kinds}
    for r in range(args.repeats):
        for name in kinds if r % 2 == 0 else list(kinds)[::-1]:
            peaks[name].append(peak_rss_mb(kinds[name], args.threads))
    for name, values in peaks.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        median = statistics.median(values)
        print(f"{name:5s} peak RSS MB per child: {shown}; median {median:.0f}")
    train = statistics.median(peaks["train"])
    if "floor" in peaks:
        floor = statistics.median(peaks["floor"])
        print(f"training adds {train - floor:.0f} MB to the {floor:.0f} MB floor")
    print(f"RESULT peak_rss_mb: {train:.0f} (target <= 2048)")


if __name__ == "__main__":
    main()
