"""Real-time factor of ``xlt transcribe`` on this CPU, and how far from the limit.

For each encoder (``quartznet15x5``, the paper's model, and ``quartznet_small``,
the CPU study's base) it prints the real-time factor (compute seconds per audio
second; lower is faster) of

- the acoustic model alone (fbank, normalisation, encoder, CTC head),
- greedy decoding, CTC prefix beam search, and beam search + a 3-gram LM
  (decoding time only, on the model's log-probabilities),

then the physical floor: multiply-accumulates of every convolution and of the
head, counted per frame with forward hooks, times frames per second, times 2
(FLOPs), divided by the measured single-precision matmul rate (a large sgemm
timed with torch). The ratio measured / floor says how much of the machine the
acoustic model uses.

Weights are random (nothing is downloaded): the acoustic timings are those of a
trained model, but a random model's posteriors are flat, so beam search keeps
every token alive and its timings are an upper bound (a trained model's peaky
posteriors let ``token_prune_min_logp`` prune most tokens). Give ``--model DIR``
to time a trained model instead. Numbers are printed, never asserted.

Usage:
    python benchmarks/rtf.py [--seconds 10] [--beam 16] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from xlt_plugin.decode.lm import estimate_kneser_ney
from xlt_plugin.decode.transcribe import CTCDecoder
from xlt_plugin.lobes.quartznet import QuartzNet
from xlt_plugin.pretrained import PretrainedCTC, load_pretrained
from xlt_plugin.synth.texts import SentenceGenerator
from xlt_plugin.tokens import normalize_text

SAMPLE_RATE = 16000
ENGLISH = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]


def random_model(preset: str, n_mels: int = 64) -> PretrainedCTC:
    """A randomly initialised CTC model with the hub layout's parts."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.nnet.linear import Linear
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(0)
    encoder = QuartzNet(input_size=n_mels, preset=preset).eval()
    head = Linear(input_size=encoder.output_size, n_neurons=len(ENGLISH)).eval()
    return PretrainedCTC(
        encoder=encoder,
        head=head,
        normalize=InputNormalization(norm_type="sentence").eval(),
        compute_features=Fbank(n_mels=n_mels),
        tokens=ENGLISH,
        blank_index=0,
        config={"features": {"sample_rate": SAMPLE_RATE, "n_mels": n_mels}},
    )


def count_flops_per_second(model: PretrainedCTC, seconds: float = 4.0) -> float:
    """FLOPs (2 x MACs) of the convolutions and the head per audio second."""
    macs = 0

    def conv_hook(module, inputs, output):
        nonlocal macs
        k = module.kernel_size[0]
        macs += output.numel() * (module.in_channels // module.groups) * k

    def linear_hook(module, inputs, output):
        nonlocal macs
        macs += output.numel() * module.in_features

    hooks = []
    for module in [*model.encoder.modules(), *model.head.modules()]:
        if isinstance(module, torch.nn.Conv1d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    wav = torch.randn(1, int(seconds * SAMPLE_RATE))
    with torch.no_grad():
        model.log_probs(wav, torch.ones(1))
    for hook in hooks:
        hook.remove()
    return 2.0 * macs / seconds


def sgemm_flops(n: int = 2048, repeats: int = 5) -> float:
    """Measured single-precision matmul rate (FLOP/s) with torch's BLAS."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def domain_lm(path: str, sentences: int = 2000) -> str:
    """A 3-gram ARPA model of generated English sentences."""
    generator = SentenceGenerator("en", 3000)
    texts = [
        normalize_text(generator.sentence(np.random.default_rng([0, i])), "en")
        for i in range(sentences)
    ]
    estimate_kneser_ney(texts, order=3).write(path)
    return path


def measure(name: str, model: PretrainedCTC, args, lm_path: str, peak: float):
    wav = torch.randn(1, int(args.seconds * SAMPLE_RATE)) * 0.1
    with torch.no_grad():
        acoustic = timed(lambda: model.log_probs(wav, torch.ones(1)), args.repeats)
        log_probs = model.log_probs(wav, torch.ones(1))[0]
    decoders = {
        "greedy": CTCDecoder(model.tokens, model.blank_index),
        f"beam {args.beam}": CTCDecoder(model.tokens, model.blank_index, args.beam),
        f"beam {args.beam} + 3-gram LM": CTCDecoder(
            model.tokens, model.blank_index, args.beam, lm=lm_path
        ),
    }
    params = sum(p.numel() for p in model.encoder.parameters())
    flops = count_flops_per_second(model)
    floor = flops / peak
    rtf = acoustic / args.seconds
    print(f"\n{name}: {params / 1e6:.2f}M encoder parameters, {args.seconds:g} s audio")
    print(f"  acoustic model      RTF {rtf:.3g}")
    for label, decoder in decoders.items():
        seconds = timed(lambda d=decoder: d(log_probs), 1 if "beam" in label else 3)
        print(
            f"  decode {label:<24} RTF {seconds / args.seconds:.3g}   "
            f"total {(acoustic + seconds) / args.seconds:.3g}"
        )
    print(
        f"  {flops / 1e9:.2f} GFLOP per audio second (convolutions + head); "
        f"floor RTF at {peak / 1e9:.0f} GFLOP/s = {floor:.3g}; "
        f"measured / floor = {rtf / floor:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--beam", type=int, default=16, help="beam width")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats")
    parser.add_argument("--model", help="also time a trained model folder")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(
        f"cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"load average: {os.getloadavg()[0]:.2f}"
    )
    peak = sgemm_flops()
    print(f"sgemm 2048^3: {peak / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        lm_path = domain_lm(os.path.join(tmp, "lm.arpa"))
        for preset in ("quartznet15x5", "quartznet_small"):
            model = random_model(preset)
            measure(f"{preset} (random weights)", model, args, lm_path, peak)
        if args.model:
            model = load_pretrained(args.model)
            measure(f"{args.model} (trained)", model, args, lm_path, peak)


if __name__ == "__main__":
    main()
