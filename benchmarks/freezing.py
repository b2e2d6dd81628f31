"""Seconds per training step with a frozen encoder, relative to full fine-tuning.

Three ``CTCTransferBrain`` s train copies of the same model on the same batches,
each with its optimizer built by the Brain from an ``xlt_plugin.freeze`` schedule
(what a transfer YAML's ``unfreezing`` gives):

- ``full``: everything trains (full fine-tuning);
- ``frozen``: ``StagedUnfreezing("encoder")``: only the head trains, frozen
  BatchNorm layers run in eval mode, and no gradient flows into the encoder;
- ``frozen_bn``: the same with ``keep_batchnorm_trainable=True`` (NeMo's
  remedy): the BatchNorm affine parameters train, so the backward pass still
  runs through the whole encoder, only the convolution weight gradients are
  skipped.

Blocks of steps of the three run interleaved; ratios are medians over repeats of
each block's seconds per step over the ``full`` block of the same repeat.

Usage:
    python benchmarks/freezing.py [--quick] [--preset quartznet_medium]
"""

from __future__ import annotations

import argparse
import copy
import statistics

from overhead import (
    add_common_arguments,
    brain_step,
    build_modules,
    interleaved,
    machine_line,
    make_batches,
    make_brain,
    paired_ratio,
    parse_common,
    print_blocks,
)

from xlt_plugin.freeze import StagedUnfreezing

#: Variant name -> freezing schedule (None: full fine-tuning).
VARIANTS = {
    "full": lambda: None,
    "frozen": lambda: StagedUnfreezing("encoder"),
    "frozen_bn": lambda: StagedUnfreezing("encoder", keep_batchnorm_trainable=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, seconds=4.0, repeats=8, steps=2)
    args, preset = parse_common(parser, quick_repeats=2, quick_steps=1)
    print(machine_line())
    total = args.repeats * args.steps + 1
    batches = make_batches(4, args.batch, args.seconds)
    modules = build_modules(preset)
    brains = {
        name: make_brain(copy.deepcopy(modules), total, unfreezing=schedule())
        for name, schedule in VARIANTS.items()
    }
    print(
        f"model: {preset} + head, batch {args.batch} x {args.seconds:g} s, "
        f"{args.repeats} blocks of {args.steps} steps per variant, interleaved"
    )
    for name, brain in brains.items():
        params = brain.modules.parameters()
        trainable = sum(p.numel() for p in params if p.requires_grad)
        in_optimizer = sum(
            p.numel() for g in brain.optimizer.param_groups for p in g["params"]
        )
        print(
            f"{name:9s} trainable parameters {trainable:>8d}, in the optimizer "
            f"{in_optimizer:>8d}"
        )
    runners = {name: brain_step(brain) for name, brain in brains.items()}
    times = interleaved(runners, batches, args.repeats, args.steps)
    print_blocks(times)
    for clock in ("wall", "cpu"):
        medians = {n: statistics.median(t[clock]) for n, t in times.items()}
        print(
            f"{clock} s/step (medians): "
            + ", ".join(f"{n} {m:.4f}" for n, m in medians.items())
        )
    ratios = {}
    for name in ("frozen", "frozen_bn"):
        for clock in ("cpu", "wall"):
            ratios[name, clock] = paired_ratio(times[name][clock], times["full"][clock])
    targets = {"frozen": "<= 0.5", "frozen_bn": "< 1"}
    for clock, suffix in (("cpu", "_cpu"), ("wall", "")):
        for name, target in targets.items():
            value = ratios[name, clock]
            print(f"RESULT {name}_vs_full{suffix}: {value:.2f} (target {target})")


if __name__ == "__main__":
    main()
