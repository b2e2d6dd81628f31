"""What a study is made of: corpora, runs, and the profile that lists them.

A :class:`Profile` names the :class:`Corpus` folders to synthesize (or subset) and
the :class:`Run` commands to train on them. The profiles themselves are built in
:mod:`xlt_plugin.study.profiles` (the paper's, and the registry of all) and
:mod:`xlt_plugin.study.own_profiles` (the plugin's own claims); the constants here
are those both kinds share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE_ACCENTS = "us,england,rp,nyc,lancashire,west_midlands"
HELD_OUT_ACCENTS = "scotland,caribbean"
# The encoder of the Mandarin bases and of Cantonese from scratch. Han text has
# hundreds of characters; on ~2,400 training utterances quartznet_tiny leaves CTC's
# blank-only plateau by epoch 3 (dev CER 9.7 after 20 epochs), while
# quartznet_small was still at dev CER 95.6 after 6 epochs at lr 0.002.
MANDARIN_TINY = {"encoder_preset": "quartznet_tiny"}


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
    # Another run of the profile that is this same training: reported under both
    # names (and both tasks), trained once. The other fields are labels only.
    same_as: str | None = None


@dataclass
class Profile:
    """What a study runs."""

    name: str
    corpora: list[Corpus]
    runs: list[Run]
    description: str = ""
    forgetting: list[tuple[str, str]] = field(default_factory=list)

    def trained(self) -> list[Run]:
        """The runs that train (those that are not another run's second name).

        Raises ValueError when a ``same_as`` names no trained run of the profile,
        or when a run's base is such a second name.

        Example
        -------
        >>> a = Run("remap_es_all_xfer_s1", "CommonVoice", "es_xfer.yaml", "es",
        ...         "remap", "xfer")
        >>> b = Run("language_es_xfer_s1", "CommonVoice", "es_xfer.yaml", "es",
        ...         "language", "xfer", same_as="remap_es_all_xfer_s1")
        >>> [r.name for r in Profile("p", [], [a, b]).trained()]
        ['remap_es_all_xfer_s1']
        """
        trained = [run for run in self.runs if not run.same_as]
        names = {run.name for run in trained}
        for run in self.runs:
            if run.same_as and run.same_as not in names:
                raise ValueError(
                    f"Run {run.name} is same_as {run.same_as!r}, which is not a "
                    f"trained run of profile {self.name}"
                )
            if run.base and run.base not in names:
                raise ValueError(
                    f"Run {run.name}: its base {run.base!r} is not a trained run of "
                    f"profile {self.name}"
                )
        return trained


#: A run override that names a corpus of the profile: the command line gets the
#: corpus folder (see :func:`corpus_ref`).
CORPUS_REF = "corpus:"


#: A run override that names the study's feature cache: the command line gets
#: ``<study>/features`` (:data:`FEATURES_FOLDER`), one folder every run that
#: names it shares (entries are keyed by clip and feature settings and written
#: atomically), so a corpus's features are computed once per study. A reference,
#: not a path, so a study moved or unpacked elsewhere keeps its definitions.
FEATURES_REF = "study:features"
FEATURES_FOLDER = "features"


def corpus_ref(name: str) -> str:
    """An override value that the command line replaces by corpus ``name``'s folder.

    The run's command (:func:`xlt_plugin.study.runner.command`) does the replacing.

    Example
    -------
    >>> corpus_ref("en")
    'corpus:en'
    """
    return f"{CORPUS_REF}{name}"
