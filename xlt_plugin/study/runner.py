"""The study: the paper's three findings, re-measured end to end on one machine.

``xlt study --profile demo`` (what ``make demo`` runs) synthesizes the corpora,
pretrains the English bases, runs every transfer and its from-scratch baseline
through the real recipes (each run is ``python recipes/<R>/train.py <yaml> ...``,
exactly what a user types), then writes ``REPORT.md`` and its figures.

Runs are scheduled as a small dependency graph over ``jobs`` slots (default two,
one thread each: on 2 CPU cores two 1-thread runs side by side beat one 2-thread
run). A rerun skips finished runs and resumes an interrupted one from its last
checkpoint (the recipes do that by themselves).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xlt_plugin.resources import recipes_folder
from xlt_plugin.runs import final_tests, is_finished, read_metrics

logger = logging.getLogger(__name__)

# The folder this xlt_plugin is imported from (a checkout, or site-packages): the
# recipe subprocesses import the same package. The recipes: resources.py.
IMPORT_ROOT = Path(__file__).resolve().parents[2]

BASE_ACCENTS = "us,england,rp,nyc,lancashire,west_midlands"
HELD_OUT_ACCENTS = "scotland,caribbean"
# The Mandarin base of the CPU profiles, and its from-scratch Cantonese twin. Han
# text has hundreds of characters; on ~2,400 training utterances quartznet_tiny
# leaves CTC's blank-only plateau by epoch 3 (dev CER 9.7 after 20 epochs), while
# quartznet_small was still at dev CER 95.6 after 6 epochs at lr 0.002.
MANDARIN_TINY = {"encoder_preset": "quartznet_tiny"}
MANDARIN_BASE = {"number_of_epochs": 20, **MANDARIN_TINY}


@dataclass
class Corpus:
    """A synthetic corpus (``xlt synth``), or a training subset of another one.

    A subset keeps the parent's dev and test sets and the first
    ``train_utterances`` training rows, so runs on different data sizes are
    scored on the same test set.
    """

    name: str
    locale: str
    utterances: int = 0
    seed: int = 1
    accents: str | None = None
    domain: str | None = None
    subset_of: str | None = None
    train_utterances: int | None = None
    vocab_size: int = 3000  # words the sentences draw from (xlt synth --vocab-size)
    conditions: str = "clean"  # acoustic conditions (xlt synth --conditions)


@dataclass
class Run:
    """One recipe run: ``recipes/<recipe>/train.py hparams/<hparams> ...``."""

    name: str
    recipe: str
    hparams: str
    data: str
    task: str  # e.g. "base", "language", "accent", "domain", "size", "freezing"
    variant: str  # e.g. "scratch", "xfer", "xfer_none", "frozen_bn"
    base: str | None = None  # name of the run whose model/ is the pretrained_path
    overrides: dict = field(default_factory=dict)
    language: str = ""
    size: str | None = None  # label of the fine-tuning data size
    seed: int = 1


@dataclass
class Profile:
    """What a study runs."""

    name: str
    corpora: list[Corpus]
    runs: list[Run]
    description: str = ""
    forgetting: list[tuple[str, str]] = field(default_factory=list)


def _transfer_runs(
    task: str,
    language: str,
    recipe: str,
    xfer: str,
    scratch: str,
    data: str,
    base: str,
    common: dict,
    scratch_overrides: dict,
    seed: int = 1,
    variants: tuple = ("xfer", "scratch"),
    size: str | None = None,
    prefix: str | None = None,
) -> list[Run]:
    prefix = prefix or f"{task}_{language}"
    runs = []
    seed_args = {"seed": seed}
    for variant in variants:
        hp = scratch if variant == "scratch" else xfer
        over = {**common, **seed_args}
        if variant == "scratch":
            over.update(scratch_overrides)
        if variant == "xfer_none":
            over["remap_strategy"] = "none"
        runs.append(
            Run(
                name=f"{prefix}_{variant}_s{seed}",
                recipe=recipe,
                hparams=hp,
                data=data,
                task=task,
                variant=variant,
                base=None if variant == "scratch" else base,
                overrides=over,
                language=language,
                size=size,
                seed=seed,
            )
        )
    return runs


def _demo_runs(base_small: dict, base_large: dict, tune: dict, small: dict) -> list:
    """The demo's runs: two bases, es (3 starts), large-base es, accent, domain."""
    runs = [_base_run("small", base_small), _base_run("large", base_large)]
    runs += _transfer_runs(
        "language", "es", "CommonVoice", "es_xfer.yaml", "es_scratch.yaml", "es",
        "base_small", tune, small, variants=("scratch", "xfer_none", "xfer"),
    )  # fmt: skip
    runs += _transfer_runs(
        "size", "es", "CommonVoice", "es_xfer.yaml", "es_scratch.yaml", "es",
        "base_large", tune, small, variants=("xfer",), size="all",
        prefix="size_es_large",
    )  # fmt: skip
    runs += _transfer_runs(
        "accent", "en", "AccentedEnglish", "xfer.yaml", "scratch.yaml",
        "en_accents", "base_small", tune, small,
    )  # fmt: skip
    runs += _transfer_runs(
        "domain", "en", "Domain", "xfer.yaml", "scratch.yaml", "en_medical",
        "base_small", tune, small,
    )  # fmt: skip
    return runs


def _freezing_runs(tune: dict, seed: int = 1) -> list:
    """Spanish from ``base_small`` (a 5-block QuartzNet) with three freezing plans."""
    plans = {
        "frozen_bn": {"freeze_patterns": ["encoder"], "keep_batchnorm_trainable": True},
        "staged": {
            "freeze_patterns": ["encoder"],
            "unfreeze_at": {
                3: ["encoder.epilogue", "encoder.blocks.3-4"],
                6: ["encoder"],
            },
        },
        "layerwise": {"lr_decay": 0.8},
    }
    return [
        Run(f"freezing_es_{variant}_s{seed}", "CommonVoice", "es_xfer.yaml", "es",
            "freezing", variant, base="base_small",
            overrides={**tune, **over, "seed": seed}, language="es", seed=seed)
        for variant, over in plans.items()
    ]  # fmt: skip


def _base_run(size: str, overrides: dict) -> Run:
    """An English base (``base_small`` or ``base_large``) on the ``en`` corpus."""
    return Run(f"base_{size}", "EnglishBase", f"quartznet_{size}.yaml", "en",
               "base", size, overrides=overrides, language="en")  # fmt: skip


def _mandarin_base(data: str) -> Run:
    """``base_zh``: the Mandarin base (quartznet_tiny) on the corpus ``data``."""
    return Run("base_zh", "MandarinBase", "quartznet_small.yaml", data, "base",
               "tiny", overrides=MANDARIN_BASE, language="zh-CN")  # fmt: skip


def _target_corpora(utterances: int, seeds: dict, zh_hk: str) -> list[Corpus]:
    """The language transfers' targets: es, de, ru, then zh-HK (300-word text).

    ``utterances`` each; ``seeds`` maps each locale to its seed; ``zh_hk`` names
    the Cantonese corpus.
    """
    corpora = [
        Corpus(lang, lang, utterances, seed=seeds[lang]) for lang in ("es", "de", "ru")
    ]
    cantonese = Corpus(zh_hk, "zh-HK", utterances, seed=seeds["zh-HK"], vocab_size=300)
    return [*corpora, cantonese]


def _language_runs(tune: dict, zh_hk: str, seed: int = 1) -> list[Run]:
    """es, de, ru from ``base_small`` and zh-HK (corpus ``zh_hk``) from ``base_zh``.

    Each from scratch, transferred without a head remap, and transferred.
    """
    three = ("scratch", "xfer_none", "xfer")
    runs = []
    for lang in ("es", "de", "ru"):
        runs += _transfer_runs(
            "language", lang, "CommonVoice", f"{lang}_xfer.yaml",
            f"{lang}_scratch.yaml", lang, "base_small", tune, {}, seed,
            variants=three,
        )  # fmt: skip
    runs += _transfer_runs(
        "language", "zh-HK", "Cantonese", "xfer.yaml", "scratch.yaml", zh_hk,
        "base_zh", tune, MANDARIN_TINY, seed, variants=three,
    )  # fmt: skip
    return runs


def demo_profile() -> Profile:
    """Every claim of the paper once, within 30 minutes on 2 CPU cores."""
    small = {"encoder_preset": "quartznet_tiny"}  # scratch = the small base's arch
    base = {"number_of_epochs": 12}
    corpora = [
        Corpus("en", "en", 1500, seed=1, accents=BASE_ACCENTS),
        Corpus("es", "es", 500, seed=2),
        Corpus("en_accents", "en", 400, seed=3, accents=HELD_OUT_ACCENTS),
        Corpus("en_medical", "en", 400, seed=4, domain="medical"),
    ]
    runs = _demo_runs(
        {**base, **small},
        {**base, "encoder_preset": "quartznet_small"},
        {"number_of_epochs": 15},
        small,
    )
    return Profile(
        "demo",
        corpora,
        runs,
        description=(
            "Demo profile: scaled-down presets (small base = quartznet_tiny, large "
            "base = quartznet_small), one language (es), one accent set, one domain."
        ),
        forgetting=[("language_es_xfer_s1", "base_small")],
    )


def full_profile(seeds: int = 1) -> Profile:
    """Everything in the issue: 4 languages, accents, 2 domains, sizes, freezing."""
    base_over = {"number_of_epochs": 15}
    tune = {"number_of_epochs": 20}
    small: dict = {}  # the YAML defaults: small base = quartznet_small
    corpora = [
        Corpus("en", "en", 3000, seed=1, accents=BASE_ACCENTS),
        # 300-word Han text: a character inventory this size learns (see the
        # languages profile); larger inventories need far more audio.
        Corpus("zh-CN", "zh-CN", 3000, seed=11, vocab_size=300),
        *_target_corpora(1500, {"es": 2, "de": 5, "ru": 6, "zh-HK": 7}, "zh-HK"),
        Corpus("en_accents", "en", 800, seed=3, accents=HELD_OUT_ACCENTS),
        Corpus("en_medical", "en", 800, seed=4, domain="medical"),
        Corpus("en_atc", "en", 800, seed=8, domain="atc"),
    ]
    # Fine-tuning sizes for the larger-vs-smaller base comparison (~10/30/62 min).
    sizes = {"10min": 190, "30min": 570}
    corpora += [
        Corpus(f"es_{label}", "es", subset_of="es", train_utterances=n)
        for label, n in sizes.items()
    ]
    runs = [
        _base_run("small", base_over),
        _base_run("large", base_over),
        _mandarin_base("zh-CN"),
    ]
    for seed in range(1, seeds + 1):
        runs += _language_runs(tune, "zh-HK", seed)
        runs += _transfer_runs(
            "accent", "en", "AccentedEnglish", "xfer.yaml", "scratch.yaml",
            "en_accents", "base_small", tune, small, seed,
        )  # fmt: skip
        for domain in ("medical", "atc"):
            runs += _transfer_runs(
                "domain", "en", "Domain", "xfer.yaml", "scratch.yaml",
                f"en_{domain}", "base_small", tune, small, seed,
                prefix=f"domain_{domain}",
            )  # fmt: skip
        for label in [*sizes, "all"]:
            data = "es" if label == "all" else f"es_{label}"
            # At full size the small-base transfer and scratch are the language
            # runs (the report reads them there): only the large base runs again.
            starts = [("xfer", "small"), ("xfer", "large"), ("scratch", None)]
            for variant, base in starts[1:2] if label == "all" else starts:
                prefix = f"size_es_{base}_{label}" if base else f"size_es_{label}"
                runs += _transfer_runs(
                    "size", "es", "CommonVoice", "es_xfer.yaml", "es_scratch.yaml",
                    data, f"base_{base or 'small'}", tune, small, seed,
                    variants=(variant,), size=label, prefix=prefix,
                )  # fmt: skip
        runs += _freezing_runs(tune, seed)
    return Profile(
        "full",
        corpora,
        runs,
        description="Full profile: YAML-default presets, every table of the study.",
        forgetting=[
            ("language_es_xfer_s1", "base_small"),
            ("freezing_es_frozen_bn_s1", "base_small"),
        ],
    )


def tiny_profile() -> Profile:
    """A few utterances and two epochs: exercises the whole pipeline in tests."""
    small = {"encoder_preset": "quartznet_tiny"}
    tune = {"number_of_epochs": 2, "batch_size": 4}
    corpora = [
        Corpus("en", "en", 16, seed=1, accents="us,rp"),
        Corpus("es", "es", 16, seed=2),
        Corpus("en_accents", "en", 12, seed=3, accents=HELD_OUT_ACCENTS),
        Corpus("en_medical", "en", 12, seed=4, domain="medical"),
    ]
    runs = _demo_runs(
        {**tune, **small}, {**tune, "encoder_preset": "quartznet_small"}, tune, small
    )
    return Profile(
        "tiny",
        corpora,
        runs,
        description="Tiny profile (tests): a few utterances, two epochs.",
        forgetting=[("language_es_xfer_s1", "base_small")],
    )


def languages_profile() -> Profile:
    """The recipes' README table: de, es, ru from English, zh-HK from Mandarin.

    Small corpora (300 utterances per target language, 1000 per base), the
    YAML-default small presets, 15 fine-tuning epochs: about an hour on 2 cores.
    """
    base_over = {"number_of_epochs": 12}
    tune = {"number_of_epochs": 15}
    corpora = [
        Corpus("en", "en", 1000, seed=11, accents=BASE_ACCENTS),
        # Han text: with 1,000 utterances the Mandarin base stayed at blank-only
        # output (1,093 characters from 3,000 words, and 296 from 300 words at lr
        # 0.005); 3,000 utterances of 300-word text train in a few epochs.
        Corpus("zh-CN-3000x300w", "zh-CN", 3000, seed=21, vocab_size=300),
        *_target_corpora(
            300, {"es": 12, "de": 14, "ru": 15, "zh-HK": 16}, "zh-HK-300w"
        ),
    ]
    runs = [_base_run("small", base_over), _mandarin_base("zh-CN-3000x300w")]
    runs += _language_runs(tune, "zh-HK-300w")
    runs += _freezing_runs(tune)
    return Profile(
        "languages",
        corpora,
        runs,
        description=(
            "Languages profile: the recipe READMEs' table (YAML-default small "
            "presets, 300 utterances per target language)."
        ),
        forgetting=[
            ("language_es_xfer_s1", "base_small"),
            ("freezing_es_frozen_bn_s1", "base_small"),
            ("freezing_es_staged_s1", "base_small"),
        ],
    )


def gpu_profile() -> Profile:
    """The paper's shape at the paper's model size, on one data-centre GPU.

    quartznet15x5 bases (18.9M parameters): English on 12,000 realistic clips
    (9,600 for training, ~10.7 h at the ~4.0 s a realistic English clip lasts)
    and Mandarin (300-word Han text); de, es, ru and zh-HK transferred three ways
    (scratch, head re-initialised, head remapped), two held-out accents and two
    domains against scratch; the targets have ~1.3 h each, the accents and domains
    ~0.7 h, all in the realistic conditions. Every run adds
    ``--device=cuda --precision=bf16 --tensorboard=True``, batch 32 and 4
    loader workers with pinned memory (clips decode at ~2,000x realtime per CPU
    core, so 4 workers keep up with the GPU).

    Sized, not yet measured, for ``xlt study --profile gpu --jobs 4`` within 10
    minutes of training on one H200-class GPU (estimate: quartznet15x5 at some
    5,000x realtime in bf16, i.e. ~10 s per English epoch), after ~2 minutes of
    synthesis on 16 cores (``benchmarks/gpu_check.sh`` synthesizes with every
    core first). No base-size comparison (a larger base than the paper's would not
    fit the time) and no forgetting check (the report runs it on the CPU, minutes
    for quartznet15x5 on the 1,200 English test clips).
    """
    gpu = {
        "device": "cuda",
        "precision": "bf16",
        "tensorboard": True,
        "batch_size": 32,
        "num_workers": 4,
        "pin_memory": True,
    }
    big = {"encoder_preset": "quartznet15x5"}  # the bases' and scratch runs' model
    base = {**gpu, **big, "number_of_epochs": 10}
    tune = {**gpu, "number_of_epochs": 12}
    real = "realistic"
    corpora = [
        Corpus("en", "en", 12000, seed=1, accents=BASE_ACCENTS, conditions=real),
        Corpus("zh-CN", "zh-CN", 4000, seed=11, vocab_size=300, conditions=real),
        Corpus("es", "es", 1200, seed=2, conditions=real),
        Corpus("de", "de", 1200, seed=5, conditions=real),
        Corpus("ru", "ru", 1200, seed=6, conditions=real),
        Corpus("zh-HK", "zh-HK", 1200, seed=7, vocab_size=300, conditions=real),
        Corpus("en_accents", "en", 800, seed=3, accents=HELD_OUT_ACCENTS,
               conditions=real),
        Corpus("en_medical", "en", 800, seed=4, domain="medical", conditions=real),
        Corpus("en_atc", "en", 800, seed=8, domain="atc", conditions=real),
    ]  # fmt: skip
    three = ("scratch", "xfer_none", "xfer")
    runs = [
        _base_run("large", base),
        Run("base_zh", "MandarinBase", "quartznet_small.yaml", "zh-CN", "base",
            "15x5", overrides={**base, "number_of_epochs": 12}, language="zh-CN"),
    ]  # fmt: skip
    for lang in ("es", "de", "ru"):
        runs += _transfer_runs(
            "language", lang, "CommonVoice", f"{lang}_xfer.yaml",
            f"{lang}_scratch.yaml", lang, "base_large", tune, big,
            variants=three,
        )  # fmt: skip
    runs += _transfer_runs(
        "language", "zh-HK", "Cantonese", "xfer.yaml", "scratch.yaml", "zh-HK",
        "base_zh", tune, big, variants=three,
    )  # fmt: skip
    runs += _transfer_runs(
        "accent", "en", "AccentedEnglish", "xfer.yaml", "scratch.yaml",
        "en_accents", "base_large", tune, big,
    )  # fmt: skip
    for domain in ("medical", "atc"):
        runs += _transfer_runs(
            "domain", "en", "Domain", "xfer.yaml", "scratch.yaml", f"en_{domain}",
            "base_large", tune, big, prefix=f"domain_{domain}",
        )  # fmt: skip
    return Profile(
        "gpu",
        corpora,
        runs,
        description=(
            "GPU profile: quartznet15x5 bases (18.9M parameters) on ~10.7 h of "
            "realistic synthetic English and on Mandarin, four languages, two "
            "accents, two domains; bf16 on one CUDA GPU."
        ),
    )


# ------------------------------------------ the plugin's own claims (issues 13, 14)
REALISTIC = "realistic"
#: The English base of the remap and continual profiles, and so the encoder of
#: every transfer from it. quartznet_tiny (0.10M parameters) keeps
#: ``remap_screen`` within ~1.5 h on 2 CPU cores; quartznet_mini (0.33M) costs
#: about twice as much per run (NOTES.md step times).
XLT_BASE_PRESET = "quartznet_tiny"
#: The English base's run name (remap, remap_screen and continual share it: run
#: into one ``--out`` and it trains once).
EN_BASE = "base_en"
#: Seconds per clip of the realistic corpora, to size subsets by minutes and to
#: estimate run times: en 4.03 and es 4.32 measured (1,500 and 500 clips); the
#: others are the clean corpora's (docs/study-full) times 1.39, the ratio
#: measured on en and es (clean clips: these divided by 1.39).
CLIP_SECONDS = {
    "en": 4.03,
    "es": 4.32,
    "de": 4.3,
    "ru": 3.9,
    "zh-HK": 3.2,
    "zh-CN": 3.6,
    "medical": 6.6,
    "atc": 8.6,
}
#: Corpus seeds (those of the full profile, so a corpus reads the same sentences).
CORPUS_SEEDS = {
    "en": 1, "zh-CN": 11, "es": 2, "de": 5, "ru": 6, "zh-HK": 7,
    "en_accents": 3, "en_medical": 4, "en_atc": 8,
}  # fmt: skip

# Issue 13. The starts every remap comparison has, and the remedies the screening
# tries one at a time on top of the recipes' remap (keys of the *_xfer YAMLs).
REMAP_STARTS = {
    "xfer_none": {"remap_strategy": "none"},  # re-initialised head (NeMo/HF)
    "xfer": {},  # the recipe's remap as it is (exact,fold; Cantonese exact,opencc)
}
REMAP_REMEDIES = {
    "calibrate": {"head_calibration": "rescale"},
    "blend": {"head_blend_alpha": 0.5},
    "head_only": {"head_only_epochs": 2},
    "head_lr": {"head_lr_multiplier": 3.0, "head_warmup_ratio": 0.0},
    "no_blank": {"copy_blank": False},
}
#: The remedy the ``remap`` profile runs beside the two starts: (variant name,
#: overrides). NOT MEASURED YET: the screening's best guess. The diagnostics
#: (benchmarks/remap_diagnostics.py) found copied rows ~2.8x the norm of fresh
#: ones, pushing 2-3x more gradient into the encoder in the first updates;
#: rescaling removes exactly that and keeps the copied rows' argmax. Set it from
#: ``remap_screen``'s report ("Remap remedies": the overall winner), keeping the
#: screening's name when it is one of REMAP_REMEDIES so its 10-minute runs are
#: reused.
REMAP_CHOSEN: tuple[str, dict] = ("calibrate", REMAP_REMEDIES["calibrate"])
#: Which recipe and base each remap language uses.
REMAP_TARGETS = {
    "de": ("CommonVoice", "de_xfer.yaml", EN_BASE),
    "es": ("CommonVoice", "es_xfer.yaml", EN_BASE),
    "ru": ("CommonVoice", "ru_xfer.yaml", EN_BASE),
    "zh-HK": ("Cantonese", "xfer.yaml", "base_zh"),
}

# Issue 14. Every method fine-tunes the English base on the task's corpus through
# the recipe's own keys; what the source corpus does in each is said in
# continual_profile's docstring.
CONTINUAL_TASKS = {  # name -> (recipe, corpus, Corpus fields)
    "accents": ("AccentedEnglish", "en_accents", {"accents": HELD_OUT_ACCENTS}),
    "medical": ("Domain", "en_medical", {"domain": "medical"}),
    "atc": ("Domain", "en_atc", {"domain": "atc"}),
}
REPLAY_RATIOS = (0.25, 0.5)  # 2 and 4 source utterances in each batch of 8
ADAPTER_DIM = 16  # quartznet_tiny's blocks have 64-96 channels


def continual_methods(blocks: int = 3) -> dict[str, dict]:
    """The continual-learning methods: variant name -> the xfer YAML's overrides.

    Arguments
    ---------
    blocks : int
        B-blocks of the base's encoder (the staged plan unfreezes the top one,
        with the epilogue, first).

    Returns
    -------
    dict

    Example
    -------
    >>> methods = continual_methods(blocks=5)
    >>> list(methods)
    ['full', 'frozen_bn', 'staged', 'replay25', 'replay50', 'average', 'adapters']
    >>> methods["staged"]["unfreeze_at"][3]
    ['encoder.epilogue', 'encoder.blocks.4']
    """
    methods = {
        "full": {},
        "frozen_bn": {"freeze_patterns": ["encoder"], "keep_batchnorm_trainable": True},
        "staged": {
            "freeze_patterns": ["encoder"],
            "unfreeze_at": {
                3: ["encoder.epilogue", f"encoder.blocks.{blocks - 1}"],
                6: ["encoder"],
            },
        },
    }
    for ratio in REPLAY_RATIOS:
        methods[f"replay{round(100 * ratio)}"] = {"replay_ratio": ratio}
    # The alpha the recipe chooses on the union of the target and English dev sets.
    methods["average"] = {"average_alpha": "auto"}
    methods["adapters"] = {"adapter_dim": ADAPTER_DIM}
    return methods


#: A run override that names a corpus of the profile: the command line gets the
#: corpus folder (see :func:`corpus_ref`).
CORPUS_REF = "corpus:"


def corpus_ref(name: str) -> str:
    """An override value that :func:`command` replaces by corpus ``name``'s folder.

    Example
    -------
    >>> corpus_ref("en")
    'corpus:en'
    """
    return f"{CORPUS_REF}{name}"


@dataclass(frozen=True)
class Scale:
    """Corpus sizes and epochs of the remap and continual profiles.

    ``subsets`` (size label -> training utterances) replaces sizing by minutes
    (a label ``10min``: 10 minutes of the locale's clips, :data:`CLIP_SECONDS`).
    """

    base_utterances: int = 2400  # English base: 1,920 training clips, ~129 min
    base_epochs: int = 25
    zh_utterances: int = 3000  # Mandarin base, 300-word Han text
    zh_epochs: int = 20
    target_utterances: int = 1200  # remap targets: 960 training clips (51-69 min)
    epochs: dict = field(
        # Fewer epochs for more data: 10 min ~450 steps, 30 min ~1,000, all ~1,800.
        default_factory=lambda: {"10min": 25, "30min": 20, "all": 15}
    )
    task_utterances: int = 600  # continual tasks: 480 training clips (32-69 min)
    task_epochs: int = 15
    subsets: dict | None = None
    extra: dict = field(default_factory=dict)  # overrides of every run

    def subset(self, locale: str, label: str) -> int | None:
        """Training utterances of size ``label`` (None: all of them).

        Example
        -------
        >>> Scale().subset("es", "10min"), Scale().subset("es", "all")
        (139, None)
        """
        if label == "all":
            return None
        if self.subsets:
            return self.subsets[label]
        minutes = float(label.removesuffix("min"))
        return round(minutes * 60 / CLIP_SECONDS[locale])


#: A few clips and two epochs: the remap_tiny and continual_tiny test profiles.
TINY_SCALE = Scale(
    base_utterances=16,
    base_epochs=2,
    zh_utterances=16,
    zh_epochs=2,
    target_utterances=16,
    epochs={"6utt": 2, "all": 2},
    task_utterances=12,
    task_epochs=2,
    subsets={"6utt": 6},
    extra={"batch_size": 4},
)


def _english(scale: Scale) -> tuple[Corpus, Run]:
    """The realistic English corpus and the base trained on it."""
    corpus = Corpus(
        "en", "en", scale.base_utterances, seed=CORPUS_SEEDS["en"],
        accents=BASE_ACCENTS, conditions=REALISTIC,
    )  # fmt: skip
    over = {"encoder_preset": XLT_BASE_PRESET, "number_of_epochs": scale.base_epochs}
    base = Run(EN_BASE, "EnglishBase", "quartznet_small.yaml", "en", "base",
               XLT_BASE_PRESET, overrides={**over, **scale.extra},
               language="en")  # fmt: skip
    return corpus, base


def _remap_profile(
    name: str,
    languages: tuple,
    sizes: tuple,
    variants: dict,
    seeds: int,
    scale: Scale,
    description: str,
) -> Profile:
    """Transfers to ``languages`` at ``sizes`` with each start in ``variants``."""
    en, base = _english(scale)
    corpora, runs = [en], [base]
    if "zh-HK" in languages:
        corpora.append(
            Corpus("zh-CN", "zh-CN", scale.zh_utterances, seed=CORPUS_SEEDS["zh-CN"],
                   vocab_size=300, conditions=REALISTIC)
        )  # fmt: skip
        over = {**MANDARIN_TINY, "number_of_epochs": scale.zh_epochs, **scale.extra}
        runs.append(Run("base_zh", "MandarinBase", "quartznet_small.yaml", "zh-CN",
                        "base", "tiny", overrides=over, language="zh-CN"))  # fmt: skip
    for lang in languages:
        vocab = 300 if lang == "zh-HK" else 3000  # the languages profile's Han text
        corpora.append(
            Corpus(lang, lang, scale.target_utterances, seed=CORPUS_SEEDS[lang],
                   vocab_size=vocab, conditions=REALISTIC)
        )  # fmt: skip
        corpora += [
            Corpus(f"{lang}_{label}", lang, subset_of=lang, vocab_size=vocab,
                   conditions=REALISTIC, train_utterances=scale.subset(lang, label))
            for label in sizes
            if label != "all"
        ]  # fmt: skip
    for seed in range(1, seeds + 1):  # seed 1 of everything first
        for lang in languages:
            recipe, hparams, base_name = REMAP_TARGETS[lang]
            for label in sizes:
                data = lang if label == "all" else f"{lang}_{label}"
                for variant, over in variants.items():
                    overrides = {"number_of_epochs": scale.epochs[label],
                                 **scale.extra, **over, "seed": seed}  # fmt: skip
                    runs.append(
                        Run(f"remap_{lang}_{label}_{variant}_s{seed}", recipe,
                            hparams, data, "remap", variant, base=base_name,
                            overrides=overrides, language=lang, size=label,
                            seed=seed)
                    )  # fmt: skip
    return Profile(name, corpora, runs, description=description)


def remap_screen_profile(seeds: int = 3) -> Profile:
    """Issue 13, stage 1: which head remedy, on Spanish and German at 10 minutes.

    The re-initialised head, the recipes' remap, and each remedy of
    :data:`REMAP_REMEDIES` alone, from an English ``quartznet_tiny`` base on the
    realistic corpora; ``seeds`` seeds each. 43 runs with 3 seeds (about 1.1 h
    on 2 CPU cores, :func:`estimate`).
    """
    return _remap_profile(
        "remap_screen",
        ("es", "de"),
        ("10min",),
        {**REMAP_STARTS, **REMAP_REMEDIES},
        seeds,
        Scale(),
        "Remap screening (issue 13): the re-initialised head, the remapped head "
        "and each head remedy alone; es and de at 10 minutes, realistic corpora, "
        f"{XLT_BASE_PRESET} English base.",
    )


def remap_profile(seeds: int = 3) -> Profile:
    """Issue 13, stage 2: the chosen remedy against both starts, everywhere.

    de, es, ru (English base) and zh-HK (Mandarin base) at 10 minutes, 30
    minutes and all 960 training clips (the same dev and test sets), the
    re-initialised head, the recipes' remap and :data:`REMAP_CHOSEN`;
    ``seeds`` seeds each. The 10-minute es and de runs are those of
    ``remap_screen`` (same names and definitions: one ``--out`` reuses them;
    keep the screening's REPORT.md first, the study rewrites it).
    110 runs with 3 seeds (about 3.9 h on 2 CPU cores, :func:`estimate`).
    """
    chosen, overrides = REMAP_CHOSEN
    return _remap_profile(
        "remap",
        ("de", "es", "ru", "zh-HK"),
        ("10min", "30min", "all"),
        {**REMAP_STARTS, chosen: overrides},
        seeds,
        Scale(),
        "Remap (issue 13): the re-initialised head, the remapped head and the "
        f"remedy '{chosen}'; de, es, ru from English and zh-HK from Mandarin at "
        "10 min, 30 min and all of the training data, realistic corpora.",
    )


def remap_tiny_profile(seeds: int = 2) -> Profile:
    """``remap`` at test size: es, 6 clips and all 12, two seeds, two epochs."""
    chosen, overrides = REMAP_CHOSEN
    return _remap_profile(
        "remap_tiny",
        ("es",),
        ("6utt", "all"),
        {**REMAP_STARTS, chosen: overrides},
        seeds,
        TINY_SCALE,
        "Remap tiny profile (tests): a few clips, two epochs.",
    )


def _continual_profile(
    name: str, tasks: tuple, seeds: int, scale: Scale, description: str
) -> Profile:
    """Each method of :func:`continual_methods` and scratch on each task."""
    from xlt_plugin.lobes.quartznet import QUARTZNET_PRESETS

    preset = QUARTZNET_PRESETS[XLT_BASE_PRESET]
    methods = continual_methods(len(preset["channels"]) * preset["block_repeats"])
    en, base = _english(scale)
    corpora, runs = [en], [base]
    for task in tasks:
        _, data, fields = CONTINUAL_TASKS[task]
        corpora.append(
            Corpus(
                data,
                "en",
                scale.task_utterances,
                seed=CORPUS_SEEDS[data],
                conditions=REALISTIC,
                **fields,
            )  # fmt: skip
        )
    for seed in range(1, seeds + 1):
        for task in tasks:
            recipe, data, _ = CONTINUAL_TASKS[task]
            common = {"number_of_epochs": scale.task_epochs, **scale.extra}
            if recipe == "Domain":
                common["lm_order"] = 0  # the table is greedy; no domain LM
            scratch = {"encoder_preset": XLT_BASE_PRESET, **common, "seed": seed}
            runs.append(
                Run(f"continual_{task}_scratch_s{seed}", recipe, "scratch.yaml",
                    data, "continual", "scratch", overrides=scratch, language="en",
                    seed=seed)
            )  # fmt: skip
            for method, over in methods.items():
                overrides = {**common, "replay_data_folder": corpus_ref("en"),
                             **over, "seed": seed}  # fmt: skip
                runs.append(
                    Run(f"continual_{task}_{method}_s{seed}", recipe, "xfer.yaml",
                        data, "continual", method, base=EN_BASE,
                        overrides=overrides, language="en", seed=seed)
                )  # fmt: skip
    return Profile(name, corpora, runs, description=description)


def continual_profile(seeds: int = 1) -> Profile:
    """Issue 14: adapt the English base to accents and domains, keep its English.

    For the held-out accents and the medical and air-traffic-control domains
    (realistic corpora), from one English base: full fine-tuning, frozen
    encoder + BatchNorm, staged unfreezing, rehearsal at two ratios, weight
    averaging at the alpha the recipe chooses, adapters, and scratch; the base as
    it is comes from the zero-shot test lines. Every fine-tuning run names the
    base's English corpus as ``replay_data_folder``: rehearsal draws from it,
    averaging chooses alpha on its dev set, and in every run its letters join
    the tokens, so each head has the base's rows and the English test set is
    scored by the whole adapted model (with ``replay_ratio`` 0, the default,
    training is that of the plain recipe). The report scores every run on the
    base's English test set. 24 runs per seed and the base (about 1.4 h with one
    seed, 3.5 h with three on 2 CPU cores, :func:`estimate`).
    """
    return _continual_profile(
        "continual",
        tuple(CONTINUAL_TASKS),
        seeds,
        Scale(),
        "Continuous learning (issue 14): accents, medical and atc from one "
        f"{XLT_BASE_PRESET} English base; each method's target and English WER.",
    )


def continual_tiny_profile(seeds: int = 1) -> Profile:
    """``continual`` at test size: accents and medical, a few clips, two epochs."""
    return _continual_profile(
        "continual_tiny",
        ("accents", "medical"),
        seeds,
        TINY_SCALE,
        "Continual tiny profile (tests): a few clips, two epochs.",
    )


# ------------------------------------------------------------------- estimates
#: Training seconds per epoch per minute of training audio, one thread, no
#: augmentation, two runs side by side: quartznet_tiny ~25 s per epoch for 80
#: minutes; quartznet_small 2.3x that (the full study's base_small: 84 s per
#: epoch for 116 minutes); quartznet_mini in between (not measured).
SECONDS_PER_AUDIO_MINUTE = {
    "quartznet_tiny": 25 / 80,
    "quartznet_mini": 1.7 * 25 / 80,
    "quartznet_small": 2.3 * 25 / 80,
}
#: Start, data preparation, zero-shot and final tests and export of one run.
RUN_OVERHEAD_SECONDS = 30
#: Realtime factor of ``xlt synth`` with 2 jobs (README: clean 125x, realistic 88x).
SYNTH_REALTIME = {"clean": 125.0, "realistic": 88.0}


def _preset(run: Run, runs: dict) -> str:
    """The encoder preset a run trains: its own, or its base's (a transfer)."""
    while run is not None:
        if "encoder_preset" in run.overrides:
            return run.overrides["encoder_preset"]
        run = runs.get(run.base) if run.base else None
    return "quartznet_small"  # the recipes' YAML default


def _clip_seconds(corpus: Corpus) -> float:
    seconds = CLIP_SECONDS.get(corpus.domain or corpus.locale, 4.0)
    return seconds if corpus.conditions == REALISTIC else seconds / 1.39


def _train_dev_minutes(corpus: Corpus, corpora: dict) -> tuple[float, float]:
    """Training and dev minutes of a corpus (a subset: its parent's dev)."""
    from xlt_plugin.synth.corpus import split_sizes

    parent = corpora[corpus.subset_of] if corpus.subset_of else corpus
    train, dev, _ = split_sizes(parent.utterances)
    train = corpus.train_utterances or train
    seconds = _clip_seconds(parent)
    return train * seconds / 60, dev * seconds / 60


def run_seconds(run: Run, profile: Profile) -> float | None:
    """Estimated seconds of one run on one CPU thread.

    Epochs x (training audio, grown by rehearsal, plus a forward pass over the
    dev set at a third of the cost) x the preset's speed, plus a fixed overhead.

    Arguments
    ---------
    run : Run
        A run of ``profile``.
    profile : Profile
        Its corpora give the minutes, its runs the base's encoder preset.

    Returns
    -------
    float or None
        None for a run on another device, or a preset without a speed.

    Example
    -------
    >>> profile = remap_screen_profile()
    >>> round(run_seconds(profile.runs[1], profile))  # 10 min of es, 25 epochs
    131
    """
    if run.overrides.get("device", "cpu") != "cpu":
        return None
    runs = {r.name: r for r in profile.runs}
    corpora = {c.name: c for c in profile.corpora}
    rate = SECONDS_PER_AUDIO_MINUTE.get(_preset(run, runs))
    if rate is None:
        return None
    train, dev = _train_dev_minutes(corpora[run.data], corpora)
    train /= 1 - float(run.overrides.get("replay_ratio", 0.0))
    epochs = int(run.overrides.get("number_of_epochs", 15))
    return epochs * rate * (train + dev / 3) + RUN_OVERHEAD_SECONDS


def estimate(profile: Profile, jobs: int = 2) -> dict:
    """Runs, and the estimated hours of synthesis and training on a 2-core CPU.

    Training is scheduled as :func:`execute` does (a run waits for its base,
    ``jobs`` side by side, in profile order) with :func:`run_seconds` each.

    Arguments
    ---------
    profile : Profile
    jobs : int
        Runs side by side, one thread each.

    Returns
    -------
    dict
        ``runs``, ``bases``, ``synth_hours``, ``train_hours`` and ``hours``
        (None when a run is not a CPU run).

    Example
    -------
    >>> e = estimate(remap_screen_profile())
    >>> e["runs"], e["bases"], e["hours"] < 1.5
    (43, 1, True)
    """
    synth = sum(
        c.utterances * _clip_seconds(c) / SYNTH_REALTIME.get(c.conditions, 88.0)
        for c in profile.corpora
        if not c.subset_of
    )
    result = {
        "runs": len(profile.runs),
        "bases": sum(1 for r in profile.runs if r.task == "base"),
        "synth_hours": synth / 3600,
        "train_hours": None,
        "hours": None,
    }
    seconds = {r.name: run_seconds(r, profile) for r in profile.runs}
    if None in seconds.values():
        return result
    done: dict[str, float] = {}  # run -> finish time
    slots = [0.0] * max(1, jobs)
    pending = list(profile.runs)
    while pending:
        # The next run in profile order whose base is done, on the first free slot.
        slot = min(range(len(slots)), key=slots.__getitem__)
        now = slots[slot]
        ready = [r for r in pending if not r.base or done.get(r.base, now + 1) <= now]
        if not ready:  # wait for the next base to finish
            waits = [done[r.base] for r in pending if r.base in done]
            if not waits:  # a base that no run makes: nothing more starts
                break
            slots[slot] = min(waits)
            continue
        done[ready[0].name] = slots[slot] = now + seconds[ready[0].name]
        pending.remove(ready[0])
    result["train_hours"] = max(done.values(), default=0.0) / 3600
    result["hours"] = result["synth_hours"] + result["train_hours"]
    return result


def describe(profile: Profile, jobs: int = 2) -> str:
    """One line: what a profile runs and about how long it takes.

    Example
    -------
    >>> describe(remap_screen_profile())  # doctest: +ELLIPSIS
    'Profile remap_screen: 43 runs (1 bases), 3 corpora to synthesize; ...'
    """
    e = estimate(profile, jobs)
    made = sum(1 for c in profile.corpora if not c.subset_of)
    line = (
        f"Profile {profile.name}: {e['runs']} runs ({e['bases']} bases), {made} "
        "corpora to synthesize; "
    )
    if e["hours"] is None:
        return line + "no CPU estimate (a run is not a CPU run)."
    return line + (
        f"about {e['hours']:.1f} h on {jobs} one-thread jobs of an idle 2-core CPU "
        f"(synthesis {e['synth_hours']:.1f} h, training {e['train_hours']:.1f} h; "
        "an estimate, not a measurement)."
    )


# ------------------------------------------------------------------- bases
#: The English base ladder (issue 12): presets of growing size, each trained on
#: the same realistic English corpus with the same recipe; the larger must be
#: the better English model (test CER) beyond seed noise.
BASE_LADDER = ("quartznet_tiny", "quartznet_mini", "quartznet_small")
#: Epochs, lr and augmentation of every ladder run. 20 epochs at lr 0.005 on
#: 80 min of realistic English left quartznet_small in CTC's blank plateau for
#: most of its schedule (recipes/EnglishBase/README.md): more steps, and the lr
#: the probe measured better.
BASE_LADDER_TRAINING = {"number_of_epochs": 40, "lr": 0.005, "augment": False}


def bases_profile(seeds: int = 2, utterances: int = 1500) -> Profile:
    """English bases of growing size on one realistic corpus, with seeds.

    Arguments
    ---------
    seeds : int
        Seeds per size (the claim needs two or more).
    utterances : int
        Clips of the English corpus (80/10/10 train/dev/test).

    Returns
    -------
    Profile

    Example
    -------
    >>> profile = bases_profile(seeds=2)
    >>> [run.name for run in profile.runs][:2]
    ['bases_quartznet_tiny_s1', 'bases_quartznet_mini_s1']
    >>> len(profile.runs), profile.corpora[0].conditions
    (6, 'realistic')
    """
    corpus = Corpus(
        "en", "en", utterances, seed=CORPUS_SEEDS["en"], accents=BASE_ACCENTS,
        conditions=REALISTIC,
    )  # fmt: skip
    runs = [
        Run(f"bases_{preset}_s{seed}", "EnglishBase", "quartznet_small.yaml", "en",
            "bases", preset, language="en", size=preset, seed=seed,
            overrides={**BASE_LADDER_TRAINING, "encoder_preset": preset,
                       "seed": seed})
        for seed in range(1, seeds + 1)
        for preset in BASE_LADDER
    ]  # fmt: skip
    return Profile(
        "bases",
        [corpus],
        runs,
        description=(
            f"Bases profile (issue 12): {', '.join(BASE_LADDER)} on {utterances} "
            "realistic English clips, "
            + ", ".join(f"{k} {v}" for k, v in BASE_LADDER_TRAINING.items())
            + f", {seeds} seeds."
        ),
    )


PROFILES = {
    "bases": bases_profile,
    "continual": continual_profile,
    "continual_tiny": continual_tiny_profile,
    "demo": demo_profile,
    "full": full_profile,
    "gpu": gpu_profile,
    "languages": languages_profile,
    "remap": remap_profile,
    "remap_screen": remap_screen_profile,
    "remap_tiny": remap_tiny_profile,
    "tiny": tiny_profile,
}
#: Profiles whose builder takes ``seeds`` (``xlt study --seeds N``); called
#: without it, each uses its own default (remap 3, bases 2, the others 1).
SEEDED = {
    "bases", "continual", "continual_tiny", "full", "remap", "remap_screen",
    "remap_tiny",
}  # fmt: skip


# ----------------------------------------------------------------- definitions
DEFINITION = "study_definition.json"


def definition_mismatch(folder: Path, definition: dict) -> str | None:
    """Why ``folder`` belongs to another definition of its corpus or run.

    A rerun reuses finished folders by name; after a profile changes, that would
    mix results of the old definition into the new report without a word.

    Arguments
    ---------
    folder : Path
        A corpus or run folder of a study.
    definition : dict
        What the profile says now (``asdict`` of a Corpus or Run).

    Returns
    -------
    str or None
        The differences and what to do; None when the same, or when the folder
        keeps no definition (folders of older versions).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_definition(folder, {"name": "es", "utterances": 300})
    >>> definition_mismatch(folder, {"name": "es", "utterances": 300}) is None
    True
    >>> "utterances: 300 -> 500" in definition_mismatch(
    ...     folder, {"name": "es", "utterances": 500})
    True
    """
    path = Path(folder) / DEFINITION
    if not path.exists():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    new = json.loads(json.dumps(definition))  # int keys become strings, as saved
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if not changed:
        return None
    return (
        f"{folder} was made by another definition ({'; '.join(changed)}): delete "
        "it to make it again with the profile's current one"
    )


def write_definition(folder: Path, definition: dict) -> None:
    """Keep the definition a corpus or run folder was made by."""
    path = Path(folder) / DEFINITION
    path.write_text(json.dumps(definition, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------- corpora
def make_corpora(profile: Profile, data_dir: Path, jobs: int = 2) -> dict:
    """Synthesize (or reuse) every corpus of the profile; name -> folder.

    A reused folder made by another definition of its corpus stops the study
    with the differences (see :func:`definition_mismatch`).
    """
    from xlt_plugin.synth.corpus import synthesize_corpus

    folders = {}
    for corpus in profile.corpora:
        out = data_dir / corpus.name
        folders[corpus.name] = out
        if (out / "validated.tsv").exists():
            why = definition_mismatch(out, asdict(corpus))
            if why:
                raise ValueError(f"Corpus {corpus.name}: {why}.")
            continue
        if corpus.subset_of:
            make_subset(folders[corpus.subset_of], out, corpus.train_utterances)
            write_definition(out, asdict(corpus))
            continue
        logger.info("Synthesizing %s (%d utterances)", corpus.name, corpus.utterances)
        synthesize_corpus(
            out,
            corpus.locale,
            corpus.utterances,
            seed=corpus.seed,
            accents=corpus.accents,
            domain=corpus.domain,
            vocab_size=corpus.vocab_size,
            conditions=corpus.conditions,
            jobs=jobs,
            progress=True,
        )
        write_definition(out, asdict(corpus))
    return folders


def make_subset(parent: Path, out: Path, train_utterances: int) -> Path:
    """A Common Voice folder with the first N training rows of ``parent``.

    Dev and test are the parent's; clips are symlinked, not copied.

    Arguments
    ---------
    parent : Path
        A Common Voice-layout folder.
    out : Path
        The subset folder to write.
    train_utterances : int
        Training rows to keep.

    Returns
    -------
    Path
    """
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "clips").symlink_to((parent / "clips").resolve(), target_is_directory=True)
    rows = {}
    for split in ("train", "dev", "test"):
        lines = (parent / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        if split == "train":
            if len(lines) - 1 < train_utterances:
                raise ValueError(
                    f"{parent}/train.tsv has {len(lines) - 1} rows, fewer than the "
                    f"{train_utterances} asked for"
                )
            lines = lines[: train_utterances + 1]
        rows[split] = lines
        (tmp / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    validated = rows["train"] + rows["dev"][1:] + rows["test"][1:]
    (tmp / "validated.tsv").write_text("\n".join(validated) + "\n", encoding="utf-8")
    if (parent / "clip_durations.tsv").exists():  # the same clips, so the same list
        shutil.copy2(parent / "clip_durations.tsv", tmp / "clip_durations.tsv")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


# ------------------------------------------------------------------------ runs
def run_folder(runs_dir: Path, run: Run) -> Path:
    """Output folder of a run."""
    return runs_dir / run.name


def _flow(value) -> str:
    """A value as YAML flow text (what SpeechBrain's overrides parse)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def _override_args(overrides: dict) -> list[str]:
    return [f"--{key}={_flow(value)}" for key, value in overrides.items()]


def _resolve(overrides: dict, folders: dict | None) -> dict:
    """Overrides with each :func:`corpus_ref` value replaced by that folder."""
    resolved = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith(CORPUS_REF):
            name = value.removeprefix(CORPUS_REF)
            if folders is None or name not in folders:
                raise ValueError(f"--{key} names corpus {name!r}, which is not made")
            value = folders[name]
        resolved[key] = value
    return resolved


def command(
    run: Run, data: Path, runs_dir: Path, folders: dict | None = None
) -> list[str]:
    """The exact command line of a run (what a user would type).

    ``folders`` (corpus name -> folder) fills overrides that name a corpus
    (:func:`corpus_ref`, e.g. a rehearsal's ``replay_data_folder``).
    """
    folder = recipes_folder() / run.recipe
    cmd = [
        sys.executable,
        str(folder / "train.py"),
        str(folder / "hparams" / run.hparams),
        f"--data_folder={data}",
        f"--output_folder={run_folder(runs_dir, run)}",
        "--noprogressbar",
    ]
    if run.base:
        cmd.append(f"--pretrained_path={runs_dir / run.base / 'model'}")
    return cmd + _override_args(_resolve(run.overrides, folders))


def execute(
    profile: Profile,
    folders: dict,
    runs_dir: Path,
    jobs: int = 2,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Run every run of the profile over ``jobs`` slots; name -> "ok" | error.

    A run starts when its base has finished; a failed base fails its dependants
    (counted, reported) while independent runs go on. A folder made by another
    definition of its run is neither reused nor overwritten: it is reported.
    """
    from tqdm import tqdm

    runs = {run.name: run for run in profile.runs}
    status: dict[str, str] = {}
    for name, run in runs.items():
        folder = run_folder(runs_dir, run)
        why = definition_mismatch(folder, asdict(run))
        if why:
            status[name] = f"not run: {why}"
        elif is_finished(folder):
            status[name] = "ok"
    pending = [n for n in runs if n not in status]
    active: dict[str, tuple] = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(IMPORT_ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    bar = tqdm(
        total=len(runs),
        initial=len(status),
        desc=f"study {profile.name}",
        unit="run",
        disable=not progress,
    )
    while pending or active:
        for name in list(pending):
            if len(active) >= jobs:
                break
            base = runs[name].base
            if base and status.get(base) not in (None, "ok"):
                status[name] = f"skipped: base {base} failed"
                pending.remove(name)
                bar.update(1)
                continue
            if base and status.get(base) != "ok":
                continue  # wait for the base
            folder = run_folder(runs_dir, runs[name])
            folder.mkdir(parents=True, exist_ok=True)
            write_definition(folder, asdict(runs[name]))
            log = open(folder / "log.txt", "a", encoding="utf-8")
            cmd = command(runs[name], folders[runs[name].data], runs_dir, folders)
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            # The user's working directory: relative --out paths mean what they typed.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            active[name] = (proc, log, time.time())
            pending.remove(name)
        time.sleep(0.5)
        for name, (proc, log, start) in list(active.items()):
            if proc.poll() is None:
                continue
            log.close()
            del active[name]
            seconds = time.time() - start
            folder = run_folder(runs_dir, runs[name])
            if proc.returncode == 0 and is_finished(folder):
                status[name] = "ok"
                bar.write(f"done  {name:32s} {_summary(folder)} ({seconds:.0f} s)")
            else:
                status[name] = f"failed (exit {proc.returncode}, see {folder}/log.txt)"
                bar.write(f"FAIL  {name:32s} {status[name]}")
            bar.update(1)
        if (
            not active
            and pending
            and all(runs[n].base and status.get(runs[n].base) is None for n in pending)
        ):
            raise RuntimeError(f"Study runs wait on bases that never run: {pending}")
    bar.close()
    return status


def _summary(folder: Path) -> str:
    tests = list(final_tests(read_metrics(folder)).values())
    cer = sum(r["CER"] for r in tests) / len(tests)
    return f"test CER {cer:5.1f} (best epoch {tests[-1]['epoch']})"


@dataclass
class StudyResult:
    """What :func:`run_study` did: the report and each run's status.

    Example
    -------
    >>> result = StudyResult("t", Path("REPORT.md"), {"a": "ok", "b": "failed"}, 2.0)
    >>> result.failed, result.summary()
    ({'b': 'failed'}, 'Study t: 1 runs ok, 1 not, 2.0 min. Report: REPORT.md')
    """

    profile: str
    report: Path
    status: dict[str, str]  # run name -> "ok" or why not
    minutes: float

    @property
    def failed(self) -> dict[str, str]:
        """Run name -> why it did not finish."""
        return {k: v for k, v in self.status.items() if v != "ok"}

    def summary(self) -> str:
        """One line: runs ok and not, minutes, where the report is."""
        failed = len(self.failed)
        return (
            f"Study {self.profile}: {len(self.status) - failed} runs ok, "
            f"{failed} not, {self.minutes:.1f} min. Report: {self.report}"
        )


def write_manifest(profile: Profile, folders: dict, out: Path) -> Path:
    """``study.json``: what each run is, for the report."""
    manifest = {
        "profile": profile.name,
        "description": profile.description,
        "corpora": {
            c.name: {**asdict(c), "folder": str(folders[c.name])}
            for c in profile.corpora
        },
        "runs": [asdict(run) for run in profile.runs],
        "forgetting": profile.forgetting,
    }
    path = out / "study.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def run_study(
    profile_name: str = "demo",
    out: str | os.PathLike = "results/study",
    jobs: int = 2,
    threads: int = 1,
    seeds: int | None = None,
    progress: bool = True,
) -> StudyResult:
    """Synthesize, train, transfer, and write the report.

    Runs that fail are reported in the result, not raised: the report is
    written with what finished (``xlt study`` exits with status 1 then).

    Arguments
    ---------
    profile_name : str
        A key of :data:`PROFILES`: ``demo`` (default, < 30 min on 2 cores),
        ``full`` (hours), ``remap_screen``, ``remap``, ``continual``, ``tiny``...
    out : path
        Study folder: ``data/``, ``runs/``, ``REPORT.md``, ``figures/``.
    jobs : int
        Runs side by side.
    threads : int
        Torch threads per run.
    seeds : int, optional
        Seeds per transfer, for the profiles in :data:`SEEDED`; None: the
        profile's own default.
    progress : bool
        Show progress bars.

    Returns
    -------
    StudyResult
        The report, each run's status and the minutes it all took.
    """
    from xlt_plugin.study.report import write_report

    if profile_name not in PROFILES:
        raise ValueError(f"Unknown profile {profile_name!r}; use {sorted(PROFILES)}")
    build = PROFILES[profile_name]
    profile = build(seeds) if seeds and profile_name in SEEDED else build()
    out = Path(out)
    started = time.time()
    if progress:
        print(describe(profile, jobs), flush=True)
    folders = make_corpora(profile, out / "data", jobs=jobs)
    write_manifest(profile, folders, out)
    status = execute(profile, folders, out / "runs", jobs, threads, progress)
    report = write_report(out)
    minutes = (time.time() - started) / 60
    return StudyResult(profile.name, report, status, minutes)
