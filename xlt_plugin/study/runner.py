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


PROFILES = {
    "demo": demo_profile,
    "full": full_profile,
    "gpu": gpu_profile,
    "languages": languages_profile,
    "tiny": tiny_profile,
}


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


def command(run: Run, data: Path, runs_dir: Path) -> list[str]:
    """The exact command line of a run (what a user would type)."""
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
    return cmd + _override_args(run.overrides)


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
            cmd = command(runs[name], folders[runs[name].data], runs_dir)
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
    seeds: int = 1,
    progress: bool = True,
) -> StudyResult:
    """Synthesize, train, transfer, and write the report.

    Runs that fail are reported in the result, not raised: the report is
    written with what finished (``xlt study`` exits with status 1 then).

    Arguments
    ---------
    profile_name : str
        ``demo`` (default, < 30 min on 2 cores), ``full`` (hours) or ``tiny``.
    out : path
        Study folder: ``data/``, ``runs/``, ``REPORT.md``, ``figures/``.
    jobs : int
        Runs side by side.
    threads : int
        Torch threads per run.
    seeds : int
        Seeds per transfer (full profile).
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
    profile = (
        full_profile(seeds) if profile_name == "full" else PROFILES[profile_name]()
    )
    out = Path(out)
    started = time.time()
    folders = make_corpora(profile, out / "data", jobs=jobs)
    write_manifest(profile, folders, out)
    status = execute(profile, folders, out / "runs", jobs, threads, progress)
    report = write_report(out)
    minutes = (time.time() - started) / 60
    return StudyResult(profile.name, report, status, minutes)
