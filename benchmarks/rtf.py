"""Real-time factor of ``xlt transcribe`` on this CPU, and how far from the limit.

For each encoder (``quartznet15x5``, the paper's model, and ``quartznet_small``,
the CPU study's base) it prints the real-time factor (compute seconds per audio
second; lower is faster) of

- the acoustic model alone (fbank, normalisation, encoder, CTC head), as mean
  +- standard deviation over ``--repeats`` timed runs,
- greedy decoding, and CTC beam search without and with a 3-gram LM by both
  engines side by side, on the same log-probabilities: SpeechBrain's
  pure-Python prefix search (``python``) and flashlight-text's compiled one
  (``flashlight``, through torchaudio), with the ratio python / flashlight,

then the physical floor: multiply-accumulates of every convolution and of the
head, counted per frame with forward hooks, times frames per second, times 2
(FLOPs), divided by the measured single-precision matmul rate (a large sgemm
timed with torch). The ratio measured / floor (mean +- sd over the repeats)
says how much of the machine the acoustic model uses.

Weights are random (nothing is downloaded): the acoustic timings are those of a
trained model, but a random model's posteriors are flat, so beam search keeps
every token alive and its timings are an upper bound (a trained model's peaky
posteriors let ``token_prune_min_logp`` prune most tokens).

Give ``--model DIR`` to time a trained model too, and ``--test-csv`` (a recipe's
``save/test.csv``: ``wav``, ``wrd``, optionally ``sentence_domain``) to decode
its test set with both engines: the decoding RTF over the whole set (CPU
seconds of the one decoding thread per audio second, the figure least disturbed
by other jobs; wall time beside it), the ratio, and the WER of each engine per
domain. The LM is ``--lm`` or, by default, a
3-gram built from ``--train-csv``'s transcripts (as the Domain recipe does).
Lines ``RESULT <name>: <value> (target ...)`` carry the figures of issue 16:
beam 16 + 3-gram LM at RTF <= 0.03 with a WER no worse than the Python
decoder's.

Usage:
    python benchmarks/rtf.py [--seconds 10] [--beam 16] [--repeats 5]
        [--model DIR [--test-csv CSV --train-csv CSV | --lm LM.arpa]] [--quick]
        [--profile]

``--profile`` adds, per encoder, the share of the acoustic model's time and of
its FLOPs spent in each layer kind (depthwise, pointwise and full convolutions,
the head, the rest) and the GFLOP/s each kind achieves: what bounds the ratio to
the floor.
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


def layer_kind(module: torch.nn.Module) -> str | None:
    """``depthwise``, ``pointwise``, ``full conv`` or ``head`` (None: not timed)."""
    if isinstance(module, torch.nn.Conv1d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise"
        return "pointwise" if module.kernel_size[0] == 1 else "full conv"
    if isinstance(module, torch.nn.Linear):
        return "head"
    return None


def time_by_layer_kind(model: PretrainedCTC, seconds: float, repeats: int) -> dict:
    """Seconds and FLOPs per layer kind in the acoustic model's forward.

    Forward hooks time each convolution and the head (CPU: ops are synchronous,
    so the wall time between a module's pre- and post-hook is its own); the
    rest of the forward (features, normalisation, BatchNorm, activations,
    residual sums, masking) is ``other``. Best total of ``repeats`` runs.
    """
    spent: dict[str, list[float]] = {}
    flops: dict[str, float] = {}
    started: dict[int, float] = {}
    hooks = []

    def pre(module, inputs):
        started[id(module)] = time.perf_counter()

    def post(module, inputs, output):
        kind = layer_kind(module)
        spent[kind][-1] += time.perf_counter() - started.pop(id(module))
        if isinstance(module, torch.nn.Conv1d):
            macs = output.numel() * (module.in_channels // module.groups)
            macs *= module.kernel_size[0]
        else:
            macs = output.numel() * module.in_features
        flops[kind] = flops.get(kind, 0.0) + 2.0 * macs

    for module in [*model.encoder.modules(), *model.head.modules()]:
        kind = layer_kind(module)
        if kind is not None:
            spent.setdefault(kind, [])
            hooks.append(module.register_forward_pre_hook(pre))
            hooks.append(module.register_forward_hook(post))
    wav = torch.randn(1, int(seconds * SAMPLE_RATE)) * 0.1
    totals = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first is a warm-up
            for values in spent.values():
                values.append(0.0)
            flops.clear()
            start = time.perf_counter()
            model.log_probs(wav, torch.ones(1))
            totals.append(time.perf_counter() - start)
    for hook in hooks:
        hook.remove()
    best = min(range(1, len(totals)), key=lambda i: totals[i])
    shares = {
        kind: (values[best], flops.get(kind, 0.0)) for kind, values in spent.items()
    }
    shares["other"] = (totals[best] - sum(t for t, _ in shares.values()), 0.0)
    return shares


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
    return min(timings(fn, repeats))


def timings(fn, repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` calls (after one warm-up call)."""
    fn()
    out = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(list(values), dtype=float)
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), sd


ENGINES = ("python", "flashlight")


def engines_available() -> tuple[str, ...]:
    """The beam engines this machine can run (flashlight needs its package)."""
    from xlt_plugin.decode.flashlight import flashlight_available

    return ENGINES if flashlight_available() else ("python",)


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
        runs = timings(lambda: model.log_probs(wav, torch.ones(1)), args.repeats)
        log_probs = model.log_probs(wav, torch.ones(1))[0]
    params = sum(p.numel() for p in model.encoder.parameters())
    flops = count_flops_per_second(model)
    floor = flops / peak
    rtf, rtf_sd = mean_sd(t / args.seconds for t in runs)
    ratio, ratio_sd = mean_sd(t / args.seconds / floor for t in runs)
    print(f"\n{name}: {params / 1e6:.2f}M encoder parameters, {args.seconds:g} s audio")
    print(
        f"  acoustic model      RTF {rtf:.3g} +- {rtf_sd:.2g} "
        f"(mean +- sd over {len(runs)} repeats)"
    )
    greedy = CTCDecoder(model.tokens, model.blank_index)
    seconds = timed(lambda: greedy(log_probs), 3)
    print(
        f"  decode greedy                         RTF {seconds / args.seconds:.3g}   "
        f"total {(rtf * args.seconds + seconds) / args.seconds:.3g}"
    )
    beam_rtf = {}
    for label, lm in (
        (f"beam {args.beam}", None),
        (f"beam {args.beam} + 3-gram LM", lm_path),
    ):
        for engine in engines_available():
            decoder = CTCDecoder(
                model.tokens, model.blank_index, args.beam, lm=lm, decoder=engine
            )
            repeats = 1 if engine == "python" else args.repeats
            seconds = timed(lambda d=decoder: d(log_probs), repeats)
            beam_rtf[label, engine] = seconds / args.seconds
            print(
                f"  decode {label:<24} {engine:<10} RTF "
                f"{seconds / args.seconds:.3g}   "
                f"total {(rtf * args.seconds + seconds) / args.seconds:.3g}"
            )
        if len(engines_available()) == 2:
            speedup = beam_rtf[label, "python"] / beam_rtf[label, "flashlight"]
            print(f"  {label}: python / flashlight RTF = {speedup:.1f}x")
    print(
        f"  {flops / 1e9:.2f} GFLOP per audio second (convolutions + head); "
        f"floor RTF at {peak / 1e9:.0f} GFLOP/s = {floor:.3g}; "
        f"measured / floor = {ratio:.2f} +- {ratio_sd:.2f}x "
        f"(mean +- sd over {len(runs)} repeats)"
    )
    if getattr(args, "profile", False):
        shares = time_by_layer_kind(model, args.seconds, args.repeats)
        total = sum(t for t, _ in shares.values())
        total_flops = sum(f for _, f in shares.values())
        print("  where the acoustic model's time goes (forward hooks, best run):")
        for kind, (sec, fl) in sorted(shares.items(), key=lambda x: -x[1][0]):
            rate = f"{fl / sec / 1e9:6.1f} GFLOP/s" if fl and sec > 0 else " " * 13
            print(
                f"    {kind:<10} {100 * sec / total:5.1f} % of the time  "
                f"{100 * fl / total_flops:5.1f} % of the FLOPs  {rate}"
            )
    return {"acoustic_vs_floor": ratio, "beam": beam_rtf}


def read_manifest(path: str) -> list[dict]:
    """Rows of a recipe manifest (``wav``, ``wrd``, optional ``sentence_domain``)."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def compare_on_test_set(model: PretrainedCTC, args, lm_path: str) -> dict:
    """Decode a test set with both engines: RTF over the set, WER per domain."""
    from xlt_plugin.data.pipeline import load_audio
    from xlt_plugin.scoring import ErrorRates

    rows = read_manifest(args.test_csv)
    if args.limit:
        rows = rows[: args.limit]
    rate = int(model.config["features"]["sample_rate"])
    utterances, audio_seconds, acoustic = [], 0.0, 0.0
    with torch.no_grad():
        for row in rows:
            wav = load_audio(row["wav"], rate)
            audio_seconds += len(wav) / rate
            start = time.perf_counter()
            log_probs = model.log_probs(wav.unsqueeze(0), torch.ones(1))[0]
            acoustic += time.perf_counter() - start
            domain = row.get("sentence_domain") or "all"
            utterances.append(
                (row.get("ID", str(len(utterances))), domain, row["wrd"], log_probs)
            )
    domains = sorted({d for _, d, _, _ in utterances})
    print(
        f"\ntest set {args.test_csv}: {len(utterances)} utterances, "
        f"{audio_seconds:.1f} s audio, domains {', '.join(domains)}; "
        f"acoustic RTF {acoustic / audio_seconds:.3g}"
    )
    out = {}
    setups = [("greedy", 1, None)]
    setups += [(f"beam {args.beam}", args.beam, None)]
    setups += [(f"beam {args.beam} + LM", args.beam, lm_path)]
    for label, beam, lm in setups:
        for engine in engines_available() if beam > 1 else ("greedy",):
            decoder = CTCDecoder(
                model.tokens, model.blank_index, beam, lm=lm,
                lm_weight=args.lm_weight, word_bonus=args.word_bonus,
                decoder=engine if beam > 1 else "auto",
            )  # fmt: skip
            scores = {d: ErrorRates() for d in [*domains, "all"]}
            start, cpu = time.perf_counter(), time.process_time()
            texts = [decoder(lp) for _, _, _, lp in utterances]
            wall = time.perf_counter() - start
            # One thread decodes: CPU time is the figure other jobs disturb least.
            seconds = time.process_time() - cpu
            for (uid, domain, ref, _), text in zip(utterances, texts, strict=True):
                for key in (domain, "all"):
                    scores[key].append([uid], [text], [ref])
            wer = {d: scores[d].summarize()["WER"] for d in scores}
            out[label, engine] = {"rtf": seconds / audio_seconds, "wer": wer}
            per_domain = ", ".join(f"{d} {wer[d]:.2f}" for d in domains)
            print(
                f"  {label:<16} {engine:<10} decode RTF {seconds / audio_seconds:.4f}"
                f" cpu ({wall / audio_seconds:.4f} wall)"
                f"   WER % all {wer['all']:.2f} ({per_domain})"
            )
        if beam > 1 and len(engines_available()) == 2:
            py, fl = out[label, "python"], out[label, "flashlight"]
            print(
                f"  {label}: python / flashlight RTF = {py['rtf'] / fl['rtf']:.1f}x; "
                f"WER flashlight - python = {fl['wer']['all'] - py['wer']['all']:+.2f}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--beam", type=int, default=16, help="beam width")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats")
    parser.add_argument("--model", help="also time a trained model folder")
    parser.add_argument("--test-csv", help="decode this manifest with --model")
    parser.add_argument("--train-csv", help="build the 3-gram LM from its wrd")
    parser.add_argument("--lm", help="ARPA LM for the test set (else --train-csv)")
    parser.add_argument("--lm-weight", type=float, default=0.5, help="alpha (0.5)")
    parser.add_argument("--word-bonus", type=float, default=1.0, help="beta (1.0)")
    parser.add_argument("--limit", type=int, help="first N test utterances only")
    parser.add_argument(
        "--quick", action="store_true", help="2 s of audio, small model only"
    )
    parser.add_argument(
        "--profile", action="store_true", help="time and FLOPs per layer kind"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 2.0, 2
    if args.test_csv and not args.model:
        parser.error("--test-csv needs --model")
    torch.set_grad_enabled(False)
    print(
        f"cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"load average: {os.getloadavg()[0]:.2f}, "
        f"beam engines: {', '.join(engines_available())}"
    )
    peak = sgemm_flops()
    print(f"sgemm 2048^3: {peak / 1e9:.1f} GFLOP/s")
    results = {}
    presets = (
        ("quartznet_small",) if args.quick else ("quartznet15x5", "quartznet_small")
    )
    with tempfile.TemporaryDirectory() as tmp:
        lm_path = domain_lm(os.path.join(tmp, "lm.arpa"))
        for preset in presets:
            model = random_model(preset)
            results[preset] = measure(
                f"{preset} (random weights)", model, args, lm_path, peak
            )
        test = None
        if args.model:
            model = load_pretrained(args.model)
            measure(f"{args.model} (trained)", model, args, lm_path, peak)
            if args.test_csv:
                test_lm = args.lm
                if test_lm is None and args.train_csv:
                    test_lm = os.path.join(tmp, "train_3gram.arpa")
                    sentences = [r["wrd"] for r in read_manifest(args.train_csv)]
                    estimate_kneser_ney(sentences, order=3).write(test_lm)
                    print(f"\n3-gram LM of {len(sentences)} training transcripts")
                test = compare_on_test_set(model, args, test_lm or lm_path)
    first = results[presets[0]]
    print()
    print(
        f"RESULT acoustic_vs_floor_{presets[0]}: "
        f"{first['acoustic_vs_floor']:.3g} (target -)"
    )
    label = f"beam {args.beam} + 3-gram LM"
    if test is not None:
        key = f"beam {args.beam} + LM"
        if (key, "flashlight") in test:
            fl, py = test[key, "flashlight"], test[key, "python"]
            print(f"RESULT beam_lm_rtf_flashlight: {fl['rtf']:.4g} (target <= 0.03)")
            print(f"RESULT beam_lm_speedup: {py['rtf'] / fl['rtf']:.3g} (target > 1)")
            delta = fl["wer"]["all"] - py["wer"]["all"]
            print(f"RESULT beam_lm_wer_delta: {delta:.3g} (target <= 0)")
    elif (label, "flashlight") in first["beam"]:
        fl, py = first["beam"][label, "flashlight"], first["beam"][label, "python"]
        print(f"RESULT beam_lm_rtf_flashlight: {fl:.4g} (target <= 0.03)")
        print(f"RESULT beam_lm_speedup: {py / fl:.3g} (target > 1)")


if __name__ == "__main__":
    main()
