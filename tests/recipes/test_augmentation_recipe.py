"""A recipe's augmentation (SpeechBrain's Augmenter, on by default)."""

import json
import math

import pytest
from conftest import EN_BASE_YAML, run_recipe

from xlt_plugin.brain import CACHE_CONFLICT

TINY = [
    "--encoder_preset=quartznet_tiny",
    "--number_of_epochs=1",
    "--batch_size=4",
    "--noprogressbar",
]


def _records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").open()]


def test_augmented_recipe_trains_with_finite_losses(corpora, tmp_path):
    """The YAML's default trains with both augmenters; ``--augment=False`` with
    neither."""
    out = tmp_path / "out"
    argv = [EN_BASE_YAML, f"--data_folder={corpora('en', 16)}", *TINY]
    brain, hparams, _ = run_recipe([*argv, f"--output_folder={out}"])
    assert hparams["augment"] is True
    assert brain.settings.wav_augmentation is hparams["wav_augmenter"]
    assert brain.settings.augmentation is hparams["fea_augmenter"]
    assert brain.nonfinite_skipped == 0
    losses = [r["loss"] for r in _records(out)]
    assert losses and all(math.isfinite(x) for x in losses)
    off, _, _ = run_recipe([*argv, f"--output_folder={tmp_path / 'off'}",
                            "--augment=False"])  # fmt: skip
    assert off.settings.wav_augmentation is None and off.settings.augmentation is None


def test_feature_cache_refuses_waveform_augmentation(corpora, tmp_path):
    argv = [
        EN_BASE_YAML,
        f"--data_folder={corpora('en', 16)}",
        f"--feature_cache={tmp_path / 'features'}",
        "--augment=True",
        *TINY,
    ]
    with pytest.raises(ValueError) as err:
        run_recipe([*argv, f"--output_folder={tmp_path / 'refused'}"])
    assert str(err.value) == CACHE_CONFLICT
    # Without the waveform part, the cached features take the feature masks.
    out = tmp_path / "features_only"
    brain, _, _ = run_recipe(
        [*argv, f"--output_folder={out}", "--wav_augmentation=null"]
    )
    assert brain.settings.wav_augmentation is None
    assert brain.settings.augmentation is not None
    assert all(math.isfinite(r["loss"]) for r in _records(out))
