"""Training overhead of ``CTCTransferBrain.fit_batch`` over a bare PyTorch loop.

Both sides train the same model (Fbank -> InputNormalization -> QuartzNet ->
Linear head, CTC loss) from the same initial weights, with the same optimizer
(AdamW over the same parameter groups), the same warmup + cosine schedule, the
same gradient-norm clipping and the same pre-built batches of synthetic audio.
The bare loop is what a user would write by hand; the Brain adds what recipes get
for free (non-finite guard, BatchNorm statistics kept for a skipped batch,
out-of-memory message, SpeechBrain's autocast and scaler hooks). Blocks of steps
of each run interleaved (A B, B A, ...), so load from other jobs on the machine
hits both sides alike; the figure is the median over repeats of the Brain
block's seconds per step over the bare block's of the same repeat, in wall time
and in this process's CPU time (the steadier of the two when other jobs share
the cores).

The helpers here (model, batches, Brain, machine line, interleaved timing) are
shared by ``freezing.py``, ``memory.py`` and ``prep_speed.py``.

Usage:
    python benchmarks/overhead.py [--quick] [--preset quartznet_small]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.lobes.features import Fbank
from speechbrain.nnet.linear import Linear
from speechbrain.processing.features import InputNormalization

from xlt_plugin.brain import CTCTransferBrain, WarmupCosine
from xlt_plugin.freeze import layerwise_param_groups
from xlt_plugin.lobes.quartznet import QuartzNet

SAMPLE_RATE = 16000
N_MELS = 64  # as the English base recipe
N_TOKENS = 29  # blank, space, apostrophe, a-z: the English base's inventory
CHARS_PER_SECOND = 12  # about the speaking rate of the synthetic corpora
LR = 0.005
WEIGHT_DECAY = 0.001


def machine_line() -> str:
    """The machine, as every benchmark prints it."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = (ln.split(":", 1)[1] for ln in f if ln.startswith("model name"))
            model = next(names, "").strip()
    except OSError:
        pass
    return (
        f"machine: processor={platform.processor() or platform.machine()!r} "
        f"({model or 'model unknown'}), cpus={os.cpu_count()}, "
        f"torch threads={torch.get_num_threads()}, "
        f"load average={os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )


def make_batches(
    count: int, batch_size: int, seconds: float, seed: int = 0
) -> list[PaddedBatch]:
    """Padded batches of noise-like audio with random character targets.

    Lengths vary within a batch (70-100 % of ``seconds``) as in a sorted real
    batch, and targets are as long as speech of that length would be.

    Arguments
    ---------
    count : int
        Number of batches.
    batch_size : int
        Utterances per batch.
    seconds : float
        Length of the longest utterance of each batch.
    seed : int
        Seed of the audio and the targets.

    Returns
    -------
    list of PaddedBatch
        With ``id``, ``sig`` and ``tokens``, as the recipes' pipelines give.
    """
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(count):
        items = []
        for i in range(batch_size):
            share = 1.0 if i == 0 else 0.7 + 0.3 * torch.rand(1, generator=gen).item()
            samples = int(seconds * share * SAMPLE_RATE)
            labels = max(1, int(seconds * share * CHARS_PER_SECOND))
            items.append(
                {
                    "id": f"b{b}u{i}",
                    "sig": 0.1 * torch.randn(samples, generator=gen),
                    "tokens": torch.randint(1, N_TOKENS, (labels,), generator=gen),
                }
            )
        batches.append(PaddedBatch(items))
    return batches


def build_modules(preset: str, seed: int = 0) -> torch.nn.ModuleDict:
    """``normalize``, ``encoder`` and ``head``, as the recipes build them.

    Arguments
    ---------
    preset : str
        A QuartzNet preset (``quartznet_tiny``, ``quartznet_small``, ...).
    seed : int
        Seed of the initial weights.

    Returns
    -------
    torch.nn.ModuleDict
    """
    torch.manual_seed(seed)
    encoder = QuartzNet(input_size=N_MELS, preset=preset)
    return torch.nn.ModuleDict(
        {
            "normalize": InputNormalization(norm_type="sentence"),
            "encoder": encoder,
            "head": Linear(input_size=encoder.output_size, n_neurons=N_TOKENS),
        }
    )


def make_brain(
    modules: torch.nn.ModuleDict, total_steps: int, unfreezing=None
) -> CTCTransferBrain:
    """A ``CTCTransferBrain`` ready for ``fit_batch``, set up as ``fit`` would.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        From :func:`build_modules`.
    total_steps : int
        Steps of the lr schedule.
    unfreezing : xlt_plugin.freeze.StagedUnfreezing, optional
        A freezing schedule (the Brain builds its optimizer around it).

    Returns
    -------
    CTCTransferBrain
    """
    hparams = {
        "compute_features": Fbank(sample_rate=SAMPLE_RATE, n_mels=N_MELS),
        "blank_index": 0,
        "number_of_epochs": 1,
        "lr": LR,
        "unfreezing": unfreezing,
    }

    def opt_class(params):
        return torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)

    brain = CTCTransferBrain(
        modules=dict(modules),
        opt_class=opt_class,
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.steps_per_epoch = total_steps
    brain.init_optimizers()
    # What Brain._fit_train does before its first batch.
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    brain.modules.train()
    brain.zero_grad()
    return brain


def brain_step(brain: CTCTransferBrain) -> Callable[[PaddedBatch], torch.Tensor]:
    """One training step as ``Brain._fit_train`` takes it."""

    def step(batch: PaddedBatch) -> torch.Tensor:
        brain.step += 1
        return brain.fit_batch(batch)

    return step


class BareLoop:
    """The same training step written by hand in plain PyTorch.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        From :func:`build_modules`.
    total_steps : int
        Steps of the lr schedule.
    max_grad_norm : float
        Gradient-norm clipping threshold (SpeechBrain's default, 5.0).
    """

    def __init__(
        self, modules: torch.nn.ModuleDict, total_steps: int, max_grad_norm: float
    ):
        self.modules = modules.train()
        self.features = Fbank(sample_rate=SAMPLE_RATE, n_mels=N_MELS)
        groups = layerwise_param_groups(modules, lr=LR)
        self.optimizer = torch.optim.AdamW(groups, lr=LR, weight_decay=WEIGHT_DECAY)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(total_steps, 0.1, 0.01)
        )
        self.params = [p for g in groups for p in g["params"]]
        self.max_grad_norm = max_grad_norm

    def __call__(self, batch: PaddedBatch) -> torch.Tensor:
        wavs, wav_lens = batch.sig
        tokens, token_lens = batch.tokens
        feats = self.modules["normalize"](self.features(wavs), wav_lens)
        logits = self.modules["head"](self.modules["encoder"](feats, wav_lens))
        log_probs = torch.log_softmax(logits, dim=-1)
        loss = sb.nnet.losses.ctc_loss(log_probs, tokens, wav_lens, token_lens, 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss.detach()


def interleaved(
    runners: dict[str, Callable[[PaddedBatch], object]],
    batches: list[PaddedBatch],
    repeats: int,
    steps: int,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per step of each runner, timed in alternating blocks.

    Each repeat times ``steps`` steps of every runner; the order flips every
    repeat (A B, B A, ...), so a slow spell of the machine or a warm cache
    favours no side. One untimed step per runner comes first (allocations).
    Wall time and this process's CPU time are both kept: on a machine shared
    with other jobs the CPU time is the steadier measure of the work done.

    Arguments
    ---------
    runners : dict
        Name -> function taking one batch.
    batches : list of PaddedBatch
        Cycled through, the same sequence for every runner.
    repeats : int
        Blocks per runner.
    steps : int
        Steps per block.

    Returns
    -------
    dict
        Name -> {"wall": [...], "cpu": [...]}: seconds per step of each block.
    """
    for run in runners.values():
        run(batches[0])
    names = list(runners)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            for s in range(steps):
                runners[name](batches[(r * steps + s) % len(batches)])
            times[name]["wall"].append((time.perf_counter() - wall) / steps)
            times[name]["cpu"].append((time.process_time() - cpu) / steps)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repeats of ``numerator[r] / denominator[r]``.

    Blocks of the same repeat ran back to back, so their ratio cancels the
    machine's slow drifts better than a ratio of two medians.

    Example
    -------
    >>> paired_ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0])
    2.0
    """
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def print_blocks(times: dict[str, dict[str, list[float]]], unit: str = "s/step"):
    """One line per runner and clock: every block, then the median."""
    for name, clocks in times.items():
        for clock, values in clocks.items():
            blocks = ", ".join(f"{x:.4f}" for x in values)
            print(
                f"{name:9s} {clock:4s} {unit} per block: {blocks}; "
                f"median {statistics.median(values):.4f}"
            )


def add_common_arguments(
    parser: argparse.ArgumentParser,
    seconds: float = 4.0,
    repeats: int = 10,
    steps: int = 3,
) -> None:
    """Options every training benchmark shares: the model and the workload."""
    parser.add_argument("--quick", action="store_true", help="a few seconds (tests)")
    parser.add_argument("--preset", default=None, help="QuartzNet preset")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--steps", type=int, default=steps, help="steps per block")


def parse_common(
    parser: argparse.ArgumentParser, quick_repeats: int = 2, quick_steps: int = 2
) -> tuple[argparse.Namespace, str]:
    """Parse; ``--quick`` shrinks the workload. Returns (args, preset)."""
    args = parser.parse_args()
    if args.quick:
        args.batch, args.seconds = 2, 1.0
        args.repeats, args.steps = quick_repeats, quick_steps
    preset = args.preset or ("quartznet_tiny" if args.quick else "quartznet_small")
    torch.set_num_threads(args.threads)
    return args, preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, seconds=4.0, repeats=10, steps=3)
    args, preset = parse_common(parser, quick_repeats=2, quick_steps=2)
    print(machine_line())
    total = args.repeats * args.steps + 1
    batches = make_batches(4, args.batch, args.seconds)
    modules = build_modules(preset)
    brain = make_brain(copy.deepcopy(modules), total)
    bare = BareLoop(copy.deepcopy(modules), total, brain.max_grad_norm)
    params = sum(p.numel() for p in modules.parameters())
    print(
        f"model: {preset} + head ({params / 1e6:.2f}M parameters), batch "
        f"{args.batch} x {args.seconds:g} s, {args.repeats} blocks of "
        f"{args.steps} steps each, interleaved"
    )
    times = interleaved(
        {"bare": bare, "brain": brain_step(brain)}, batches, args.repeats, args.steps
    )
    print_blocks(times)
    for clock in ("wall", "cpu"):
        rate = {n: 1.0 / statistics.median(t[clock]) for n, t in times.items()}
        print(
            f"{clock} steps/s (medians): bare {rate['bare']:.3f}, brain "
            f"{rate['brain']:.3f}; overhead of medians "
            f"{(rate['bare'] / rate['brain'] - 1) * 100:.1f} %"
        )
    # bare/brain steps/s = brain/bare seconds per step, paired block by block.
    wall = (paired_ratio(times["brain"]["wall"], times["bare"]["wall"]) - 1) * 100
    cpu = (paired_ratio(times["brain"]["cpu"], times["bare"]["cpu"]) - 1) * 100
    print(f"RESULT brain_overhead_percent_cpu: {cpu:.1f} (target <= 5)")
    print(f"RESULT brain_overhead_percent: {wall:.1f} (target <= 5)")


if __name__ == "__main__":
    main()
