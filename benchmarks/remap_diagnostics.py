"""Why a remapped CTC head can train worse than a re-initialised one (issue 13).

Given a base model folder (``recipes/EnglishBase`` writes one under
``<output_folder>/model``) and a target corpus in Common Voice layout (a real
download, or ``xlt synth``), builds the target head several ways from the same
encoder and prints, for each:

1. **Rows**: the mean L2 norm and mean bias of the copied rows, the blank row
   and the fresh rows, next to a fresh layer's.
2. **Logit scale** on a few target batches (encoder in eval mode): the mean of
   the per-frame max logit, the mean entropy of the softmax (nats; a uniform
   posterior over V tokens has ln V), the blank row's mean share of the
   posterior and the share of frames whose argmax is the blank, and the CTC
   loss per utterance.
3. **First updates**: ``--steps`` AdamW steps (the recipes' lr, weight decay and
   gradient clipping, no warmup) from the same encoder, with the gradient norm
   on the encoder and on the head at each step (before clipping), and the loss.

Heads: ``reinit`` (every row fresh, the blank too), ``none`` (the study's
re-initialised head: blank row kept, ``remap_strategy: none``), ``remap``
(``--strategy``), and the remedies of ``xlt_plugin.remap.adjust_rows`` on top
of the remap: ``rescale``, ``temperature`` (fitted on the same batches),
``blend0.5``, ``fresh_blank``.

Usage (one thread; a small corpus and a tiny base take a minute or two):
    python benchmarks/remap_diagnostics.py \\
        --base results/EnglishBase/small/1234/model --data data/es --lang es \\
        [--strategy exact,fold] [--batches 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import speechbrain as sb
import torch

from xlt_plugin.data.commonvoice import prepare_common_voice
from xlt_plugin.data.pipeline import build_tokenizer, load_audio
from xlt_plugin.pretrained import load_pretrained
from xlt_plugin.remap import (
    _core_layer,
    apply_temperature,
    fit_temperature,
    remap_ctc_head,
)


def load_batches(data: Path, lang: str, work: Path, n_batches: int, batch_size: int):
    """The first ``n_batches`` of the target's train split (in file order)."""
    prepare_common_voice(data, work, lang, splits=["train"], jobs=1)
    tokenizer = build_tokenizer([work / "train.csv"], work / "tokenizer.ckpt")
    rows = list(sb.dataio.dataio.load_data_csv(str(work / "train.csv")).values())
    batches = []
    for start in range(0, n_batches * batch_size, batch_size):
        chunk = rows[start : start + batch_size]
        if not chunk:
            break
        wavs = [load_audio(r["wav"]) for r in chunk]
        toks = [
            torch.LongTensor(tokenizer.encode_sequence(list(r["wrd"]))) for r in chunk
        ]
        longest, longest_t = max(len(w) for w in wavs), max(len(t) for t in toks)
        sig = torch.zeros(len(wavs), longest)
        tgt = torch.zeros(len(toks), longest_t, dtype=torch.long)
        for i, (w, t) in enumerate(zip(wavs, toks, strict=True)):
            sig[i, : len(w)], tgt[i, : len(t)] = w, t
        batches.append(
            (
                sig,
                torch.tensor([len(w) / longest for w in wavs]),
                tgt,
                torch.tensor([len(t) for t in toks]),
            )
        )
    return tokenizer, batches


def encode(model, sig, rel):
    """Normalised features -> encoder output [B, T, C] (the recipe's forward)."""
    feats = model.compute_features(sig)
    feats = model.normalize(feats, rel)
    return model.encoder(feats, rel)


def ctc_batch(logits, rel, tgt, tgt_len):
    frames = torch.round(rel * logits.shape[1]).long()
    return logits, frames, tgt, tgt_len


def ctc_loss(logits, rel, tgt, tgt_len, blank):
    log_probs = torch.log_softmax(logits, -1).transpose(0, 1)
    frames = torch.round(rel * logits.shape[1]).long()
    return torch.nn.functional.ctc_loss(
        log_probs, tgt, frames, tgt_len, blank=blank, zero_infinity=True
    )


def row_stats(head, rows, blank):
    """Mean row norm and bias of copied (non-blank mapped), blank and fresh rows."""
    _, layer = _core_layer(head)
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    b = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0])
    copied = [r for r in rows if r != blank]
    fresh = [r for r in range(w.shape[0]) if r not in rows]

    def mean(x, idx):
        return float(x[idx].mean()) if idx else float("nan")

    norms = w.norm(dim=1)
    return {
        "copied_norm": mean(norms, copied),
        "copied_bias": mean(b, copied),
        "blank_norm": float(norms[blank]),
        "blank_bias": float(b[blank]),
        "fresh_norm": mean(norms, fresh),
        "fresh_bias": mean(b, fresh),
        "n_copied": len(copied),
        "n_fresh": len(fresh),
    }


def logit_stats(head, hidden, batches, blank):
    maxes, ents, blank_share, blank_arg, losses, n = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for h, (_, rel, tgt, tgt_len) in zip(hidden, batches, strict=True):
            logits = head(h)
            frames = torch.round(rel * logits.shape[1]).long()
            mask = torch.arange(logits.shape[1])[None, :] < frames[:, None]
            probs = torch.softmax(logits, -1)
            ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
            k = int(mask.sum())
            maxes += float(logits.max(-1).values[mask].sum())
            ents += float(ent[mask].sum())
            blank_share += float(probs[..., blank][mask].sum())
            blank_arg += float((logits.argmax(-1) == blank)[mask].sum())
            losses += float(ctc_loss(logits, rel, tgt, tgt_len, blank)) * len(tgt)
            n += k
    utts = sum(len(b[2]) for b in batches)
    return {
        "max_logit": maxes / n,
        "entropy": ents / n,
        "blank_posterior": blank_share / n,
        "blank_argmax": blank_arg / n,
        "ctc_loss": losses / utts,
    }


def first_updates(model, head, batches, blank, steps, lr, seed):
    """Grad norms (encoder, head) and loss over the first AdamW steps."""
    torch.manual_seed(seed)
    encoder, head = copy.deepcopy(model.encoder), copy.deepcopy(head)
    normalize = copy.deepcopy(model.normalize)
    encoder.train(), head.train()
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.001)
    out = []
    for step in range(steps):
        sig, rel, tgt, tgt_len = batches[step % len(batches)]
        feats = normalize(model.compute_features(sig), rel)
        loss = ctc_loss(head(encoder(feats, rel)), rel, tgt, tgt_len, blank)
        opt.zero_grad()
        loss.backward()
        g_enc = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in encoder.parameters()))
        g_head = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in head.parameters()))
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        out.append({"loss": loss.item(), "grad_encoder": g_enc, "grad_head": g_head})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="base model folder")
    parser.add_argument("--data", required=True, help="target corpus (CV layout)")
    parser.add_argument("--lang", required=True, help="target locale, e.g. es")
    parser.add_argument("--strategy", default="exact,fold")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    model = load_pretrained(args.base)
    model.encoder.eval(), model.head.eval(), model.normalize.eval()
    with tempfile.TemporaryDirectory() as work:
        tokenizer, batches = load_batches(
            Path(args.data), args.lang, Path(work), args.batches, args.batch_size
        )
    target = [tokenizer.ind2lab[i] for i in range(len(tokenizer))]
    blank = target.index("<blank>") if "<blank>" in target else 0
    with torch.no_grad():
        hidden = [encode(model, sig, rel) for sig, rel, _, _ in batches]

    def build(strategy, **kw):
        torch.manual_seed(args.seed)  # the same fresh rows for every head
        return remap_ctc_head(
            model.head,
            model.tokens,
            target,
            strategy,
            source_blank=model.blank_index,
            target_blank=blank,
            **kw,
        )

    heads = {
        "reinit": build("none", copy_blank=False),
        "none": build("none"),
        "remap": build(args.strategy),
        "rescale": build(args.strategy, calibrate="rescale"),
        "blend0.5": build(args.strategy, blend_alpha=0.5),
        "fresh_blank": build(args.strategy, copy_blank=False),
    }
    head, report = build(args.strategy)
    temperature = fit_temperature(
        [
            ctc_batch(head(h).detach(), rel, tgt, tl)
            for h, (_, rel, tgt, tl) in zip(hidden, batches, strict=True)
        ],
        report.mapped_rows,
        blank,
    )
    apply_temperature(head, report.mapped_rows, temperature)
    heads[f"temperature({temperature:.2f})"] = (head, report)

    print(
        f"base {args.base}: {len(model.tokens)} tokens; target {args.data}: "
        f"{len(target)} tokens; {heads['remap'][1]}"
    )
    print(f"{sum(len(b[2]) for b in batches)} utterances in {len(batches)} batches")
    results = {}
    print("\n1-2. rows and logit scale (mean over valid frames)")
    cols = (
        "copied_norm copied_bias blank_norm blank_bias fresh_norm fresh_bias "
        "max_logit entropy blank_posterior blank_argmax ctc_loss"
    ).split()
    print(f"{'head':<18}" + "".join(f"{c:>16}" for c in cols))
    for name, (h, rep) in heads.items():
        stats = {
            **row_stats(h, rep.mapped_rows, blank),
            **logit_stats(h, hidden, batches, blank),
        }
        results[name] = stats
        print(f"{name:<18}" + "".join(f"{stats[c]:>16.3f}" for c in cols))
    print(f"(ln V = {math.log(len(target)):.3f}: the entropy of a uniform posterior)")

    print(
        f"\n3. first {args.steps} AdamW steps (lr {args.lr}): loss, |g_enc|, |g_head|"
    )
    for name in ("reinit", "none", "remap", "rescale", next(iter(reversed(heads)))):
        steps = first_updates(
            model, heads[name][0], batches, blank, args.steps, args.lr, args.seed
        )
        results[name]["updates"] = steps
        line = "  ".join(
            f"{s['loss']:.1f}/{s['grad_encoder']:.2f}/{s['grad_head']:.2f}"
            for s in steps
        )
        print(f"{name:<18}{line}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
