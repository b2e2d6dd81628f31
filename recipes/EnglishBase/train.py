#!/usr/bin/env python3
"""Train a CTC base model from scratch (English here; any Common Voice locale).

    python train.py hparams/quartznet_small.yaml --data_folder=data/en

Prepares the Common Voice folder, builds the character inventory, trains the
QuartzNet with CTC, tests the best checkpoint and writes the model in hub layout
to <output_folder>/model: the pretrained_path of the transfer recipes.
"""

from xlt_plugin.recipe import main

if __name__ == "__main__":
    # Load the YAML, prepare the data, build the Brain, fit, test the best
    # checkpoint, write <output_folder>/model (xlt_plugin/recipe.py, one
    # function a step). A mistake in the command line ends with one message.
    main()
