"""Pretrained CTC models on disk: the hub layout, written and read here.

A pretrained model is (features, encoder, CTC head, token inventory). It lives in a
folder laid out like SpeechBrain's ``EncoderASR`` models on the HuggingFace hub, so
``speechbrain.inference.ASR.EncoderASR.from_hparams(source=DIR)`` loads it as is::

    DIR/
      hyperparams.yaml   SpeechBrain's EncoderASR interface (architecture written out)
      config.json        the same architecture as plain data, plus metadata
      model.ckpt         encoder weights (``state_dict``)
      head.ckpt          CTC head weights, one row per token, blank included
      normalizer.ckpt    feature normalisation state
      tokenizer.ckpt     token file (``CTCTextEncoder`` labels; row order = head rows)

``config.json`` lets a transfer recipe build the encoder from ``pretrained_path``
alone, so a user never copies layer sizes by hand. Every base recipe ends by writing
one of these folders to ``<output_folder>/model/``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from speechbrain.dataio.encoder import CTCTextEncoder

from xlt_plugin.tokens import load_tokens

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
ENCODER_FILE = "model.ckpt"
HEAD_FILE = "head.ckpt"
NORMALIZER_FILE = "normalizer.ckpt"
TOKENS_FILE = "tokenizer.ckpt"

#: Keyword arguments of ``speechbrain.lobes.features.Fbank`` that the layout keeps.
FEATURE_KEYS = ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length", "f_min")
#: Feature extractors by ``features.kind`` (NeMo models bring their own).
FEATURE_CLASSES = {
    "fbank": "speechbrain.lobes.features.Fbank",
    "nemo": "xlt_plugin.lobes.nemo_features.NeMoFeaturizer",
}

_HOW_TO_MAKE_ONE = (
    "A pretrained_path is a folder written by a base recipe "
    "(e.g. `python recipes/EnglishBase/train.py "
    "recipes/EnglishBase/hparams/quartznet_small.yaml --data_folder=...` writes "
    "<output_folder>/model/), by `xlt export`, or a SpeechBrain hub id."
)


def _qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _locate(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _yaml_value(value: Any) -> str:
    # JSON is valid YAML flow syntax for the plain values a config holds.
    return json.dumps(value, ensure_ascii=False)


def render_hyperparams(config: dict) -> str:
    """Render an ``EncoderASR``-compatible ``hyperparams.yaml`` from a config.

    Arguments
    ---------
    config : dict
        The content of ``config.json`` (see :func:`save_pretrained`).

    Returns
    -------
    str
        YAML text that SpeechBrain's ``EncoderASR.from_hparams`` loads.
    """
    feats = dict(config["features"])
    kind = feats.pop("kind", "fbank")
    # NeMo's features: normalised by the featurizer itself (not again), and the
    # encoder gets the relative lengths of its valid frames. Fbank: unchanged.
    chain = "speechbrain.nnet.containers.LengthsCapableSequential"
    normalize_in_chain = ["    normalize: !ref <normalize>"]
    if kind == "nemo":
        chain = "xlt_plugin.lobes.nemo_features.FrameLengthsSequential"
        if feats.get("normalize") in ("per_feature", "all_features"):
            normalize_in_chain = []
    lines = [
        "# Written by xlt_plugin: a CTC model in SpeechBrain's EncoderASR layout.",
        "# Load it with speechbrain.inference.ASR.EncoderASR.from_hparams(source=DIR).",
        f"sample_rate: {feats['sample_rate']}",
        f"blank_index: {config['blank_index']}",
        f"n_tokens: {config['n_tokens']}",
        "",
        f"compute_features: !new:{FEATURE_CLASSES[kind]}",
    ]
    lines += [f"    {key}: {_yaml_value(value)}" for key, value in feats.items()]
    lines += [
        "",
        "normalize: !new:speechbrain.processing.features.InputNormalization",
        f"    norm_type: {config['normalize']['norm_type']}",
        "",
        f"model: !new:{config['encoder_class']}",
    ]
    lines += [f"    {k}: {_yaml_value(v)}" for k, v in config["encoder_config"].items()]
    lines += [
        "",
        "head: !new:speechbrain.nnet.linear.Linear",
        f"    input_size: {config['encoder_output_size']}",
        "    n_neurons: !ref <n_tokens>",
        "",
        "log_softmax: !new:speechbrain.nnet.activations.Softmax",
        "    apply_log: True",
        "",
        f"encoder: !new:{chain}",
        "    compute_features: !ref <compute_features>",
        *normalize_in_chain,
        "    model: !ref <model>",
        "    head: !ref <head>",
        "    log_softmax: !ref <log_softmax>",
        "",
        "decoding_function: !name:speechbrain.decoders.ctc_greedy_decode",
        "    blank_id: !ref <blank_index>",
        "",
        "tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder",
        "",
        "modules:",
        "    encoder: !ref <encoder>",
        "",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        "        model: !ref <model>",
        "        head: !ref <head>",
        "        normalizer: !ref <normalize>",
        "        tokenizer: !ref <tokenizer>",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    out_dir: str | os.PathLike,
    *,
    encoder: torch.nn.Module,
    head: torch.nn.Module,
    tokenizer: CTCTextEncoder,
    features: dict,
    normalize: torch.nn.Module | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write a trained CTC model to ``out_dir`` in the hub layout.

    The folder is written next to its final place and renamed at the end, so a
    crash never leaves a half-written model where a transfer would pick it up.

    Arguments
    ---------
    out_dir : path
        Destination folder (replaced if it exists).
    encoder : torch.nn.Module
        An encoder with a ``config`` dict that rebuilds it (``QuartzNet``).
    head : torch.nn.Module
        The CTC head (``speechbrain.nnet.linear.Linear``), one row per token.
    tokenizer : CTCTextEncoder
        The label encoder whose indices are the head's rows.
    features : dict
        ``Fbank`` settings; keys from ``FEATURE_KEYS`` (missing ones get defaults).
    normalize : torch.nn.Module, optional
        The ``InputNormalization`` used in training.
    metadata : dict, optional
        Free-form facts kept in ``config.json`` (language, corpus, metrics, ...).

    Returns
    -------
    Path
        The written folder.

    Example
    -------
    >>> from speechbrain.nnet.linear import Linear
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> enc = QuartzNet(input_size=40, preset="quartznet_tiny")
    >>> tok = CTCTextEncoder()
    >>> tok.update_from_iterable("ab ", sequence_input=False)
    >>> tok.insert_blank(index=0)
    >>> head = Linear(input_size=enc.output_size, n_neurons=len(tok))
    >>> out = save_pretrained(getfixture("tmp_path") / "m", encoder=enc, head=head,
    ...                       tokenizer=tok, features={"n_mels": 40})
    >>> sorted(p.name for p in out.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['config.json', 'head.ckpt', 'hyperparams.yaml', 'model.ckpt',
     'normalizer.ckpt', 'tokenizer.ckpt']
    """
    from speechbrain.processing.features import InputNormalization

    if not hasattr(encoder, "config"):
        raise TypeError(
            f"{_qualified_name(encoder)} has no `config` dict, so the hub layout "
            "cannot record how to rebuild it; use xlt_plugin.lobes.quartznet.QuartzNet "
            "or give the encoder a `config` attribute."
        )
    n_rows = _head_rows(head)
    if n_rows != len(tokenizer):
        raise ValueError(
            f"The head has {n_rows} rows but the tokenizer has {len(tokenizer)} "
            "tokens: they must match one to one (blank included)."
        )
    if normalize is None:
        normalize = InputNormalization(norm_type="sentence")
    if features.get("kind", "fbank") == "fbank":
        feats = {
            "kind": "fbank",
            "sample_rate": 16000,
            "n_mels": 40,
            "n_fft": 400,
            "win_length": 25,
            "hop_length": 10,
            "f_min": 0,
        }
        unknown = set(features) - set(feats)
        if unknown:
            raise ValueError(
                f"Unknown feature settings {sorted(unknown)}: use {FEATURE_KEYS}"
            )
        feats.update(features)
    elif features["kind"] in FEATURE_CLASSES:
        feats = dict(features)
    else:
        raise ValueError(f"features kind must be one of {sorted(FEATURE_CLASSES)}")
    config = {
        "format": "xlt_plugin/ctc-1",
        "encoder_class": _qualified_name(encoder),
        "encoder_config": dict(encoder.config),
        "encoder_output_size": int(encoder.output_size),
        "features": feats,
        "normalize": {"norm_type": getattr(normalize, "norm_type", "sentence")},
        "n_tokens": n_rows,
        "blank_index": int(tokenizer.get_blank_index()),
        "tokens": load_tokens(tokenizer),
        "metadata": metadata or {},
    }

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        torch.save(encoder.state_dict(), tmp / ENCODER_FILE)
        torch.save(head.state_dict(), tmp / HEAD_FILE)
        normalize._save(tmp / NORMALIZER_FILE)
        tokenizer.save(tmp / TOKENS_FILE)
        (tmp / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / "hyperparams.yaml").write_text(render_hyperparams(config), "utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _head_rows(head: torch.nn.Module) -> int:
    weight = head.w.weight if hasattr(head, "w") else head.weight
    return int(weight.shape[0])


def _fetch(source: str | os.PathLike, filename: str, savedir: str | None) -> Path:
    """Local path of ``source/filename``; a hub id is fetched through SpeechBrain."""
    source = str(source)
    local = Path(source)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {source} is not a complete pretrained model "
                f"folder. {_HOW_TO_MAKE_ONE}"
            )
        return path
    looks_like_hub_id = source.count("/") == 1 and not local.exists()
    if not looks_like_hub_id or source.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"pretrained_path {source!r} does not exist. {_HOW_TO_MAKE_ONE}"
        )
    from speechbrain.utils.fetching import fetch

    try:
        return Path(fetch(filename, source=source, savedir=savedir))
    except Exception as err:  # network, auth or missing file: say what was tried
        raise FileNotFoundError(
            f"Could not fetch {filename!r} of hub model {source!r} ({err}). "
            "Is the machine online and the id right? " + _HOW_TO_MAKE_ONE
        ) from err


class _HubSource:
    """A model in the hub layout: a local folder or a hub id (fetched)."""

    def __init__(self, source: str | os.PathLike, savedir: str | None):
        self.source, self.savedir = source, savedir
        self.where = _fetch(source, CONFIG_FILE, savedir)
        self.config = json.loads(self.where.read_text(encoding="utf-8"))
        self.config["features"].setdefault("kind", "fbank")

    def tokens(self) -> list[str]:
        return _checked_tokens(self.source, self.config, self.savedir)

    def state(self, part: str) -> dict:
        path = _fetch(self.source, _PART_FILES[part], self.savedir)
        return torch.load(path, map_location="cpu", weights_only=True)

    def load_normalizer(self, normalize: torch.nn.Module) -> None:
        normalize._load(_fetch(self.source, NORMALIZER_FILE, self.savedir))

    def pretrainer_paths(self, cache_dir: str | os.PathLike) -> dict[str, str]:
        files = {**_PART_FILES, "normalize": NORMALIZER_FILE}
        if Path(self.source).is_dir():
            return {n: str(_fetch(self.source, f, None)) for n, f in files.items()}
        return {n: f"{self.source}/{f}" for n, f in files.items()}  # fetched


class _NeMoSource:
    """A NeMo ``.nemo`` archive, read by :mod:`xlt_plugin.nemo`."""

    def __init__(self, source: str | os.PathLike):
        from xlt_plugin.nemo import read_nemo_config

        self.source = self.where = Path(source)
        self.config = read_nemo_config(source)
        self._states: dict | None = None

    def tokens(self) -> list[str]:
        return list(self.config["tokens"])

    def state(self, part: str) -> dict:
        if self._states is None:
            from xlt_plugin.nemo import load_nemo_state

            self._states = load_nemo_state(self.source)
        return self._states[part]

    def load_normalizer(self, normalize: torch.nn.Module) -> None:
        """NeMo normalises per utterance and keeps no statistics: nothing to load."""

    def pretrainer_paths(self, cache_dir: str | os.PathLike) -> dict[str, str]:
        # The Pretrainer loads files: the archive's weights, converted once
        # into the hub layout's checkpoint files (written atomically, so DDP
        # processes loading the same YAML never read a half-written one).
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        paths = {}
        for part, filename in _PART_FILES.items():
            path = cache / filename
            handle, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=cache)
            os.close(handle)
            torch.save(self.state(part), tmp)
            os.replace(tmp, path)
            paths[part] = str(path)
        return paths


#: Loadable name (the module it fills) -> its file in the hub layout.
_PART_FILES = {"encoder": ENCODER_FILE, "head": HEAD_FILE}


def open_source(
    source: str | os.PathLike, savedir: str | None = None
) -> _HubSource | _NeMoSource:
    """Open a pretrained model, whatever its kind: the one place that tells.

    A hub-layout folder (a base recipe's ``<output_folder>/model``, an ``xlt
    export``), a hub id, or a NeMo ``.nemo`` archive. The result has
    ``config`` (the ``config.json`` layout), ``tokens()`` (head rows in order),
    ``state(part)`` (``"encoder"`` or ``"head"`` state dict),
    ``load_normalizer(module)`` and ``pretrainer_paths(cache_dir)``.

    Arguments
    ---------
    source : path or hub id
        The pretrained model.
    savedir : str, optional
        Where fetched hub files are kept.

    Returns
    -------
    The opened source.

    Example
    -------
    >>> nemo = Path(__file__).parents[1] / "tests/fixtures/nemo/quartznet_tiny.nemo"
    >>> src = open_source(nemo)
    >>> src.config["blank_index"], src.tokens()[-1], sorted(src.state("head"))
    (28, '<blank>', ['w.bias', 'w.weight'])
    """
    from xlt_plugin.nemo import is_nemo

    if not is_nemo(source):
        return _HubSource(source, savedir)
    if not Path(source).exists():
        raise FileNotFoundError(
            f"pretrained_path {source} does not exist. " + _HOW_TO_MAKE_ONE
        )
    return _NeMoSource(source)


def read_config(source: str | os.PathLike, key: str | None = None) -> Any:
    """Read ``config.json`` of a pretrained model (or one key of it).

    Usable from YAML: ``n_mels: !apply:xlt_plugin.pretrained.read_config
    [!ref <pretrained_path>, features.n_mels]`` (dotted keys go into sub-dicts).

    Arguments
    ---------
    source : path or hub id
        The pretrained model folder (or ``.nemo``).
    key : str, optional
        A dotted key; the whole config when omitted.

    Returns
    -------
    The value.
    """
    opened = open_source(source)
    if key is None:
        return opened.config
    value: Any = opened.config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{opened.where} has no key {key!r}")
        value = value[part]
    return value


def read_tokens(source: str | os.PathLike) -> list[str]:
    """The tokens of a pretrained model, one per head row (checked against it).

    Usable from YAML as a :class:`~xlt_plugin.remap.RemapHeadHook`'s
    ``source_tokens: !apply:xlt_plugin.pretrained.read_tokens [<pretrained_path>]``.

    Arguments
    ---------
    source : path or hub id
        The pretrained model folder (or ``.nemo``).

    Returns
    -------
    list of str
    """
    return open_source(source).tokens()


def pretrainer_paths(
    source: str | os.PathLike, cache_dir: str | os.PathLike
) -> dict[str, str]:
    """The ``paths`` of SpeechBrain's ``Pretrainer`` for a pretrained model.

    ``encoder`` and ``head`` (and ``normalize`` for a hub-layout model): the
    model's own files, or for a ``.nemo`` its weights converted into
    ``cache_dir``. Usable from YAML: ``paths: !apply:xlt_plugin.pretrained.
    pretrainer_paths [!ref <pretrained_path>, !ref <save_folder>/source]``.

    Arguments
    ---------
    source : path or hub id
        The pretrained model.
    cache_dir : path
        Where a ``.nemo``'s converted weights go.

    Returns
    -------
    dict
        Loadable name -> file (or ``hub_id/file``).
    """
    return open_source(source).pretrainer_paths(cache_dir)


def run_pretrainer(pretrainer, modules: dict):
    """Collect and load a YAML's ``pretrainer``, filling what it lacks from ``modules``.

    A path whose loadable the YAML could not build (the head, sized from the
    data once the YAML is loaded) loads into the module of the same name.

    Arguments
    ---------
    pretrainer : speechbrain.utils.parameter_transfer.Pretrainer
        The YAML's pretrainer.
    modules : dict
        Name -> module (a Brain's ``modules``).

    Returns
    -------
    RemapReport or None
        The report of its ``RemapHeadHook``, if it has one.
    """
    from speechbrain.utils.distributed import run_on_main

    from xlt_plugin.remap import RemapHeadHook

    missing = {
        name: modules[name]
        for name in pretrainer.paths
        if name not in pretrainer.loadables and name in modules
    }
    pretrainer.add_loadables(missing)
    run_on_main(pretrainer.collect_files)
    pretrainer.load_collected()
    hooks = pretrainer.custom_hooks.values()
    return next((h.report for h in hooks if isinstance(h, RemapHeadHook)), None)


def build_features(source: str | os.PathLike) -> torch.nn.Module:
    """The feature extractor a pretrained model was trained with.

    SpeechBrain's ``Fbank`` for this project's models, the plugin's
    ``NeMoFeaturizer`` for an imported ``.nemo``. Usable from YAML:
    ``compute_features: !apply:xlt_plugin.pretrained.build_features [<path>]``.

    Arguments
    ---------
    source : path or hub id
        The pretrained model.

    Returns
    -------
    torch.nn.Module
        ``[batch, samples] -> [batch, frames, n_mels]``.
    """
    feats = dict(read_config(source, "features"))
    kind = feats.pop("kind", "fbank")
    if kind not in FEATURE_CLASSES:
        raise ValueError(f"{source}: unknown features kind {kind!r}")
    return _locate(FEATURE_CLASSES[kind])(**feats)


def build_encoder(source: str | os.PathLike) -> torch.nn.Module:
    """Build the encoder architecture of a pretrained model, randomly initialised.

    The weights come later (:func:`transfer_weights`), after the recipe has built
    the rest of the model; a checkpoint recovery then overrides them on resume.

    Arguments
    ---------
    source : path or hub id
        The pretrained model folder.

    Returns
    -------
    torch.nn.Module
    """
    config = read_config(source)
    cls = _locate(config["encoder_class"])
    return cls(**config["encoder_config"])


@dataclass
class PretrainedCTC:
    """A loaded pretrained CTC model: its parts, its tokens and its config."""

    encoder: torch.nn.Module
    head: torch.nn.Module
    normalize: torch.nn.Module
    compute_features: torch.nn.Module
    tokens: list[str]
    blank_index: int
    config: dict = field(default_factory=dict)

    def log_probs(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """CTC log-probabilities ``[batch, frames, tokens]`` for a waveform batch.

        The lengths reach a featurizer that takes them (an imported ``.nemo``'s:
        a short clip in a padded batch then gets its log-probabilities alone);
        SpeechBrain's ``Fbank`` is called without. A featurizer that normalises
        itself is not normalised again.
        """
        from xlt_plugin.lobes.nemo_features import featurize, normalizes_itself

        feats, feat_lens = featurize(self.compute_features, wavs, wav_lens)
        if not normalizes_itself(self.compute_features):
            feats = self.normalize(feats, feat_lens)
        logits = self.head(self.encoder(feats, feat_lens))
        return torch.log_softmax(logits, dim=-1)


def load_pretrained(
    source: str | os.PathLike, savedir: str | None = None
) -> PretrainedCTC:
    """Load a pretrained CTC model from a hub-layout folder, a hub id or a ``.nemo``.

    Arguments
    ---------
    source : path or hub id
        A folder written by :func:`save_pretrained` (a base recipe's
        ``<output_folder>/model``), a hub id (fails clearly when offline), or a
        NeMo ``.nemo`` archive.
    savedir : str, optional
        Where fetched hub files are kept.

    Returns
    -------
    PretrainedCTC
    """
    from speechbrain.nnet.linear import Linear
    from speechbrain.processing.features import InputNormalization

    opened = open_source(source, savedir)
    config = opened.config
    encoder = build_encoder(source)
    head = Linear(
        input_size=config["encoder_output_size"], n_neurons=config["n_tokens"]
    )
    normalize = InputNormalization(norm_type=config["normalize"]["norm_type"])
    _load_state_dict(encoder, opened.state("encoder"), source)
    _load_state_dict(head, opened.state("head"), source)
    opened.load_normalizer(normalize)
    return PretrainedCTC(
        encoder=encoder.eval(),
        head=head.eval(),
        normalize=normalize.eval(),
        compute_features=build_features(source).eval(),
        tokens=opened.tokens(),
        blank_index=config["blank_index"],
        config=config,
    )


def _checked_tokens(source, config: dict, savedir) -> list[str]:
    """The token file's tokens, checked against the head's row count."""
    tokens_path = _fetch(source, TOKENS_FILE, savedir)
    tokens = load_tokens(str(tokens_path))
    if len(tokens) != config["n_tokens"]:
        raise ValueError(
            f"{tokens_path} lists {len(tokens)} tokens but the head in "
            f"{source}/{HEAD_FILE} has {config['n_tokens']} rows (config.json "
            "n_tokens): the token file and the checkpoint come from different "
            "models. Re-export the model, or point pretrained_path at the right one."
        )
    return tokens


def transfer_weights(
    source: str | os.PathLike,
    *,
    encoder: torch.nn.Module,
    head: torch.nn.Module,
    target_tokens: Any,
    strategy: str = "exact",
    normalize: torch.nn.Module | None = None,
    savedir: str | None = None,
    report_path: str | os.PathLike | None = None,
):
    """Start a target model from a pretrained one: encoder copied, head remapped.

    The encoder (and normaliser) weights are copied as they are; the head is
    remapped to the target tokens with :class:`xlt_plugin.remap.RemapHeadHook`, the
    same hook a YAML-only recipe plugs into SpeechBrain's ``Pretrainer``. All
    modules are filled in place.

    Arguments
    ---------
    source : path or hub id
        The pretrained model (or a ``.nemo``).
    encoder, head : torch.nn.Module
        The target model's parts (head sized for the target tokens).
    target_tokens : CTCTextEncoder, list or path
        The target inventory; row ``i`` of ``head`` is its token ``i``.
    strategy : str
        Remap strategy chain, e.g. ``"exact,fold"`` (see ``xlt_plugin.remap``).
    normalize : torch.nn.Module, optional
        The target's ``InputNormalization``.
    savedir : str, optional
        Where fetched hub files are kept.
    report_path : path, optional
        Where the remap report is written as JSON.

    Returns
    -------
    RemapReport
    """
    from xlt_plugin.remap import RemapHeadHook

    opened = open_source(source, savedir)
    _load_state_dict(encoder, opened.state("encoder"), source)
    if normalize is not None:
        opened.load_normalizer(normalize)
    hook = RemapHeadHook(
        source_tokens=opened.tokens(),
        target_tokens=target_tokens,
        strategy=strategy,
        source_blank=opened.config["blank_index"],
        target_blank=_blank_of(target_tokens),
        report_path=report_path,
    )
    return hook.remap_state(head, opened.state("head"), where=f"the head of {source}")


def _load_state_dict(module: torch.nn.Module, state: dict, source) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(
            f"The weights of {source} do not fit the {_qualified_name(module)} built "
            f"for them: {str(err).rstrip('. ')}. The recipe's architecture must be "
            "the pretrained model's; in a transfer YAML build it with "
            "!apply:xlt_plugin.pretrained.build_encoder [<pretrained_path>]."
        ) from err


def _blank_of(tokens: Any) -> int:
    if isinstance(tokens, CTCTextEncoder):
        return int(tokens.get_blank_index())
    return 0


class LoadSubmodule:
    """Pretrainer hook: load a checkpoint, or the keys under ``key`` of it, strictly.

    SpeechBrain's default loader is lenient: a checkpoint that misses keys of
    the module only warns, and the module keeps its random weights for them.
    This hook refuses it, naming the missing and unexpected keys. Without a
    ``key`` it loads the whole checkpoint (a transfer YAML's ``encoder``, from
    the base's ``encoder.ckpt``). With one, it loads a submodule of a source
    that saved several modules in one checkpoint (a ``ModuleList`` of encoder
    and head in one ``model.ckpt``): ``key: "0"`` loads ``0.*`` into the
    recipe's encoder. Give the head a :class:`xlt_plugin.remap.RemapHeadHook`
    on the same file.

    Arguments
    ---------
    key : str, optional
        The submodule's prefix in the checkpoint (``"0"``, ``"model.encoder"``);
        empty (the default) for the whole checkpoint.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> source = torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 4)])
    >>> torch.save(source.state_dict(), tmp / "model.ckpt")
    >>> encoder = torch.nn.Linear(2, 3)
    >>> LoadSubmodule("0")(encoder, tmp / "model.ckpt")
    >>> torch.equal(encoder.weight, source[0].weight)
    True

    Without a key, the whole checkpoint; one that misses keys is refused:

    >>> torch.save(source[1].state_dict(), tmp / "head.ckpt")
    >>> head = torch.nn.Linear(3, 4)
    >>> LoadSubmodule()(head, tmp / "head.ckpt")
    >>> torch.equal(head.weight, source[1].weight)
    True
    >>> torch.save({"weight": source[1].weight}, tmp / "partial.ckpt")
    >>> LoadSubmodule()(head, tmp / "partial.ckpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    RuntimeError: The weights of .../partial.ckpt do not fit the ...Missing key(s)...
    """

    def __init__(self, key: str | None = ""):
        key = str(key or "").rstrip(".")
        self.prefix = key + "." if key else ""

    def __call__(self, obj: torch.nn.Module, path: str | os.PathLike) -> None:
        """Load ``path`` (its keys under the prefix, if any) into ``obj``, strictly."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        path = Path(path).resolve()  # the source's file, not the Pretrainer's link
        if not self.prefix:
            _load_state_dict(obj, state, path)
            return
        part = {
            k[len(self.prefix) :]: v
            for k, v in state.items()
            if k.startswith(self.prefix)
        }
        if not part:
            raise ValueError(
                f"checkpoint {path} has no keys under {self.prefix!r}; its keys "
                f"start with {sorted({k.split('.')[0] for k in state})[:12]}"
            )
        _load_state_dict(obj, part, f"{path} ({self.prefix}*)")
