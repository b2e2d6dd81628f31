"""The study profiles of the plugin's own claims (issues 13 and 14): what they run.

No training here: the profiles' definitions, their command lines against the
recipes' YAMLs, and the run-time estimate they are sized by.
"""

import dataclasses

import pytest
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import resolve_references

from xlt_plugin.freeze import StagedUnfreezing
from xlt_plugin.lobes.quartznet import QuartzNet
from xlt_plugin.resources import recipes_folder
from xlt_plugin.study.estimates import describe, estimate, run_seconds
from xlt_plugin.study.own_profiles import (
    BASE_LADDER,
    CLIP_SECONDS,
    EN_BASE,
    REMAP_CHOSEN,
    REMAP_REMEDIES,
    STUDY_AUGMENT,
    STUDY_BATCHING,
    STUDY_FEATURES,
    XLT_BASE_PRESET,
)
from xlt_plugin.study.profiles import PROFILES, SEEDED
from xlt_plugin.study.runner import command
from xlt_plugin.study.spec import corpus_ref

OWN = (
    "bases",
    "bases_zh",
    "remap_screen",
    "remap",
    "continual",
    "remap_tiny",
    "continual_tiny",
)
METHODS = ["full", "frozen_bn", "staged", "replay25", "replay50", "average",
           "average_bn", "adapters"]  # fmt: skip


def _top_level(path):
    """Top-level keys of a recipe YAML (its tags read as plain values)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)


def _folders(profile, tmp_path):
    return {c.name: tmp_path / "data" / c.name for c in profile.corpora}


def test_profiles_are_registered_and_take_seeds():
    for name in OWN:
        assert name in PROFILES and name in SEEDED
        profile = PROFILES[name]()
        assert profile.name == name
        assert all(c.conditions == "realistic" for c in profile.corpora), name
        # Every run's data is a corpus of the profile, every base a run of it.
        corpora = {c.name for c in profile.corpora}
        runs = {r.name for r in profile.runs}
        assert len(runs) == len(profile.runs), f"{name}: duplicate run names"
        assert all(r.data in corpora for r in profile.runs)
        assert all(r.base is None or r.base in runs for r in profile.runs)
    assert {s for r in PROFILES["remap"](seeds=2).runs for s in [r.seed]} == {1, 2}


def test_remap_screen_definition():
    profile = PROFILES["remap_screen"]()
    base = [r for r in profile.runs if r.task == "base"]
    assert [r.name for r in base] == [EN_BASE]
    assert base[0].overrides["encoder_preset"] == XLT_BASE_PRESET
    runs = [r for r in profile.runs if r.task == "remap"]
    # es and de x (2 starts + 6 remedies) x 3 seeds, plus the base.
    assert len(profile.runs) == 1 + 2 * 8 * 3 == 49
    assert {r.language for r in runs} == {"es", "de"}
    assert {r.size for r in runs} == {"10min"}
    assert {r.seed for r in runs} == {1, 2, 3}
    variants = {r.variant for r in runs}
    assert variants == {"xfer_none", "xfer", *REMAP_REMEDIES}
    for run in runs:
        assert run.base == EN_BASE and run.overrides["seed"] == run.seed
        if run.variant in REMAP_REMEDIES:
            over = {k: run.overrides[k] for k in REMAP_REMEDIES[run.variant]}
            assert over == REMAP_REMEDIES[run.variant]
    none = next(r for r in runs if r.variant == "xfer_none")
    assert none.overrides["remap_strategy"] == "none"
    # Each remedy alone: one key family away from the plain remap, which names
    # the recipes' pre-issue-13 head (no calibration) so a new default can't
    # change what it measures.
    plain = next(r for r in runs if r.variant == "xfer" and r.language == "es")
    assert set(plain.overrides) == {
        "number_of_epochs", "seed", "head_calibration", *STUDY_BATCHING,
        *STUDY_AUGMENT, *STUDY_FEATURES,
    }  # fmt: skip
    assert plain.overrides["head_calibration"] == "none"
    # Seeds vary the data order of every fine-tuning run; the base keeps its own.
    assert all(r.overrides["dynamic_batching"] == STUDY_BATCHING["dynamic_batching"]
               for r in runs)  # fmt: skip
    assert "dynamic_batching" not in base[0].overrides


def test_remap_profile_definition():
    profile = PROFILES["remap"]()
    runs = [r for r in profile.runs if r.task == "remap"]
    assert len(runs) == 4 * 3 * 3 * 3 and len(profile.runs) == 110
    assert {r.name for r in profile.runs if r.task == "base"} == {EN_BASE, "base_zh"}
    assert {r.language for r in runs} == {"de", "es", "ru", "zh-HK"}
    assert {r.size for r in runs} == {"10min", "30min", "all"}
    chosen, overrides = REMAP_CHOSEN
    assert {r.variant for r in runs} == {"xfer_none", "xfer", chosen}
    for run in runs:
        assert run.base == ("base_zh" if run.language == "zh-HK" else EN_BASE)
        if run.variant == chosen:
            assert {k: run.overrides[k] for k in overrides} == overrides
    corpora = {c.name: c for c in profile.corpora}
    for lang in ("de", "es", "ru", "zh-HK"):
        for label, minutes in (("10min", 10), ("30min", 30)):
            subset = corpora[f"{lang}_{label}"]
            assert subset.subset_of == lang  # the parent's dev and test sets
            seconds = subset.train_utterances * CLIP_SECONDS[lang]
            assert abs(seconds - 60 * minutes) < CLIP_SECONDS[lang]
        train = {r.data for r in runs if r.language == lang and r.size == "all"}
        assert train == {lang}


def test_remap_shares_the_screening_runs():
    """One --out for both stages: the 10-minute es/de starts train once."""
    screen, remap = PROFILES["remap_screen"](), PROFILES["remap"]()
    screen_runs = {r.name: r for r in screen.runs}
    shared = [r for r in remap.runs if r.name in screen_runs]
    # The base, and es/de x 10min x (2 starts, and the chosen remedy when it is one
    # of the screened ones) x 3 seeds.
    starts = 3 if REMAP_CHOSEN[0] in REMAP_REMEDIES else 2
    assert len(shared) == 1 + 2 * starts * 3
    for run in shared:
        assert dataclasses.asdict(run) == dataclasses.asdict(screen_runs[run.name])
    screen_corpora = {c.name: c for c in screen.corpora}
    for corpus in remap.corpora:
        if corpus.name in screen_corpora:
            assert corpus == screen_corpora[corpus.name]


def test_continual_profile_definition():
    profile = PROFILES["continual"]()
    spanish = ["full", "frozen_bn", "staged", "adapters"]
    assert len(profile.runs) == 1 + 3 * (1 + len(METHODS)) + 1 + len(spanish)
    assert len(PROFILES["continual"](seeds=3).runs) == 1 + 3 * (3 * 9 + 5) == 97
    runs = [r for r in profile.runs if r.task == "continual"]
    assert {r.data for r in runs} == {"en_accents", "en_medical", "en_atc", "es"}
    for data in ("en_accents", "en_medical", "en_atc"):
        variants = [r.variant for r in runs if r.data == data]
        assert sorted(variants) == sorted(["scratch", *METHODS])
    # Spanish: the methods that need no English head rows, no English corpus.
    es = [r for r in runs if r.data == "es"]
    assert sorted(r.variant for r in es) == sorted(["scratch", *spanish])
    assert all(r.language == "es" and r.recipe == "CommonVoice" for r in es)
    assert {r.hparams for r in es} == {"es_xfer.yaml", "es_scratch.yaml"}
    assert not any("replay_data_folder" in r.overrides for r in es)
    # The remap profiles' Spanish corpus: one --out shares it.
    remap_es = next(c for c in PROFILES["remap"]().corpora if c.name == "es")
    assert next(c for c in profile.corpora if c.name == "es") == remap_es
    for run in runs:
        if run.data == "es":
            continue
        if run.variant == "scratch":
            assert run.base is None and run.hparams == "scratch.yaml"
            assert run.overrides["encoder_preset"] == XLT_BASE_PRESET
            continue
        assert run.base == EN_BASE and run.hparams == "xfer.yaml"
        # Rehearsal and auto-averaging draw on the base's English corpus; every
        # run names it so its head keeps the base's rows.
        assert run.overrides["replay_data_folder"] == corpus_ref("en")
        if run.recipe == "Domain":
            assert run.overrides["lm_order"] == 0
        # Rehearsal builds its own batches (the recipe refuses dynamic batching).
        replay = run.overrides.get("replay_ratio", 0) > 0
        assert ("dynamic_batching" in run.overrides) is not replay, run.name
    ratios = {
        r.variant: r.overrides.get("replay_ratio", 0.0)
        for r in runs
        if r.data == "en_accents"
    }
    assert ratios["replay25"] == 0.25 and ratios["replay50"] == 0.5
    assert ratios["full"] == ratios["average"] == 0.0
    average = next(r for r in runs if r.variant == "average")
    assert average.overrides["average_alpha"] == "auto"
    assert "average_batchnorm" not in average.overrides  # the YAML's: average
    recompute = next(r for r in runs if r.variant == "average_bn")
    assert recompute.overrides["average_batchnorm"] == "recompute"


def test_staged_plan_fits_the_base_encoder():
    """The staged plan's patterns name parameters of the base's encoder (a plan
    whose pattern covers nothing is refused by the recipe at its first epoch)."""
    run = next(r for r in PROFILES["continual"]().runs if r.variant == "staged")
    plan = StagedUnfreezing(
        run.overrides["freeze_patterns"], run.overrides["unfreeze_at"]
    )
    encoder = QuartzNet(input_size=64, preset=XLT_BASE_PRESET)
    model = torch.nn.ModuleDict(
        {"encoder": encoder, "head": torch.nn.Linear(encoder.output_size, 30)}
    )
    assert plan.always_frozen(model) == set()  # all of it unfrozen by the end
    assert plan.frozen_names(model, 1) and not plan.frozen_names(model, 6)
    assert len(plan.frozen_names(model, 3)) < len(plan.frozen_names(model, 1))


@pytest.mark.parametrize("name", [*OWN, "difficulty", "full"])
def test_overrides_name_keys_of_their_yamls(name, tmp_path):
    """Every override is a top-level key of the run's YAML (a recipe refuses any
    other: ``--x is not a key``), and a corpus named by one becomes its folder."""
    profile = PROFILES[name]()
    folders = _folders(profile, tmp_path)
    loaded = set()  # the YAML and the structure of its overrides
    for run in profile.trained():  # a second name trains nothing of its own
        cmd = command(run, folders[run.data], tmp_path / "runs", folders)
        _, _, overrides = sb.parse_arguments(cmd[2:])
        keys = set(_top_level(recipes_folder() / run.recipe / "hparams" / run.hparams))
        given = yaml.safe_load(overrides) or {}
        assert set(given) <= keys, (run.name, set(given) - keys)
        # ... and the YAML takes them (a mapping cannot override a null, say).
        shape = (run.recipe, run.hparams, frozenset(
            (k, type(v).__name__) for k, v in given.items()))  # fmt: skip
        if shape not in loaded:
            loaded.add(shape)
            path = recipes_folder() / run.recipe / "hparams" / run.hparams
            with open(path, encoding="utf-8") as stream:
                resolve_references(stream, overrides)
        if "replay_data_folder" in given:
            assert given["replay_data_folder"] == str(folders["en"])


def test_a_corpus_reference_needs_the_folders(tmp_path):
    run = next(r for r in PROFILES["continual"]().runs if r.variant == "full")
    with pytest.raises(ValueError, match="corpus 'en'"):
        command(run, tmp_path / "en_accents", tmp_path / "runs")


def test_estimates_and_run_counts():
    screen = estimate(PROFILES["remap_screen"]())
    assert (screen["runs"], screen["bases"]) == (49, 1)
    assert screen["hours"] < 1.5  # the screening's budget on 2 cores
    assert estimate(PROFILES["remap"]())["hours"] < 5
    assert estimate(PROFILES["continual"](seeds=3))["hours"] < 5
    line = describe(PROFILES["continual"]())
    assert line.startswith("Profile continual: 33 runs (1 bases)")
    assert "no CPU estimate" in describe(PROFILES["gpu"]())
    # A rehearsal run costs more: its epochs carry the replayed clips too.
    profile = PROFILES["continual"]()
    seconds = {
        r.variant: run_seconds(r, profile)
        for r in profile.runs
        if r.data == "en_medical"
    }
    assert seconds["full"] < seconds["replay25"] < seconds["replay50"]


def test_mandarin_ladder_shares_the_remap_profiles_corpus():
    profile = PROFILES["bases_zh"]()
    remap_zh = next(c for c in PROFILES["remap"]().corpora if c.name == "zh-CN")
    assert profile.corpora == [remap_zh]
    assert [r.size for r in profile.runs[:3]] == list(BASE_LADDER)
    assert all(r.recipe == "MandarinBase" and r.task == "bases" for r in profile.runs)


def test_difficulty_profile_pairs_clean_and_realistic_corpora():
    profile = PROFILES["difficulty"](seeds=2)
    corpora = {c.name: c for c in profile.corpora}
    pairs = {"en": "en_clean", "es": "es_clean", "es_10min": "es_clean_10min"}
    for name, clean_name in pairs.items():  # the same sentences, other acoustics
        realistic, clean = corpora[name], corpora[clean_name]
        assert realistic.conditions == "realistic" and clean.conditions == "clean"
        same = ("seed", "utterances", "train_utterances", "vocab_size")
        assert [getattr(realistic, k) for k in same] == [
            getattr(clean, k) for k in same
        ]
    remap = {c.name: c for c in PROFILES["remap"]().corpora}
    assert corpora["en"] == remap["en"] and corpora["es"] == remap["es"]
    runs = [r for r in profile.runs if r.task == "difficulty"]
    assert len(runs) == 2 * 2 * 2 * 2  # conditions x sizes x variants x seeds
    bases = {r.base for r in runs if r.variant == "xfer"}
    assert bases == {EN_BASE, "base_en_clean"}
    clean_base = next(r for r in profile.runs if r.name == "base_en_clean")
    assert clean_base.data == "en_clean"
