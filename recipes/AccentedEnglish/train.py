#!/usr/bin/env python3
"""Adapt the English base to accents it never heard, or train from scratch.

    python train.py hparams/xfer.yaml --data_folder=data/en-accents \
        --pretrained_path=results/EnglishBase/small/1234/model

The test set is scored per accent (the Common Voice `accents` column): the base
as it is (zero-shot), after fine-tuning, and (scratch.yaml) from scratch.
"""

from xlt_plugin.recipe import main

if __name__ == "__main__":
    # Load the YAML, prepare the data, build the Brain, fit, test the best
    # checkpoint, write <output_folder>/model (xlt_plugin/recipe.py, one
    # function a step). A mistake in the command line ends with one message.
    main()
