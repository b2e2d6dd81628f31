#!/usr/bin/env python3
"""Adapt the English base to an application domain, or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/en-medical \
        --pretrained_path=results/EnglishBase/small/1234/model

Any Common Voice-layout folder works; `xlt synth --lang en --domain medical`
makes one. The test set is scored per `sentence_domain`: the base as it is
(zero-shot), after fine-tuning, and (scratch.yaml) from scratch.
"""

import sys

from xlt_plugin.recipe import (
    common_voice_data,
    export_model,
    fit_and_test,
    load_recipe,
    make_brain,
)

if __name__ == "__main__":
    hparams, run_opts, _ = load_recipe(sys.argv[1:])
    tokenizer, datasets = common_voice_data(hparams)
    brain = make_brain(hparams, run_opts, tokenizer)
    results = fit_and_test(brain, datasets, hparams)
    export_model(
        brain,
        hparams,
        {
            "language": hparams["language"],
            "pretrained_path": str(hparams.get("pretrained_path") or ""),
            "remap_strategy": hparams.get("remap_strategy"),
            "test": results,
        },
    )
