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


def pytest_collection_modifyitems(config, items):
    """Mark everything under ``tests/recipes/`` slow (end-to-end training runs)."""
    recipes = REPO / "tests" / "recipes"
    for item in items:
        if recipes in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
