#!/usr/bin/env python3
"""Fine-tune the Mandarin base to Cantonese (zh-HK), or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/zh-HK \
        --pretrained_path=results/MandarinBase/small/1234/model

The encoder comes from the Mandarin model; each Traditional (Hong Kong) character
of the CTC head starts from the row of its Simplified form (`exact,opencc`).
"""

from xlt_plugin.recipe import main

if __name__ == "__main__":
    # Load the YAML, prepare the data, build the Brain, fit, test the best
    # checkpoint, write <output_folder>/model (xlt_plugin/recipe.py, one
    # function a step). A mistake in the command line ends with one message.
    main()
