#!/usr/bin/env python3
"""Fine-tune a pretrained CTC model to a Common Voice language (or train from
scratch, with a *_scratch.yaml).

    python train.py hparams/es_xfer.yaml --data_folder=data/es \
        --pretrained_path=results/EnglishBase/small/1234/model

The encoder comes from the pretrained model; the CTC head is remapped to the
target alphabet (rows of shared letters kept, see `remap_strategy`). The result is
written in hub layout to <output_folder>/model, itself a pretrained_path.
"""

from xlt_plugin.recipe import main

if __name__ == "__main__":
    # Load the YAML, prepare the data, build the Brain, fit, test the best
    # checkpoint, write <output_folder>/model (xlt_plugin/recipe.py, one
    # function a step). A mistake in the command line ends with one message.
    main()
