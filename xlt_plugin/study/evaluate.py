"""Running models on audio for the study: scores on a manifest, and forgetting.

The report (:mod:`xlt_plugin.study.report`) reads numbers; this module makes
the only ones it cannot read from a run folder: the source-language scores of a
fine-tuned encoder under its base's head, or of a whole model adapted within the
source's alphabet (:func:`source_scores`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from xlt_plugin.runs import model_dir
from xlt_plugin.scoring import ErrorRates


def evaluate_manifest(model, csv_file: str | Path, batch_size: int = 8) -> dict:
    """Greedy CER/WER of a ``PretrainedCTC`` on a manifest (``wav``, ``wrd``).

    Arguments
    ---------
    model : xlt_plugin.pretrained.PretrainedCTC
    csv_file : path
        A manifest written by the prep.
    batch_size : int

    Returns
    -------
    dict
        ``{"CER": float, "WER": float, "utterances": int}``.
    """
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.decoders import ctc_greedy_decode

    from xlt_plugin.data.pipeline import load_audio

    with open(csv_file, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rate = model.config.get("features", {}).get("sample_rate", 16000)
    scores = ErrorRates()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = PaddedBatch([{"sig": load_audio(r["wav"], rate)} for r in chunk])
        wavs, lens = batch.sig
        with torch.no_grad():
            log_probs = model.log_probs(wavs, lens)
        hyps = ctc_greedy_decode(log_probs, lens, blank_id=model.blank_index)
        texts = ["".join(model.tokens[t] for t in seq) for seq in hyps]
        scores.append([r["ID"] for r in chunk], texts, [r["wrd"] for r in chunk])
    return {**scores.summarize(), "utterances": len(rows)}


def source_scores(
    base_dir: Path, run_dir: Path | None = None, encoder_only: bool = False
) -> dict:
    """Greedy CER/WER of a run's model on its base's own test manifest.

    For adaptation within the source's alphabet (accents, domains), where the
    adapted model keeps the base's head rows: its English after adapting, with
    whatever it carries (adapters, averaged weights). For a transfer to another
    language (``encoder_only``), the run's encoder (adapters included) under the
    base's own head, tokens, features and normalisation (how much of the
    source language the transferred encoder still carries). The recipes score
    only their own test sets, so this runs the exported models (``model/``)
    here.

    Arguments
    ---------
    base_dir : Path
        Output folder of the base run (its ``save/test.csv`` is the test set).
    run_dir : Path, optional
        Output folder of the adapted run; None scores the base itself.
    encoder_only : bool
        Score the run's encoder under the base's head (another language's run).

    Returns
    -------
    dict
        ``{"CER": float, "WER": float, "utterances": int}``.
    """
    from xlt_plugin.pretrained import load_pretrained

    test_csv = Path(base_dir) / "save" / "test.csv"
    if run_dir is None:
        return evaluate_manifest(load_pretrained(model_dir(base_dir)), test_csv)
    model = load_pretrained(model_dir(run_dir))
    if encoder_only:
        base = load_pretrained(model_dir(base_dir))
        base.encoder = model.encoder  # a module swap: adapters come along
        model = base
    return evaluate_manifest(model, test_csv)
