#!/usr/bin/env python3
"""Fine-tune the Mandarin base to Cantonese (zh-HK), or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/zh-HK \
        --pretrained_path=results/MandarinBase/small/1234/model

The encoder comes from the Mandarin model; each Traditional (Hong Kong) character
of the CTC head starts from the row of its Simplified form (`exact,opencc`).
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
