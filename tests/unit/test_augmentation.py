"""Training augmentation (SpeechBrain's ``Augmenter``) in CTCTransferBrain.

Only the TRAIN stage is augmented; a batch an augmenter grows (``concat_original``,
``repeat_augment``) gets its CTC targets replicated in the same order; speed
perturbation's new lengths reach the loss; waveform augmentation is refused with
cached features, feature-domain augmentation works on them.
"""

from pathlib import Path

import pytest
import speechbrain as sb
import torch
from conftest import tiny_ctc_brain
from hyperpyyaml import load_hyperpyyaml
from speechbrain.augment.augmenter import Augmenter
from speechbrain.augment.freq_domain import SpectrogramDrop
from speechbrain.augment.time_domain import DropChunk, SpeedPerturb
from speechbrain.dataio.batch import PaddedBatch

from xlt_plugin.brain import CACHE_CONFLICT, augmentation_if

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TEXTS = ["hola", "sí", "no", "casa"]
LENGTHS = [6000 + 800 * i for i in range(len(TEXTS))]  # tiny_ctc_brain's lengths


def _brain(cached=False, **settings):
    return tiny_ctc_brain(TEXTS, cached=cached, **settings)


def _batch(dataset):
    return PaddedBatch([dataset[i] for i in range(len(dataset))])


def _spec_drop():
    return Augmenter(
        augmentations=[SpectrogramDrop(drop_count_low=1, drop_count_high=2, dim=2)],
        min_augmentations=1,
        max_augmentations=1,
    )


def _capture_ctc(monkeypatch):
    seen = {}
    ctc = sb.nnet.losses.ctc_loss

    def spy(log_probs, targets, input_lens, target_lens, blank_index):
        seen.update(log_probs=log_probs, targets=targets, input_lens=input_lens)
        seen["target_lens"] = target_lens
        return ctc(log_probs, targets, input_lens, target_lens, blank_index)

    monkeypatch.setattr(sb.nnet.losses, "ctc_loss", spy)
    return seen


@pytest.mark.parametrize("yaml_name", ["EnglishBase/hparams/quartznet_small.yaml"])
def test_recipe_switch_is_on_by_default(yaml_name):
    text = (REPO_RECIPES / yaml_name).read_text()
    on = load_hyperpyyaml(text, {"data_folder": "x"})
    assert on["augment"] is True
    assert isinstance(on["wav_augmentation"], Augmenter)
    assert on["wav_augmentation"].concat_original  # the batch doubles
    assert isinstance(on["augmentation"], Augmenter)
    off = load_hyperpyyaml(text, {"data_folder": "x", "augment": False})
    assert off["augmentation"] is None and off["wav_augmentation"] is None
    with pytest.raises(ValueError, match="True or False"):
        augmentation_if("yes", on["augmentation"])


def test_every_training_yaml_augments_by_default():
    """One default for every recipe (the measured one): ``augment: True``."""
    yamls = sorted(REPO_RECIPES.glob("*/hparams/*.yaml"))
    assert len(yamls) >= 15
    for path in yamls:
        lines = [x for x in path.read_text().splitlines() if x.startswith("augment:")]
        assert lines == ["augment: True"], path


@pytest.mark.parametrize("repeat", [1, 2])
def test_a_grown_batch_keeps_targets_aligned(monkeypatch, repeat):
    speed = SpeedPerturb(orig_freq=16000, speeds=[90])  # 100/90 times longer
    wav_augment = Augmenter(
        augmentations=[speed, DropChunk(drop_length_low=100, drop_length_high=200)],
        concat_original=True,
        repeat_augment=repeat,
        min_augmentations=2,
        max_augmentations=2,
    )
    brain, dataset = _brain(wav_augmentation=wav_augment, augmentation=_spec_drop())
    batch = _batch(dataset)
    seen = _capture_ctc(monkeypatch)
    loss = brain.compute_objectives(
        brain.compute_forward(batch, sb.Stage.TRAIN), batch, sb.Stage.TRAIN
    )
    assert torch.isfinite(loss)
    n = len(TEXTS)
    copies = 1 + repeat
    tokens, token_lens = batch.tokens
    assert seen["log_probs"].shape[0] == copies * n
    assert torch.equal(seen["targets"], tokens.repeat(copies, 1))
    assert torch.equal(seen["target_lens"], token_lens.repeat(copies))
    # Originals first, then each augmented copy in the same order, 100/90 longer:
    # the speed-perturbed lengths reach the loss with their targets.
    samples = seen["input_lens"] * batch.sig[0].shape[1] * 100 / 90
    for c in range(1, copies):
        stretched = samples[c * n : (c + 1) * n]
        expected = torch.tensor(LENGTHS, dtype=stretched.dtype) * 100 / 90
        assert torch.allclose(stretched, expected, rtol=0.01)
    originals = torch.tensor(LENGTHS, dtype=samples.dtype)
    assert torch.allclose(samples[:n], originals, rtol=0.001)


def test_eval_stages_are_untouched():
    plain, dataset = _brain()
    wav_augment = Augmenter(
        augmentations=[SpeedPerturb(orig_freq=16000, speeds=[90, 110])],
        concat_original=True,
    )
    augmented, _ = _brain(wav_augmentation=wav_augment, augmentation=_spec_drop())
    augmented.modules.load_state_dict(plain.modules.state_dict())
    batch = _batch(dataset)
    losses = {}
    for name, brain in (("plain", plain), ("augmented", augmented)):
        for stage in (sb.Stage.VALID, sb.Stage.TEST):
            brain.on_stage_start(stage, epoch=1)
            losses[name, stage] = brain.evaluate_batch(batch, stage)
    for stage in (sb.Stage.VALID, sb.Stage.TEST):
        assert torch.equal(losses["plain", stage], losses["augmented", stage])
    # ... while training batches do change (and grow).
    log_probs, _ = augmented.compute_forward(batch, sb.Stage.TRAIN)
    assert log_probs.shape[0] == 2 * len(TEXTS)


def test_training_with_augmentation_gives_finite_losses():
    wav_augment = Augmenter(
        augmentations=[SpeedPerturb(orig_freq=16000, speeds=[95, 105])],
        concat_original=True,
    )
    brain, dataset = _brain(wav_augmentation=wav_augment, augmentation=_spec_drop())
    brain.fit(
        brain.hparams.epoch_counter, dataset, train_loader_kwargs={"batch_size": 2}
    )
    assert brain.nonfinite_skipped == 0
    assert torch.isfinite(torch.tensor(brain.avg_train_loss))


def test_feature_cache_refuses_waveform_augmentation(tmp_path):
    wav_augment = Augmenter(augmentations=[SpeedPerturb(orig_freq=16000)])
    with pytest.raises(ValueError) as err:
        _brain(wav_augmentation=wav_augment, feature_cache=str(tmp_path))
    assert "`wav_augmentation`" in str(err.value)
    assert "`feature_cache`" in str(err.value)
    # A batch of cached features reaching waveform augmentation is refused too.
    brain, dataset = _brain(cached=True, wav_augmentation=wav_augment)
    with pytest.raises(ValueError, match="feature_cache"):
        brain.compute_forward(_batch(dataset), sb.Stage.TRAIN)
    assert "feature_cache" in CACHE_CONFLICT


def test_feature_cache_takes_feature_augmentation(tmp_path):
    brain, dataset = _brain(
        cached=True, feature_cache=str(tmp_path), augmentation=_spec_drop()
    )
    batch = _batch(dataset)
    masked, lens = brain.compute_forward(batch, sb.Stage.TRAIN)
    loss = brain.compute_objectives((masked, lens), batch, sb.Stage.TRAIN)
    assert torch.isfinite(loss)
    brain.settings.augmentation = None
    clean, _ = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert masked.shape == clean.shape  # masks only: the batch does not grow
    assert not torch.equal(masked, clean)
