"""What a faster depthwise convolution could give training on this CPU (issue 16).

QuartzNet's depthwise (per-channel) time convolutions take as long as its
pointwise ones for under a tenth of the FLOPs (``train_speed.py --profile``).
This script times, forward + backward on one thread, the depthwise shapes of
``quartznet_small`` and ``quartznet15x5`` three ways, side by side in one run:

- ``conv``: ``F.conv1d(groups=channels)``, what the lobes use (oneDNN);
- ``shift``: a sum of K shifted, per-channel-scaled copies of the input, with a
  hand-written backward (no im2col, no K-fold copy of the input);
- ``compiled`` (``--compile``): the same sum through ``torch.compile``
  (inductor fuses the K terms into one C++ loop; needs a C++ compiler, and
  compiles once per kernel size, which it prints).

For each shape it prints the time of ``conv`` and the speed-up of the others
(median over ``--repeats``, with the spread), then the step speed-up it implies
by Amdahl's law for a depthwise share ``--share`` of the training step.

The pointwise (kernel-1) convolutions of the same blocks, the other third of a
step, are timed the same way as ``F.conv1d`` and as a ``torch.matmul`` of the
weight with the input, and their FLOP rate is set against this machine's sgemm
rate (``rtf.sgemm_flops``, one thread): how much a better kernel could gain there.

Usage:
    python benchmarks/depthwise.py [--compile] [--repeats 7] [--share 0.37]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from rtf import sgemm_flops

#: (name, batch, channels, frames, kernel): the depthwise shapes of a batch of
#: 8 clips of ~6 s (300 frames after the stride-2 prologue).
SHAPES = [
    ("quartznet_small B1", 8, 192, 300, 13),
    ("quartznet_small B5", 8, 192, 300, 21),
    ("quartznet_small C2", 8, 192, 300, 29),
    ("quartznet15x5 B1", 8, 256, 300, 33),
    ("quartznet15x5 B5", 8, 512, 300, 75),
]


def depthwise_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The lobes' depthwise convolution: ``x`` [B, C, T], ``w`` [C, 1, K]."""
    return F.conv1d(x, w, padding=w.shape[-1] // 2, groups=x.shape[1])


class ShiftSum(torch.autograd.Function):
    """Depthwise convolution as a sum of K shifted copies (same result)."""

    @staticmethod
    def forward(ctx, x, w):
        channels, k = w.shape[0], w.shape[-1]
        frames, taps = x.shape[-1], w.view(channels, k, 1)
        xp = F.pad(x, (k // 2, k // 2))
        y = xp[..., :frames] * taps[:, 0]
        for i in range(1, k):
            y.addcmul_(xp[..., i : i + frames], taps[:, i])
        ctx.save_for_backward(xp, w)
        return y

    @staticmethod
    def backward(ctx, grad):
        xp, w = ctx.saved_tensors
        channels, k = w.shape[0], w.shape[-1]
        frames, taps = grad.shape[-1], w.view(channels, k, 1)
        grad_xp = torch.zeros_like(xp)
        grad_w = torch.empty(channels, k)
        for i in range(k):
            grad_xp[..., i : i + frames].addcmul_(grad, taps[:, i])
            grad_w[:, i] = (grad * xp[..., i : i + frames]).sum((0, 2))
        return grad_xp[..., k // 2 : k // 2 + frames], grad_w.view_as(w)


def shift_sum(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """:class:`ShiftSum` as a function."""
    return ShiftSum.apply(x, w)


def shift_sum_plain(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same sum in plain ops, for ``torch.compile`` to fuse."""
    channels, k = w.shape[0], w.shape[-1]
    frames, taps = x.shape[-1], w.view(channels, k, 1)
    xp = F.pad(x, (k // 2, k // 2))
    y = xp[..., :frames] * taps[:, 0]
    for i in range(1, k):
        y = y + xp[..., i : i + frames] * taps[:, i]
    return y


def pointwise_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The lobes' pointwise convolution: ``x`` [B, C, T], ``w`` [C_out, C, 1]."""
    return F.conv1d(x, w)


def pointwise_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same as one batched matrix product."""
    return torch.matmul(w.squeeze(-1), x)


def step_seconds(fn, x, w) -> tuple[float, list[torch.Tensor]]:
    """One forward + backward; the seconds and (output, input grad, weight grad)."""
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    start = time.perf_counter()
    y = fn(x, w)
    y.backward(torch.ones_like(y))
    return time.perf_counter() - start, [y.detach(), x.grad, w.grad]


def main() -> None:
    """Time the shapes; print the ratios and the step speed-ups they imply."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--share", type=float, default=0.37, help="of a step")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one small shape")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ways = {"conv": depthwise_conv, "shift": shift_sum}
    if args.compile:
        ways["compiled"] = torch.compile(shift_sum_plain, dynamic=True)
    shapes = SHAPES[:1] if args.quick else SHAPES
    repeats = 2 if args.quick else args.repeats
    best = {name: [] for name in ways if name != "conv"}
    for label, batch, channels, frames, k in shapes:
        x, w = torch.randn(batch, channels, frames), torch.randn(channels, 1, k)
        first, times, reference = {}, {name: [] for name in ways}, None
        for name, fn in ways.items():  # first calls: warm-up (and compilation)
            first[name], out = step_seconds(fn, x, w)
            if reference is None:
                reference = out
            error = max(
                float((a - b).abs().max() / b.abs().max())
                for a, b in zip(out, reference, strict=True)
            )
            assert error < 1e-4, f"{name} differs from conv by {error:.1e}"
        for _ in range(repeats):  # interleaved: load changes hit all alike
            for name, fn in ways.items():
                times[name].append(step_seconds(fn, x, w)[0])
        conv = statistics.median(times["conv"])
        line = f"{label:20s} K={k:2d} conv {conv * 1e3:6.1f} ms"
        for name in best:
            ratios = [c / t for c, t in zip(times["conv"], times[name], strict=True)]
            best[name].append(statistics.median(ratios))
            spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
            line += f" | {name} x{statistics.median(ratios):.2f} +- {spread:.2f}"
            if name == "compiled":
                line += f" (first call {first[name]:.0f} s)"
        print(line, flush=True)
    pointwise(SHAPES[:1] if args.quick else SHAPES[:2], repeats)
    for name, ratios in best.items():
        speedup = statistics.median(ratios)
        step = 1 / (1 - args.share + args.share / speedup)
        print(
            f"{name}: depthwise {speedup:.2f}x faster (median over shapes); a "
            f"training step that spends {args.share:.0%} in them: {step:.2f}x"
        )
        print(f"RESULT depthwise_{name}_speedup: {speedup:.3g} (target > 1)")
        print(f"RESULT depthwise_{name}_step_speedup: {step:.3g} (target >= 2)")


def pointwise(shapes: list, repeats: int) -> None:
    """Time the pointwise convolutions of ``shapes``; print their share of sgemm."""
    peak = sgemm_flops()
    rates = []
    for label, batch, channels, frames, _ in shapes:
        x, w = torch.randn(batch, channels, frames), torch.randn(channels, channels, 1)
        times = {"conv": [], "matmul": []}
        for fn in (pointwise_conv, pointwise_matmul):
            step_seconds(fn, x, w)  # warm-up
        for _ in range(repeats):
            times["conv"].append(step_seconds(pointwise_conv, x, w)[0])
            times["matmul"].append(step_seconds(pointwise_matmul, x, w)[0])
        flops = 3 * 2 * batch * channels * channels * frames  # forward + 2 grads
        conv, matmul = (statistics.median(times[k]) for k in ("conv", "matmul"))
        rates.append(flops / conv / peak)
        print(
            f"{label:20s} pointwise conv {flops / conv / 1e9:5.1f} GFLOP/s, matmul "
            f"{flops / matmul / 1e9:5.1f}; sgemm {peak / 1e9:.1f} GFLOP/s"
        )
    share = statistics.median(rates)
    print(f"RESULT pointwise_share_of_sgemm: {share:.3g} (target none)")


if __name__ == "__main__":
    main()
