#!/usr/bin/env python3
"""Fine-tune a pretrained CTC model to a Common Voice language (or train from
scratch, with a *_scratch.yaml).

    python train.py hparams/es_xfer.yaml --data_folder=data/es \
        --pretrained_path=results/EnglishBase/small/1234/model

The encoder comes from the pretrained model; the CTC head is remapped to the
target alphabet (rows of shared letters kept, see `remap_strategy`). The result is
written in hub layout to <output_folder>/model, itself a pretrained_path.
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
