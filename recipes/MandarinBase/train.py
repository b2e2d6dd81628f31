#!/usr/bin/env python3
"""Train the Mandarin CTC base model from scratch (the base for Cantonese).

    python train.py hparams/quartznet_small.yaml --data_folder=data/zh-CN

Prepares the Common Voice folder, builds the character inventory, trains the
QuartzNet with CTC, tests the best checkpoint and writes the model in hub layout
to <output_folder>/model: the pretrained_path of the transfer recipes.
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
