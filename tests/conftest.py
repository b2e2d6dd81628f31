"""Shared fixtures: tiny synthetic corpora in Common Voice layout, made once."""

import os
from pathlib import Path

import pytest

# Tests are small: one thread each keeps two pytest workers (or CI's 2 cores) busy
# without oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def corpora(tmp_path_factory):
    """Return a function ``make(locale, utterances=12, **kw)`` caching corpora."""
    from xlt_plugin.synth.corpus import synthesize_corpus

    root = tmp_path_factory.mktemp("corpora")
    made = {}

    def make(locale, utterances=12, seed=1, **kwargs):
        key = (locale, utterances, seed, tuple(sorted(kwargs.items())))
        if key not in made:
            out = root / f"{locale}-{utterances}-{seed}-{len(made)}"
            synthesize_corpus(out, locale, utterances, seed=seed, jobs=2, **kwargs)
            made[key] = out
        return made[key]

    return make


REPO = Path(__file__).resolve().parents[1]
EN_BASE_YAML = REPO / "recipes" / "EnglishBase" / "hparams" / "quartznet_small.yaml"


def run_recipe(argv):
    """Run a recipe's steps in this process; return (brain, hparams, results)."""
    from xlt_plugin.recipe import (
        common_voice_data,
        export_model,
        fit_and_test,
        load_recipe,
        make_brain,
    )

    hparams, run_opts, _ = load_recipe([str(a) for a in argv])
    tokenizer, datasets = common_voice_data(hparams)
    brain = make_brain(hparams, run_opts, tokenizer)
    results = fit_and_test(brain, datasets, hparams)
    export_model(brain, hparams, results)
    return brain, hparams, results


@pytest.fixture(scope="session")
def en_base(corpora, tmp_path_factory):
    """A tiny English base trained for 3 epochs; returns its output folder."""
    out = tmp_path_factory.mktemp("en_base")
    run_recipe(
        [
            EN_BASE_YAML,
            f"--data_folder={corpora('en', 16)}",
            f"--output_folder={out}",
            "--encoder_preset=quartznet_tiny",
            "--number_of_epochs=3",
            "--batch_size=4",
            "--noprogressbar",
        ]
    )
    return out


def tiny_ctc_brain(
    texts,
    lr=1e-2,
    first_samples=6000,
    cached=False,
    run_opts=None,
    checkpointer=None,
    n_mels=40,
    featurizer=None,
    **hparams,
):
    """A QuartzNet-tiny ``CTCTransferBrain`` and a dataset of noise 'utterances'.

    One utterance per text, ``first_samples`` samples for the first and 800 more
    for each next one (seeded noise: no files, fast), with an optional SpeechBrain
    ``checkpointer``. ``featurizer`` replaces SpeechBrain's ``Fbank(n_mels)``
    (it must give ``n_mels`` features). ``cached`` gives the items
    Fbank features (``feats``) instead of waveforms (``sig``); ``hparams`` are
    added to (or replace) the Brain's minimal hyperparameters.
    """
    import speechbrain as sb
    import torch
    from speechbrain.dataio.dataset import DynamicItemDataset
    from speechbrain.lobes.features import Fbank
    from speechbrain.nnet.linear import Linear
    from speechbrain.utils.epoch_loop import EpochCounter

    from xlt_plugin.brain import CTCTransferBrain
    from xlt_plugin.lobes.quartznet import QuartzNet
    from xlt_plugin.tokens import build_char_encoder

    tokenizer = build_char_encoder(texts)
    fbank = featurizer or Fbank(n_mels=n_mels)
    gen = torch.Generator().manual_seed(0)
    data = {}
    for i, text in enumerate(texts):
        wav = 0.1 * torch.randn(first_samples + 800 * i, generator=gen)
        signal = {"feats": fbank(wav.unsqueeze(0))[0]} if cached else {"sig": wav}
        data[f"u{i}"] = {"wrd": text, **signal}
    dataset = DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens")
    def tokens(wrd):
        return torch.LongTensor(tokenizer.encode_sequence(list(wrd)))

    dataset.add_dynamic_item(tokens)
    dataset.set_output_keys(["id", "feats" if cached else "sig", "tokens", "wrd"])
    torch.manual_seed(0)
    encoder = QuartzNet(input_size=n_mels, preset="quartznet_tiny")
    head = Linear(input_size=encoder.output_size, n_neurons=len(tokenizer))
    settings = {
        "compute_features": fbank,
        "blank_index": 0,
        "number_of_epochs": 1,
        "lr": lr,
        "epoch_counter": EpochCounter(1),
        **hparams,
    }
    brain = CTCTransferBrain(
        modules={"encoder": encoder, "head": head},
        opt_class=lambda params: torch.optim.AdamW(params, lr=lr),
        hparams=settings,
        run_opts={"device": "cpu", "noprogressbar": True, **(run_opts or {})},
        checkpointer=checkpointer,
        tokenizer=tokenizer,
    )
    return brain, dataset


def pytest_collection_modifyitems(config, items):
    """Mark everything under ``tests/recipes/`` slow (end-to-end training runs)."""
    recipes = REPO / "tests" / "recipes"
    for item in items:
        if recipes in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
