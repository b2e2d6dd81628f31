#!/usr/bin/env python3
"""Adapt the English base to accents it never heard, or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/en-accents \
        --pretrained_path=results/EnglishBase/small/1234/model

The test set is scored per accent (the Common Voice `accents` column): the base
as it is (zero-shot), after fine-tuning, and (scratch.yaml) from scratch.
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
    export_model(brain, hparams, results)
