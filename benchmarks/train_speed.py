"""Training throughput on this CPU: audio seconds per second, FLOP use, padding.

For each encoder preset and torch thread count, the real training step of the
recipes (Fbank 64 mels, sentence normalisation, QuartzNet, linear CTC head, CTC
loss, AdamW with the layer-wise groups, warmup-cosine lr, gradient clipping:
``overhead.BareLoop``, within 1-2 % of ``CTCTransferBrain.fit_batch``) trains
on synthetic batches of one epoch of clips whose durations follow a Common
Voice-like distribution (log-normal, median 4 s, clipped to 2-7 s; or the
``duration`` column of a manifest with ``--durations``). It prints:

- audio seconds trained per wall second, mean +- sd over ``--repeats`` blocks;
- forward + backward FLOPs per audio second, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on one utterance (torch 2.14
  counts a grouped convolution's weight gradient ``groups`` times over: the
  count here divides it back, as pytorch/pytorch#183405 does);
- the machine's sgemm rate (``rtf.sgemm_flops``, timed at each thread count)
  and the model FLOP utilisation: useful FLOP/s (real audio only, padding
  counts as waste) / sgemm FLOP/s;
- the share of padded frames of an epoch for each batching: ``random``
  (fixed batch size, shuffled), ``sorted`` (fixed batch size in ascending
  duration: what the recipes do now, ``sorting: ascending``), ``dynamic_sb``
  (SpeechBrain's ``DynamicBatchSampler`` with its own ``num_buckets``) and
  ``dynamic`` (the pipeline's ``dynamic_batching``: the same sampler with
  buckets at quantiles of the durations,
  :func:`xlt_plugin.data.pipeline.dynamic_batch_sampler`);
- old / new: seconds per audio second of the ``--old`` batching (default
  ``sorted``) over the ``--new`` one (default ``dynamic``), paired block by
  block (> 1: new is faster), in wall and in process CPU time.

Old and new train from the same weights in interleaved blocks (A B, B A, ...).
Each block trains ``--steps`` batches picked across the epoch (batches ordered
by their longest clip, one from each of ``--steps`` equal strata, at another
offset each repeat), so short and long batches weigh as in a whole epoch. A
dynamic batch holds at most ``--max-batch-seconds`` of padded audio, by default
``--batch`` x the longest clip: the old path's worst batch, so the same peak
memory (short clips then come in larger batches: fewer steps per epoch).

``--profile`` prints the ops that take the time (``torch.profiler``) for each
preset. The default run takes several minutes on 2 cores (``quartznet15x5``
alone most of it: about 230 GFLOP per step); ``--quick`` a few seconds.

Usage:
    python benchmarks/train_speed.py [--presets quartznet_small ...]
        [--threads 1 2] [--steps 2] [--repeats 3] [--old sorted]
        [--new dynamic] [--profile] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import csv

import numpy as np
import torch
from overhead import (
    CHARS_PER_SECOND,
    N_TOKENS,
    SAMPLE_RATE,
    BareLoop,
    build_modules,
    interleaved,
    machine_line,
)
from rtf import mean_sd, sgemm_flops
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.sampler import DynamicBatchSampler
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from xlt_plugin.data.pipeline import dynamic_batch_sampler, padding_fraction

PRESETS = ("quartznet_tiny", "quartznet_mini", "quartznet_small", "quartznet15x5")
MODES = ("random", "sorted", "dynamic_sb", "dynamic")
MAX_GRAD_NORM = 5.0  # SpeechBrain's default, as overhead.py


def clip_durations(
    count: int,
    seed: int = 0,
    median: float = 4.0,
    sigma: float = 0.3,
    low: float = 2.0,
    high: float = 7.0,
) -> np.ndarray:
    """Durations of a Common Voice-like training set (seconds).

    Log-normal around ``median`` (10-90 % at about 2.7-5.9 s with the
    defaults), clipped to [``low``, ``high``].

    Arguments
    ---------
    count : int
        Utterances.
    seed : int
        Seed of the draw.
    median, sigma : float
        Of the log-normal.
    low, high : float
        Shortest and longest clip.

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> d = clip_durations(1000)
    >>> bool(d.min() >= 2.0 and d.max() <= 7.0 and 3.5 < np.median(d) < 4.5)
    True
    """
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(median), sigma, count), low, high)


def manifest_durations(path: str) -> np.ndarray:
    """The ``duration`` column of a recipe manifest (e.g. ``save/train.csv``)."""
    with open(path, encoding="utf-8", newline="") as f:
        return np.array([float(row["duration"]) for row in csv.DictReader(f)])


def epoch_batches(
    mode: str,
    durations: np.ndarray,
    batch_size: int,
    max_batch_seconds: float,
    num_buckets: int,
    seed: int = 0,
) -> list[list[int]]:
    """The batches (utterance indices) of one epoch under a batching mode.

    Arguments
    ---------
    mode : str
        One of ``MODES`` (see the module docstring).
    durations : numpy.ndarray
        Seconds of each utterance.
    batch_size : int
        Utterances per batch of the fixed-size modes.
    max_batch_seconds : float
        Padded seconds per batch at most (dynamic modes).
    num_buckets : int
        Buckets of the dynamic modes.
    seed : int
        Seed of the shuffles.

    Returns
    -------
    list of list of int

    Example
    -------
    >>> d = np.array([3.0, 1.0, 2.0, 4.0])
    >>> epoch_batches("sorted", d, 2, 8.0, 2)
    [[1, 2], [0, 3]]
    """
    n = len(durations)
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n).tolist()
    elif mode == "sorted":  # filtered_sorted(sort_key="duration"), no shuffle
        order = np.argsort(durations, kind="stable").tolist()
    else:
        rows = {f"u{i}": {"duration": float(d)} for i, d in enumerate(durations)}
        dataset = DynamicItemDataset(rows)
        if mode == "dynamic":
            settings = {"max_batch_length": max_batch_seconds}
            settings["num_buckets"] = num_buckets
            return list(dynamic_batch_sampler(dataset, settings, seed=seed))
        if mode == "dynamic_sb":
            sampler = DynamicBatchSampler(
                dataset, max_batch_seconds, num_buckets, seed=seed
            )
            return list(sampler)
        raise ValueError(f"unknown batching {mode!r}: one of {', '.join(MODES)}")
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def spread_over_epoch(
    batches: list[list[int]], durations: np.ndarray, steps: int, repeats: int
) -> list[list[int]]:
    """``steps`` batches per repeat, one from each stratum of the epoch.

    Batches are ordered by their longest clip and cut into ``steps`` equal
    strata; repeat ``r`` takes the batch at offset ``(r + 0.5) / repeats``
    of each stratum, so every repeat weighs short and long batches as the
    whole epoch does.

    Example
    -------
    >>> d = np.arange(1.0, 9.0)
    >>> spread_over_epoch([[i] for i in range(8)], d, steps=2, repeats=2)
    [[1], [5], [3], [7]]
    """
    ranked = sorted(batches, key=lambda b: max(durations[i] for i in b))
    n = len(ranked)
    return [
        ranked[min(n - 1, int((k + (r + 0.5) / repeats) * n / steps))]
        for r in range(repeats)
        for k in range(steps)
    ]


def padded_batch(
    indices: list[int], durations: np.ndarray, gen: torch.Generator
) -> PaddedBatch:
    """Noise-like audio of each clip's duration, with speech-length targets."""
    items = []
    for i in indices:
        seconds = float(durations[i])
        labels = max(1, int(seconds * CHARS_PER_SECOND))
        items.append(
            {
                "id": f"u{i}",
                "sig": 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=gen),
                "tokens": torch.randint(1, N_TOKENS, (labels,), generator=gen),
            }
        )
    return PaddedBatch(items)


def grouped_conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape,
    **kwargs,
) -> int:
    """FLOPs of ``aten.convolution_backward``, grouped convolutions included.

    As torch's formula for the input gradient; the weight gradient costs what
    the forward convolution costs (each weight sums one product per output
    frame). torch 2.14's formula drops the groups there, which counts a
    QuartzNet's depthwise convolutions ``channels`` times over (the backward
    pass came out 12x the forward for ``quartznet_small``).
    """
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def count_train_flops(modules: torch.nn.ModuleDict, seconds: float = 4.0) -> dict:
    """Forward + backward FLOPs per audio second of one training step.

    Counted by ``FlopCounterMode`` on a batch of one clip (no padding) on a
    copy of the modules; the optimizer's element-wise work is not counted.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        From ``overhead.build_modules``.
    seconds : float
        The clip's duration.

    Returns
    -------
    dict
        ``total`` (FLOPs per audio second) and ``ops`` (aten op -> FLOPs per
        audio second; a linear layer's backward runs as ``mm`` too).
    """
    step = BareLoop(copy.deepcopy(modules), 1, MAX_GRAD_NORM)
    batch = padded_batch([0], np.array([seconds]), torch.Generator().manual_seed(0))
    mapping = {torch.ops.aten.convolution_backward: grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step(batch)
    counts = counter.get_flop_counts()["Global"]
    ops = {str(op).removeprefix("aten."): n / seconds for op, n in counts.items()}
    return {"total": counter.get_total_flops() / seconds, "ops": ops}


def profile_steps(step, batches: list[PaddedBatch], rows: int = 12) -> str:
    """``torch.profiler`` table of the ops that took the time over ``batches``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def fmt(values, digits: int = 3) -> str:
    """``mean+-sd`` of the values, one token (the table splits on spaces)."""
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}g}+-{sd:.2g}"


def measure_preset(preset: str, threads: int, peak: float, args, plan: dict) -> dict:
    """Old and new, interleaved, for one preset at the current thread count."""
    modules = build_modules(preset)
    flops = count_train_flops(modules)
    params = sum(p.numel() for p in modules.parameters())
    print(
        f"\n{preset} ({params / 1e6:.2f}M parameters), {threads} thread(s): "
        f"{flops['total'] / 1e9:.3g} GFLOP per audio second for forward + backward "
        "(FlopCounterMode: "
        + ", ".join(f"{op} {n / 1e9:.3g}" for op, n in flops["ops"].items())
        + ")"
    )
    total_steps = args.repeats * args.steps + 1
    gen = torch.Generator().manual_seed(1)
    names = {"old": args.old, "new": args.new}
    slots = {
        side: [padded_batch(b, plan["durations"], gen) for b in plan["timed"][mode]]
        for side, mode in names.items()
    }
    steps = {
        side: BareLoop(copy.deepcopy(modules), total_steps, MAX_GRAD_NORM)
        for side in names
    }
    runners = {side: (lambda slot, s=side: steps[s](slots[s][slot])) for side in names}
    count = args.repeats * args.steps
    times = interleaved(runners, list(range(count)), args.repeats, args.steps)
    out = {"flops": flops["total"]}
    for side, mode in names.items():
        audio = [
            sum(float(plan["durations"][i]) for i in b) for b in plan["timed"][mode]
        ]
        block_audio = [
            sum(audio[r * args.steps : (r + 1) * args.steps])
            for r in range(args.repeats)
        ]
        rate = {
            clock: [
                a / (t * args.steps)
                for a, t in zip(block_audio, times[side][clock], strict=True)
            ]
            for clock in ("wall", "cpu")
        }
        mfu = [x * flops["total"] / peak for x in rate["wall"]]
        blocks = ", ".join(f"{x:.1f}" for x in rate["wall"])
        print(f"  {side} ({mode}) audio s/s per block (wall): {blocks}")
        out[side] = {"mode": mode, "rate": rate, "mfu": mfu}
    # Paired per repeat: the two blocks of a repeat ran back to back.
    out["ratio"] = {
        clock: [
            n / o
            for n, o in zip(
                out["new"]["rate"][clock], out["old"]["rate"][clock], strict=True
            )
        ]
        for clock in ("wall", "cpu")
    }
    if args.profile:
        print(f"  torch.profiler, {args.steps} {args.new} steps of {preset}:")
        print(profile_steps(steps["new"], slots["new"][: args.steps]))
    return out


HEADER = (
    f"{'preset':<16} {'thr':>3} {'side':<4} {'batching':<10} {'audio_s/s':>13} "
    f"{'GFLOP/s':>13} {'sgemm_GFLOP/s':>13} {'MFU':>15} {'padding':>8} "
    f"{'utt/batch':>9} {'steps/epoch':>11}"
)


def print_table(results: dict, plan: dict, peaks: dict) -> None:
    """One row per preset, thread count and side; then the old/new ratios."""
    print("\n" + HEADER)
    for (preset, threads), res in results.items():
        for side in ("old", "new"):
            r = res[side]
            mode = r["mode"]
            useful = [x * res["flops"] / 1e9 for x in r["rate"]["wall"]]
            batches = plan["epoch"][mode]
            print(
                f"{preset:<16} {threads:>3} {side:<4} {mode:<10} "
                f"{fmt(r['rate']['wall']):>13} {fmt(useful):>13} "
                f"{peaks[threads] / 1e9:>13.1f} {fmt(r['mfu']):>15} "
                f"{plan['padding'][mode]:>8.3f} "
                f"{len(plan['durations']) / len(batches):>9.1f} {len(batches):>11}"
            )
    print("\nold/new = old seconds per audio second / new's (> 1: new is faster)")
    for (preset, threads), res in results.items():
        print(
            f"{preset:<16} {threads:>3} old/new wall {fmt(res['ratio']['wall'])} "
            f"cpu {fmt(res['ratio']['cpu'])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", help=f"default: {' '.join(PRESETS)}")
    parser.add_argument("--threads", nargs="+", type=int, help="default: 1 2")
    parser.add_argument("--steps", type=int, help="steps per block (default 2)")
    parser.add_argument("--repeats", type=int, help="blocks per side (default 3)")
    parser.add_argument("--batch", type=int, help="old batch size (default 8)")
    parser.add_argument("--utterances", type=int, help="epoch size (default 400)")
    parser.add_argument("--durations", help="a manifest whose durations to use")
    parser.add_argument(
        "--max-batch-seconds",
        type=float,
        help="padded seconds per dynamic batch (default: --batch x longest clip)",
    )
    parser.add_argument(
        "--num-buckets", type=int, help="dynamic buckets (default 20; quick 4)"
    )
    parser.add_argument("--old", choices=MODES, default="sorted")
    parser.add_argument("--new", choices=MODES, default="dynamic")
    parser.add_argument("--profile", action="store_true", help="top ops per preset")
    parser.add_argument("--quick", action="store_true", help="a few seconds (tests)")
    args = parser.parse_args()
    if args.old == args.new:
        parser.error("--old and --new must differ")
    quick = args.quick
    defaults = {
        "presets": ["quartznet_tiny", "quartznet_mini"] if quick else list(PRESETS),
        "threads": [1] if quick else [1, 2],
        "steps": 1 if quick else 2,
        "repeats": 2 if quick else 3,
        "batch": 4 if quick else 8,
        "utterances": 32 if quick else 400,
        # Each bucket ends an epoch on a partial batch: few buckets for few clips.
        "num_buckets": 4 if quick else 20,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    durations = (
        manifest_durations(args.durations)
        if args.durations
        else clip_durations(args.utterances)
    )
    max_seconds = args.max_batch_seconds or args.batch * float(durations.max())
    epoch = {
        mode: epoch_batches(mode, durations, args.batch, max_seconds, args.num_buckets)
        for mode in MODES
    }
    plan = {
        "durations": durations,
        "epoch": epoch,
        "padding": {m: padding_fraction(b, durations) for m, b in epoch.items()},
        "timed": {
            m: spread_over_epoch(epoch[m], durations, args.steps, args.repeats)
            for m in (args.old, args.new)
        },
    }
    print(machine_line())
    print(
        f"epoch: {len(durations)} clips, {durations.sum() / 60:.1f} min, "
        f"{durations.min():.1f}-{durations.max():.1f} s (median "
        f"{np.median(durations):.1f}); fixed batches of {args.batch}; dynamic "
        f"batches <= {max_seconds:.1f} padded s, {args.num_buckets} buckets; "
        f"{args.repeats} blocks of {args.steps} steps per side, interleaved"
    )
    print("padded share of an epoch's frames per batching:")
    for mode, batches in epoch.items():
        print(
            f"  padding {mode:<10} {plan['padding'][mode]:.3f}  ({len(batches)} "
            f"batches, {len(durations) / len(batches):.1f} clips per batch)"
        )
    results, peaks = {}, {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peaks[threads] = sgemm_flops(n=1024 if quick else 2048)
        print(f"\n{threads} thread(s): sgemm {peaks[threads] / 1e9:.1f} GFLOP/s")
        for preset in args.presets:
            results[preset, threads] = measure_preset(
                preset, threads, peaks[threads], args, plan
            )
    print_table(results, plan, peaks)
    print()
    for mode in MODES:
        print(f"RESULT padding_{mode}: {plan['padding'][mode]:.3f} (target -)")
    for (preset, threads), res in results.items():
        ratio, _ = mean_sd(res["ratio"]["wall"])
        mfu, _ = mean_sd(res["new"]["mfu"])
        print(f"RESULT old_vs_new_{preset}_{threads}t: {ratio:.3g} (target > 1)")
        print(f"RESULT mfu_{args.new}_{preset}_{threads}t: {mfu:.3g} (target -)")


if __name__ == "__main__":
    main()
