"""Import NeMo ``.nemo`` QuartzNet/Jasper CTC checkpoints, without NeMo.

A ``.nemo`` file is a tar archive (what NeMo's ``model.save_to()`` writes) holding
``model_config.yaml`` and ``model_weights.ckpt`` (a ``torch.save``-d state dict).
For a character ``EncDecCTCModel`` whose encoder is a ``ConvASREncoder`` (QuartzNet,
Jasper) this module reads both with ``tarfile``, ``yaml`` and ``torch.load`` and
turns them into the plugin's pretrained-model parts:

- :func:`read_nemo_config`: a dict in the layout of ``config.json``
  (:mod:`xlt_plugin.pretrained`): the encoder as the plugin's
  :class:`~xlt_plugin.lobes.quartznet.QuartzNet`, the features as a
  :class:`NeMoFeaturizer` (``features["kind"] == "nemo"``), NeMo's labels as the
  tokens with the blank LAST (``blank_index == len(labels)``, NeMo's row order);
- :func:`load_nemo_state`: the encoder and head state dicts, mapped key by key
  (every checkpoint key is used exactly once, or the import fails naming it);
- the features are :class:`~xlt_plugin.lobes.nemo_features.NeMoFeaturizer` (a
  lobe, re-exported here): NeMo's ``AudioToMelSpectrogramPreprocessor``, time
  first, NeMo's normalisation included (see below);
- :func:`nemo_load_report`: what was imported and how close it is to NeMo.

Older archives (NeMo's 2020 layout, Hydra 0.x: ``cls:`` with the arguments under
``params:``) are converted as NeMo's own ``maybe_update_config_version``
(``nemo/utils/model_utils.py``) does when it restores them: ``cls`` becomes
``_target_`` and ``params`` is merged into its parent (:func:`upgrade_config`).

NeMo's ``jasper`` block list maps onto QuartzNet's fields: the first block is the
prologue, the trailing blocks with ``residual: false`` are the epilogue, the blocks
between are the B-blocks (consecutive equal blocks become ``block_repeats``).
Anything the plugin's encoder cannot express (squeeze-excitation, grouped or
multi-head convs, strides or dilations outside the prologue/epilogue pattern,
other activations or norms, ...) is refused with the offending block named.

Normalisation: NeMo's ``normalize: per_feature`` (and ``all_features``) divides
by the UNBIASED standard deviation plus 1e-5, over each utterance's valid frames;
SpeechBrain's ``InputNormalization`` divides by the biased one and counts frames
from rounded relative lengths. So the featurizer normalises itself, as NeMo does
(``features["normalize"]``), and the pipelines (training, evaluation,
:meth:`~xlt_plugin.pretrained.PretrainedCTC.log_probs`, an exported model) pass it
the batch's lengths and apply no ``InputNormalization`` after it. The tests
(``tests/unit/test_nemo_import.py``) compare the import with NeMo 3.0.0's own
outputs for a trained model (``tests/fixtures/nemo``, made by its
``make_fixture.py``): :data:`END_TO_END_TOLERANCE` is the bound they enforce, from
the waveform, one clip at a time and in a padded batch.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import copy
import io
import math
import os
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import yaml

from xlt_plugin.lobes.nemo_features import _WINDOWS, NeMoFeaturizer
from xlt_plugin.tokens import BLANK

ENCODER_CLASS = "xlt_plugin.lobes.quartznet.QuartzNet"
CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"
SUPPORTED_ENCODERS = ("ConvASREncoder",)
SUPPORTED_DECODERS = ("ConvASRDecoder",)
SUPPORTED_PREPROCESSORS = ("AudioToMelSpectrogramPreprocessor",)
_SUPPORTED = (
    "xlt_plugin imports character-level NeMo EncDecCTCModel checkpoints whose encoder "
    "is a ConvASREncoder (QuartzNet, Jasper) with an AudioToMelSpectrogramPreprocessor "
    "and a ConvASRDecoder"
)

#: The NeMo version the import reproduces (and the fixtures were made with).
NEMO_VERSION = "3.0.0"
#: Max abs difference of the imported model's CTC log-probabilities to NeMo's,
#: from the waveform (valid frames), one clip at a time and in a padded batch:
#: the bound ``tests/unit/test_nemo_import.py`` enforces against NeMo's own
#: outputs (the values it measures are in ``tests/fixtures/nemo/measured.json``).
END_TO_END_TOLERANCE = 1e-3

# AudioToMelSpectrogramPreprocessor's defaults in NeMo 3.0.0: a saved config only
# holds the keys its author wrote.
_PREPROCESSOR_DEFAULTS: dict[str, Any] = {
    "sample_rate": 16000,
    "window_size": 0.02,
    "window_stride": 0.01,
    "n_window_size": None,
    "n_window_stride": None,
    "window": "hann",
    "normalize": "per_feature",
    "n_fft": None,
    "preemph": 0.97,
    "features": 64,
    "lowfreq": 0,
    "highfreq": None,
    "log": True,
    "log_zero_guard_type": "add",
    "log_zero_guard_value": 2**-24,
    "dither": 1e-5,
    "pad_to": 16,
    "frame_splicing": 1,
    "exact_pad": False,
    "pad_value": 0,
    "mag_power": 2.0,
    "rng": None,
    "nb_augmentation_prob": 0.0,
    "nb_max_freq": 4000,
    "mel_norm": "slaney",
    "use_torchaudio": False,
    "stft_exact_pad": False,
    "stft_conv": False,
}
# Block options the plugin's JasperBlock has no counterpart for, with the value
# that makes NeMo's block behave like it.
_NEUTRAL_BLOCK_OPTIONS: dict[str, Any] = {
    "groups": 1,
    "heads": -1,
    "se": False,
    "kernel_size_factor": 1.0,
    "future_context": -1,
    "quantize": False,
}
# Block options with no effect on the blocks accepted here (no SE, no stride
# inside repeated sub-blocks).
_INERT_BLOCK_KEYS = {
    "se_reduction_ratio",
    "se_context_size",
    "se_interpolation_mode",
    "stride_last",
}
_KNOWN_BLOCK_KEYS = {
    "filters",
    "repeat",
    "kernel",
    "stride",
    "dilation",
    "dropout",
    "residual",
    "separable",
    "residual_dense",
    "residual_mode",
} | set(_NEUTRAL_BLOCK_OPTIONS)
_INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


class NeMoImportError(ValueError):
    """A ``.nemo`` file that cannot be imported; the message says why and what to do."""


# --------------------------------------------------------------------------- #
# The archive
# --------------------------------------------------------------------------- #


def is_nemo(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a NeMo checkpoint (a ``.nemo`` file).

    True for any path ending in ``.nemo`` (so that a broken one reaches the
    importer and its clear error), and for an existing tar file holding a
    ``model_config.yaml``. Folders and hub ids are not NeMo checkpoints.

    Arguments
    ---------
    path : str or path-like
        A ``pretrained_path``.

    Returns
    -------
    bool

    Example
    -------
    >>> is_nemo("QuartzNet15x5Base-En.nemo"), is_nemo("results/model")
    (True, False)
    """
    path = Path(path)
    if path.suffix.lower() == ".nemo":
        return True
    if not path.is_file() or not tarfile.is_tarfile(path):
        return False
    try:
        with tarfile.open(path, "r:*") as archive:
            return any(Path(name).name == CONFIG_MEMBER for name in archive.getnames())
    except (tarfile.TarError, OSError):
        return False


def _read_members(path: str | os.PathLike, wanted: tuple[str, ...]) -> dict:
    """Bytes of the archive members named ``wanted`` (matched by file name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"NeMo checkpoint {path} does not exist (or is not a file). "
            f"{_SUPPORTED}; give the path of the .nemo file."
        )
    try:
        archive = tarfile.open(path, "r:*")
    except tarfile.TarError as err:
        raise NeMoImportError(
            f"{path} is not a NeMo .nemo archive: it is not a tar file ({err}). "
            "A .nemo file is the tar archive NeMo's `model.save_to(path)` writes, "
            f"holding {CONFIG_MEMBER} and {WEIGHTS_MEMBER}; re-download or re-export "
            "it."
        ) from err
    with archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        missing = [name for name in wanted if name not in members]
        if missing:
            raise NeMoImportError(
                f"{path} is a tar file but lacks {', '.join(missing)} (it holds: "
                f"{', '.join(sorted(members)) or 'no files'}). A .nemo archive from "
                f"`model.save_to(path)` holds {CONFIG_MEMBER} and {WEIGHTS_MEMBER}."
            )
        out = {}
        for name in wanted:
            handle = archive.extractfile(members[name])
            if handle is None:  # pragma: no cover - isfile() members always open
                raise NeMoImportError(f"{path}: cannot read {name} from the archive.")
            out[name] = handle.read()
    return out


def _resolve_interpolations(tree: Any, root: dict) -> Any:
    """Replaces ``${a.b}`` strings (OmegaConf interpolations) by their targets."""
    if isinstance(tree, dict):
        return {k: _resolve_interpolations(v, root) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_resolve_interpolations(v, root) for v in tree]
    match = _INTERPOLATION.match(tree) if isinstance(tree, str) else None
    if not match:
        return tree
    parts = match.group(1).split(".")
    candidates = [parts]
    if parts[0] == "model" and len(parts) > 1:
        # Training configs point into the `model` section, which is the saved root.
        candidates.append(parts[1:])
    for candidate in candidates:
        node: Any = root
        for part in candidate:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return copy.deepcopy(node)
    return tree  # unresolvable: left as is, so a check that reads it names it


def _read_yaml(path: Path, data: bytes) -> dict:
    try:
        config = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise NeMoImportError(
            f"{path}: {CONFIG_MEMBER} is not valid YAML ({err}); the archive is "
            "damaged."
        ) from err
    if not isinstance(config, dict):
        raise NeMoImportError(
            f"{path}: {CONFIG_MEMBER} holds {type(config).__name__}, not a mapping "
            "of model settings; the archive is damaged."
        )
    return config


def _class_name(target: Any) -> str:
    return str(target).rpartition(".")[2] if target else ""


def upgrade_config(tree: Any) -> Any:
    """NeMo's 2020 config layout (``cls`` + ``params``) in today's (``_target_``).

    What NeMo's ``maybe_update_config_version`` (its ``_convert_config``) does to
    a restored config, on plain data: in every mapping (recursively, through
    mappings only, as NeMo), ``cls`` becomes ``_target_`` unless there is one,
    and the keys of ``params`` move up into the mapping, replacing keys of the
    same name. A config already in the new layout comes back equal.

    Arguments
    ---------
    tree : Any
        A parsed ``model_config.yaml``.

    Returns
    -------
    Any
        A converted copy.

    Example
    -------
    >>> old = {"encoder": {"cls": "nemo.collections.asr.modules.ConvASREncoder",
    ...                    "params": {"feat_in": 64, "activation": "relu"}}}
    >>> upgrade_config(old)["encoder"]
    {'_target_': 'nemo.collections.asr.modules.ConvASREncoder', 'feat_in': 64, \
'activation': 'relu'}
    """
    if not isinstance(tree, dict):
        return copy.deepcopy(tree)
    out = dict(tree)
    if "cls" in out and "_target_" not in out:
        out["_target_"] = out.pop("cls")
    if "params" in out:
        params = out.pop("params")
        for key, value in (params or {}).items():
            out[key] = value
    return {
        key: upgrade_config(value) if isinstance(value, dict) else copy.deepcopy(value)
        for key, value in out.items()
    }


# --------------------------------------------------------------------------- #
# Config: NeMo -> config.json
# --------------------------------------------------------------------------- #


class _Checker:
    """Reads typed values out of a NeMo config, failing with the key's full name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> NeMoImportError:
        return NeMoImportError(f"{self.path}: {CONFIG_MEMBER} {key}: {message}")

    def integer(self, value: Any, key: str, minimum: int = 1) -> int:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]  # NeMo writes kernel/stride/dilation as [k]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an int >= {minimum}, got {value!r}.")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {value!r}.")
        return float(value)

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}.")
        return value


def _labels(config: dict, check: _Checker) -> list[str]:
    decoder = config.get("decoder") or {}
    labels = decoder.get("vocabulary")
    key = "decoder.vocabulary"
    if not labels:
        labels, key = config.get("labels"), "labels"
    if "tokenizer" in config or not labels:
        raise check.fail(
            key,
            "no character labels (a subword/BPE model, EncDecCTCModelBPE, or an "
            f"incomplete config). {_SUPPORTED}.",
        )
    if not isinstance(labels, list) or not all(isinstance(t, str) for t in labels):
        raise check.fail(key, f"expected a list of strings, got {labels!r:.80}.")
    duplicates = sorted(t for t, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise check.fail(key, f"labels {duplicates} appear more than once.")
    if BLANK in labels:
        raise check.fail(key, f"a label is {BLANK!r}, the name of the added blank.")
    top = config.get("labels")
    if top and key != "labels" and list(top) != labels:
        raise check.fail(
            "labels",
            "differs from decoder.vocabulary; the decoder's rows follow "
            "decoder.vocabulary, so the archive is inconsistent.",
        )
    return labels


def _features(config: dict, check: _Checker, notes: list[str]) -> dict:
    section = config.get("preprocessor")
    if not isinstance(section, dict):
        raise check.fail("preprocessor", f"missing. {_SUPPORTED}.")
    name = _class_name(section.get("_target_"))
    if name not in SUPPORTED_PREPROCESSORS:
        raise check.fail(
            "preprocessor._target_",
            f"{section.get('_target_')!r} is not supported. {_SUPPORTED}.",
        )
    unknown = sorted(set(section) - set(_PREPROCESSOR_DEFAULTS) - {"_target_"})
    if unknown:
        raise check.fail(
            "preprocessor",
            f"unknown settings {unknown} (not in NeMo 3.0.0's "
            "AudioToMelSpectrogramPreprocessor); cannot reproduce them.",
        )
    p = dict(_PREPROCESSOR_DEFAULTS, **section)
    sample_rate = check.integer(p["sample_rate"], "preprocessor.sample_rate")
    # NeMo's own conversion (int truncation), so the window matches sample for sample.
    if p["window_size"] and p["n_window_size"]:
        raise check.fail("preprocessor", "both window_size and n_window_size given.")
    if p["window_stride"] and p["n_window_stride"]:
        raise check.fail(
            "preprocessor", "both window_stride and n_window_stride given."
        )
    win = p["n_window_size"] or int(p["window_size"] * sample_rate)
    hop = p["n_window_stride"] or int(p["window_stride"] * sample_rate)
    win = check.integer(win, "preprocessor.window_size")
    hop = check.integer(hop, "preprocessor.window_stride")
    n_fft = p["n_fft"] or 2 ** math.ceil(math.log2(win))
    n_fft = check.integer(n_fft, "preprocessor.n_fft")
    if p["window"] not in _WINDOWS:
        raise check.fail(
            "preprocessor.window",
            f"{p['window']!r} is not one of {sorted(_WINDOWS)} (NeMo's windows).",
        )
    if p["normalize"] not in ("per_feature", "all_features"):
        raise check.fail(
            "preprocessor.normalize",
            f"{p['normalize']!r}: only 'per_feature' and 'all_features' are "
            "supported (NeMoFeaturizer reproduces them; the plugin's pipelines "
            "expect normalised features).",
        )
    if check.integer(p["frame_splicing"], "preprocessor.frame_splicing") != 1:
        raise check.fail("preprocessor.frame_splicing", "only 1 is supported.")
    if p["log_zero_guard_type"] not in ("add", "clamp"):
        raise check.fail(
            "preprocessor.log_zero_guard_type", "must be 'add' or 'clamp'."
        )
    guard = p["log_zero_guard_value"]
    if guard not in ("tiny", "eps"):
        guard = check.number(guard, "preprocessor.log_zero_guard_value")
    if p["mel_norm"] not in ("slaney", None):
        raise check.fail(
            "preprocessor.mel_norm", f"{p['mel_norm']!r}: only 'slaney' or null."
        )
    pad_to = p["pad_to"]
    if pad_to != 0:
        notes.append(
            f"NeMo pads features to a multiple of pad_to={pad_to!r}; the import "
            "uses pad_to=0 because SpeechBrain's relative lengths would count the "
            "padding as speech. Valid frames are identical."
        )
    if p["nb_augmentation_prob"]:
        notes.append(
            "narrow-band augmentation (nb_augmentation_prob="
            f"{p['nb_augmentation_prob']}) is a NeMo training-time option; not used."
        )
    for key in ("use_torchaudio", "stft_exact_pad", "stft_conv"):
        if p[key]:
            notes.append(f"preprocessor.{key} is ignored, as NeMo 3.0.0 ignores it.")
    exact_pad = check.flag(p["exact_pad"], "preprocessor.exact_pad")
    if exact_pad and hop % 2:
        raise check.fail("preprocessor.exact_pad", "needs an even hop (as in NeMo).")
    preemph = p["preemph"]
    if preemph is not None:
        preemph = check.number(preemph, "preprocessor.preemph")
    return {
        "kind": "nemo",
        "sample_rate": sample_rate,
        "n_mels": check.integer(p["features"], "preprocessor.features"),
        "n_fft": n_fft,
        # Milliseconds, like SpeechBrain's Fbank; NeMoFeaturizer rounds back to
        # exactly these sample counts.
        "win_length": win * 1000 / sample_rate,
        "hop_length": hop * 1000 / sample_rate,
        "f_min": check.number(p["lowfreq"], "preprocessor.lowfreq"),
        "f_max": (
            check.number(p["highfreq"], "preprocessor.highfreq")
            if p["highfreq"]
            else sample_rate / 2
        ),
        "window": p["window"],
        "preemph": preemph,
        "mag_power": check.number(p["mag_power"], "preprocessor.mag_power"),
        "log": check.flag(p["log"], "preprocessor.log"),
        "log_zero_guard_type": p["log_zero_guard_type"],
        "log_zero_guard_value": guard,
        "mel_norm": p["mel_norm"],
        "exact_pad": exact_pad,
        "dither": check.number(p["dither"], "preprocessor.dither"),
        "pad_to": 0,
        "pad_value": check.number(p["pad_value"], "preprocessor.pad_value"),
        "normalize": p["normalize"],
    }


def _block(lcfg: Any, index: int, check: _Checker, notes: list[str]) -> dict:
    """One ``jasper`` entry, checked and reduced to what QuartzNet can express."""
    key = f"encoder.jasper[{index}]"
    if not isinstance(lcfg, dict):
        raise check.fail(key, f"expected a mapping, got {lcfg!r:.60}.")
    for option, neutral in _NEUTRAL_BLOCK_OPTIONS.items():
        if option in lcfg and lcfg[option] != neutral:
            raise check.fail(
                f"{key}.{option}",
                f"{lcfg[option]!r} is not supported (the plugin's QuartzNet has no "
                f"such option; only {neutral!r} can be imported).",
            )
    mode = lcfg.get("residual_mode", "add")
    if mode != "add":
        raise check.fail(f"{key}.residual_mode", f"{mode!r}: only 'add' is supported.")
    unknown = sorted(set(lcfg) - _KNOWN_BLOCK_KEYS - _INERT_BLOCK_KEYS)
    if unknown:
        notes.append(f"{key}: ignored unknown options {unknown}.")
    for name in ("kernel", "stride", "dilation"):
        value = lcfg.get(name)
        if isinstance(value, list) and len(value) != 1:
            raise check.fail(f"{key}.{name}", f"expected one value, got {value!r}.")
    block = {
        "filters": check.integer(lcfg.get("filters"), f"{key}.filters"),
        "repeat": check.integer(lcfg.get("repeat"), f"{key}.repeat"),
        "kernel": check.integer(lcfg.get("kernel"), f"{key}.kernel"),
        "stride": check.integer(lcfg.get("stride", 1), f"{key}.stride"),
        "dilation": check.integer(lcfg.get("dilation", 1), f"{key}.dilation"),
        "dropout": check.number(lcfg.get("dropout", 0.0), f"{key}.dropout"),
        "residual": check.flag(lcfg.get("residual", False), f"{key}.residual"),
        "separable": check.flag(lcfg.get("separable", False), f"{key}.separable"),
        "dense": check.flag(lcfg.get("residual_dense", False), f"{key}.residual_dense"),
    }
    if block["kernel"] % 2 == 0:
        raise check.fail(f"{key}.kernel", f"{block['kernel']} is even; need odd.")
    if block["separable"] and block["kernel"] == 1:
        raise check.fail(
            f"{key}.separable",
            "a separable kernel-1 block (depthwise 1x1 + pointwise) is not "
            "supported; the plugin's kernel-1 blocks are one pointwise conv.",
        )
    return block


def _split_blocks(blocks: list[dict], check: _Checker) -> tuple[dict, list, list]:
    """Prologue, main blocks and epilogue of NeMo's block list."""
    if len(blocks) < 3:
        raise check.fail(
            "encoder.jasper",
            f"{len(blocks)} blocks; need a prologue, at least one residual block "
            "and at least one closing block.",
        )
    prologue = blocks[0]
    end = len(blocks)
    while end > 1 and not blocks[end - 1]["residual"]:
        end -= 1
    main, epilogue = blocks[1:end], blocks[end:]
    if not main or not epilogue:
        raise check.fail(
            "encoder.jasper",
            "cannot tell the B-blocks from the closing blocks: the plugin needs "
            "blocks 1..B with residual: true followed by blocks with residual: false.",
        )
    for index, block in enumerate(main, start=1):
        if not block["residual"]:
            raise check.fail(
                f"encoder.jasper[{index}].residual",
                "false between residual blocks; the plugin's B-blocks are all "
                "residual (only the closing blocks may lack a residual).",
            )
    return prologue, main, epilogue


def _encoder_config(config: dict, check: _Checker, notes: list[str]) -> dict:
    enc = config.get("encoder")
    if not isinstance(enc, dict):
        raise check.fail("encoder", f"missing. {_SUPPORTED}.")
    name = _class_name(enc.get("_target_"))
    if name not in SUPPORTED_ENCODERS:
        raise NeMoImportError(
            f"{check.path}: the encoder is {name or 'unspecified'} "
            f"({CONFIG_MEMBER} encoder._target_ = {enc.get('_target_')!r}), which "
            f"xlt_plugin cannot import. Supported encoders: "
            f"{', '.join(SUPPORTED_ENCODERS)} (QuartzNet, Jasper). {_SUPPORTED}."
        )
    for option, expected in (
        ("activation", "relu"),
        ("normalization_mode", "batch"),
        ("residual_mode", "add"),
        ("frame_splicing", 1),
        ("quantize", False),
    ):
        value = enc.get(option, expected)
        if value != expected:
            raise check.fail(
                f"encoder.{option}",
                f"{value!r} is not supported; the plugin's QuartzNet uses "
                f"{expected!r}.",
            )
    if not enc.get("conv_mask", True):
        notes.append(
            "encoder.conv_mask is false in NeMo; the plugin always masks padding "
            "(outputs on padded batches may differ at the ends of short utterances)."
        )
    jasper = enc.get("jasper")
    if not isinstance(jasper, list):
        raise check.fail(
            "encoder.jasper", f"expected a list of blocks, got {jasper!r:.60}."
        )
    blocks = [_block(b, i, check, notes) for i, b in enumerate(jasper)]
    prologue, main, epilogue = _split_blocks(blocks, check)

    def need(condition: bool, index: int, field: str, message: str) -> None:
        if not condition:
            raise check.fail(f"encoder.jasper[{index}].{field}", message)

    need(prologue["repeat"] == 1, 0, "repeat", "the prologue must have repeat 1.")
    need(prologue["dilation"] == 1, 0, "dilation", "the prologue must have dilation 1.")
    need(not prologue["dense"], 0, "residual_dense", "not supported on the prologue.")
    repeats = main[0]["repeat"]
    dense = main[0]["dense"]
    for index, block in enumerate(main, start=1):
        need(block["stride"] == 1, index, "stride", "B-blocks must have stride 1.")
        need(
            block["repeat"] == repeats,
            index,
            "repeat",
            f"{block['repeat']} differs from the first B-block's {repeats}; the "
            "plugin uses one repeat R for all B-blocks.",
        )
        need(
            block["dense"] == dense,
            index,
            "residual_dense",
            "must be the same for all B-blocks.",
        )
    first_epilogue = 1 + len(main)
    for index, block in enumerate(epilogue, start=first_epilogue):
        need(
            block["repeat"] == 1, index, "repeat", "closing blocks must have repeat 1."
        )
        need(
            block["stride"] == 1, index, "stride", "closing blocks must have stride 1."
        )
        need(not block["dense"], index, "residual_dense", "not supported here.")
    spatial = [(i, b) for i, b in enumerate(blocks) if b["kernel"] > 1]
    separable = spatial[0][1]["separable"] if spatial else True
    for index, block in spatial:
        need(
            block["separable"] == separable,
            index,
            "separable",
            f"{block['separable']} differs from block {spatial[0][0]}'s; the plugin "
            "uses one separable setting for all blocks.",
        )
    # Consecutive equal B-blocks are QuartzNet's repeated blocks (the S of 15x5).
    runs: list[list] = []
    for block in main:
        shape = (block["filters"], block["kernel"], block["dilation"])
        if runs and runs[-1][0] == shape:
            runs[-1][1] += 1
        else:
            runs.append([shape, 1])
    block_repeats = math.gcd(*(count for _, count in runs))
    groups = [shape for shape, count in runs for _ in range(count // block_repeats)]
    dropouts = [b["dropout"] for b in blocks]
    dropout = Counter(b["dropout"] for b in main).most_common(1)[0][0]
    if len(set(dropouts)) > 1:
        notes.append(
            f"NeMo's blocks use dropouts {dropouts}; the plugin's QuartzNet has one "
            f"dropout for all blocks: {dropout} (only matters for training)."
        )
    init_mode = enc.get("init_mode", "xavier_uniform")
    if init_mode not in _INIT_MODES:
        notes.append(f"init_mode {init_mode!r} unknown here; xavier_uniform used.")
        init_mode = "xavier_uniform"
    feat_in = check.integer(enc.get("feat_in"), "encoder.feat_in")
    return {
        "input_size": feat_in,
        "prologue_channels": prologue["filters"],
        "prologue_kernel": prologue["kernel"],
        "prologue_stride": prologue["stride"],
        "channels": [g[0] for g in groups],
        "kernel_sizes": [g[1] for g in groups],
        "dilations": [g[2] for g in groups],
        "block_repeats": block_repeats,
        "repeats": repeats,
        "epilogue_channels": [b["filters"] for b in epilogue],
        "epilogue_kernels": [b["kernel"] for b in epilogue],
        "epilogue_dilations": [b["dilation"] for b in epilogue],
        "separable": separable,
        "residual": True,
        "dense_residual": dense,
        "dropout": dropout,
        "init_mode": init_mode,
    }


def _parse(path: str | os.PathLike, config: dict) -> dict:
    """The plugin config (and import notes) for a parsed ``model_config.yaml``."""
    path = Path(path)
    check = _Checker(path)
    notes: list[str] = []
    # As NeMo: convert the 2020 layout first, interpolations resolve afterwards.
    upgraded = upgrade_config(config)
    if upgraded != config:
        notes.append(
            "the config is in NeMo's 2020 layout (cls + params); converted as "
            "NeMo's maybe_update_config_version does (cls -> _target_, params "
            "merged into their section)."
        )
    config = _resolve_interpolations(upgraded, upgraded)
    target = config.get("target") or ""
    if target and _class_name(target) != "EncDecCTCModel":
        raise check.fail(
            "target",
            f"{target!r} is not a character CTC model (EncDecCTCModel). {_SUPPORTED}.",
        )
    encoder_config = _encoder_config(config, check, notes)
    features = _features(config, check, notes)
    labels = _labels(config, check)
    if encoder_config["input_size"] != features["n_mels"]:
        raise check.fail(
            "encoder.feat_in",
            f"{encoder_config['input_size']} differs from preprocessor.features "
            f"{features['n_mels']}.",
        )
    decoder = config.get("decoder") or {}
    if _class_name(decoder.get("_target_")) not in SUPPORTED_DECODERS:
        raise check.fail(
            "decoder._target_",
            f"{decoder.get('_target_')!r} is not supported. {_SUPPORTED}.",
        )
    if not decoder.get("add_blank", True):
        raise check.fail("decoder.add_blank", "false (no blank row) is not supported.")
    output_size = encoder_config["epilogue_channels"][-1]
    feat_in = decoder.get("feat_in", output_size)
    if feat_in != output_size:
        raise check.fail(
            "decoder.feat_in",
            f"{feat_in} differs from the last encoder block's filters {output_size}.",
        )
    return {
        "format": "xlt_plugin/ctc-1",
        "encoder_class": ENCODER_CLASS,
        "encoder_config": encoder_config,
        "encoder_output_size": output_size,
        "features": features,
        "normalize": {"norm_type": "sentence"},
        "n_tokens": len(labels) + 1,
        # NeMo's row order: the labels, then the blank.
        "blank_index": len(labels),
        "tokens": labels + [BLANK],
        "metadata": {
            "source": "nemo",
            "nemo_file": path.name,
            "nemo_version": config.get("nemo_version"),
            "nemo_target": target or None,
            "nemo_preprocessor": config.get("preprocessor"),
            "notes": notes,
            "end_to_end_tolerance": END_TO_END_TOLERANCE,
        },
    }


def read_nemo_config(path: str | os.PathLike) -> dict:
    """Read a ``.nemo`` file's model config as a plugin ``config.json`` dict.

    Arguments
    ---------
    path : str or path-like
        The ``.nemo`` archive of a character ``EncDecCTCModel`` with a
        ``ConvASREncoder``.

    Returns
    -------
    dict
        ``encoder_class``, ``encoder_config`` (``QuartzNet`` keyword arguments),
        ``encoder_output_size``, ``features`` (``kind: "nemo"`` and
        :class:`NeMoFeaturizer` keyword arguments, NeMo's ``normalize``
        included), ``normalize`` (``{"norm_type": "sentence"}``, the layout's
        field; not applied after a featurizer that normalises itself),
        ``n_tokens``, ``blank_index`` (``len(labels)``: NeMo's blank is the last
        row), ``tokens`` (NeMo's labels, space as ``" "``, then ``"<blank>"``)
        and ``metadata`` (the NeMo version, the original preprocessor settings,
        import notes, :data:`END_TO_END_TOLERANCE`).

    Raises
    ------
    NeMoImportError
        The file is not a tar, lacks a member, or holds a model the plugin cannot
        express; the message names the file, the key and the supported models.

    Example
    -------
    >>> fixture = Path(__file__).parents[1] / "tests/fixtures/nemo"
    >>> config = read_nemo_config(fixture / "quartznet_tiny.nemo")
    >>> config["encoder_config"]["block_repeats"], config["encoder_config"]["repeats"]
    (2, 2)
    >>> config["tokens"][:3], config["blank_index"], config["n_tokens"]
    ([' ', 'a', 'b'], 28, 29)
    >>> config["features"]["kind"], config["features"]["n_mels"]
    ('nemo', 64)
    """
    raw = _read_members(path, (CONFIG_MEMBER,))[CONFIG_MEMBER]
    return _parse(path, _read_yaml(Path(path), raw))


# --------------------------------------------------------------------------- #
# Weights
# --------------------------------------------------------------------------- #


def _map_key(key: str, n_blocks: int) -> tuple[str, str] | None:
    """(part, plugin key) of a NeMo key, or None when it has no counterpart."""
    if key.startswith("encoder.encoder."):
        index, _, rest = key[len("encoder.encoder.") :].partition(".")
        if not index.isdigit() or not rest:
            return None
        i = int(index)
        if i == 0:
            return "encoder", f"prologue.{rest}"
        if i <= n_blocks:
            return "encoder", f"blocks.{i - 1}.{rest}"
        return "encoder", f"epilogue.{i - 1 - n_blocks}.{rest}"
    if key == "decoder.decoder_layers.0.weight":
        return "head", "w.weight"
    if key == "decoder.decoder_layers.0.bias":
        return "head", "w.bias"
    return None


def load_nemo_state(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Load a ``.nemo`` file's weights as plugin state dicts.

    Every checkpoint key is used exactly once: the encoder's go to
    ``QuartzNet(**config["encoder_config"])`` (``encoder.encoder.0`` -> prologue,
    ``encoder.encoder.i`` -> ``blocks.{i-1}``, the rest -> ``epilogue``), the
    decoder's 1x1 conv becomes the head's ``w.weight``/``w.bias`` (NeMo's row
    order, blank last), and the preprocessor's window and mel filterbank are
    checked against :class:`NeMoFeaturizer`'s. A key left over, a key the encoder
    lacks, or a shape that differs is an error naming it.

    Arguments
    ---------
    path : str or path-like
        The ``.nemo`` archive.

    Returns
    -------
    dict
        ``{"encoder": state_dict, "head": state_dict}``; the head's fits
        ``speechbrain.nnet.linear.Linear(input_size=C, n_neurons=len(labels) + 1)``.

    Example
    -------
    >>> from speechbrain.nnet.linear import Linear
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> fixtures = Path(__file__).parents[1] / "tests/fixtures/nemo"
    >>> nemo_file = fixtures / "quartznet_tiny.nemo"
    >>> config = read_nemo_config(nemo_file)
    >>> state = load_nemo_state(nemo_file)
    >>> QuartzNet(**config["encoder_config"]).load_state_dict(state["encoder"])
    <All keys matched successfully>
    >>> head = Linear(input_size=config["encoder_output_size"], n_neurons=29)
    >>> head.load_state_dict(state["head"])
    <All keys matched successfully>
    """
    path = Path(path)
    members = _read_members(path, (CONFIG_MEMBER, WEIGHTS_MEMBER))
    config = _parse(path, _read_yaml(path, members[CONFIG_MEMBER]))
    try:
        weights = torch.load(
            io.BytesIO(members[WEIGHTS_MEMBER]), map_location="cpu", weights_only=True
        )
    except Exception as err:  # pickle/zip errors of all kinds: say which file
        raise NeMoImportError(
            f"{path}: {WEIGHTS_MEMBER} cannot be read as a torch state dict ({err}); "
            "the archive is damaged or not a NeMo checkpoint."
        ) from err
    if not isinstance(weights, dict):
        raise NeMoImportError(
            f"{path}: {WEIGHTS_MEMBER} holds {type(weights).__name__}, not a state "
            "dict."
        )
    enc_cfg = config["encoder_config"]
    n_blocks = len(enc_cfg["channels"]) * enc_cfg["block_repeats"]
    expected = {
        "encoder": _expected_encoder_shapes(enc_cfg),
        "head": {
            "w.weight": (config["n_tokens"], config["encoder_output_size"]),
            "w.bias": (config["n_tokens"],),
        },
    }
    state: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "head": {}}
    leftover = []
    for key, tensor in weights.items():
        if key.startswith("preprocessor.featurizer."):
            _check_preprocessor_buffer(path, key, tensor, config["features"])
            continue
        mapped = _map_key(key, n_blocks)
        if mapped is None or mapped[1] not in expected[mapped[0]]:
            leftover.append(key)
            continue
        part, name = mapped
        if part == "head" and name == "w.weight":
            if tensor.dim() != 3 or tensor.shape[-1] != 1:
                raise NeMoImportError(
                    f"{path}: {key} has shape {tuple(tensor.shape)}; a ConvASRDecoder "
                    "weight is [tokens, channels, 1]."
                )
            tensor = tensor[..., 0]
        if tuple(tensor.shape) != expected[part][name]:
            raise NeMoImportError(
                f"{path}: {WEIGHTS_MEMBER} key {key} has shape {tuple(tensor.shape)} "
                f"but the {part} built from {CONFIG_MEMBER} expects "
                f"{expected[part][name]} for {name}; config and weights disagree."
            )
        state[part][name] = tensor.clone()
    if leftover:
        raise NeMoImportError(
            f"{path}: {WEIGHTS_MEMBER} holds {len(leftover)} key(s) the imported model "
            f"has no place for: {', '.join(leftover[:8])}"
            f"{' ...' if len(leftover) > 8 else ''} (adapters or modules the plugin "
            "does not support?)."
        )
    for part, shapes in expected.items():
        missing = [k for k in shapes if k not in state[part]]
        if missing:
            raise NeMoImportError(
                f"{path}: {WEIGHTS_MEMBER} lacks {len(missing)} weight(s) of the "
                f"{part}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}."
            )
    return state


def _expected_encoder_shapes(encoder_config: dict) -> dict[str, tuple]:
    """State-dict shapes of ``QuartzNet(**encoder_config)``, without allocating it."""
    from xlt_plugin.lobes.quartznet import QuartzNet

    with torch.device("meta"):
        encoder = QuartzNet(**encoder_config)
    return {k: tuple(v.shape) for k, v in encoder.state_dict().items()}


def _check_preprocessor_buffer(
    path: Path, key: str, tensor: torch.Tensor, features: dict
) -> None:
    """The checkpoint's window/filterbank must be what NeMoFeaturizer computes."""
    featurizer = NeMoFeaturizer(**{k: v for k, v in features.items() if k != "kind"})
    ours = {
        "preprocessor.featurizer.window": featurizer.window,
        "preprocessor.featurizer.fb": featurizer.fb.unsqueeze(0),
    }.get(key)
    if ours is None:
        raise NeMoImportError(
            f"{path}: {WEIGHTS_MEMBER} key {key} is a preprocessor state "
            "NeMoFeaturizer does not know; the preprocessor is not NeMo 3.0.0's "
            "mel spectrogram."
        )
    if tuple(tensor.shape) != tuple(ours.shape) or not torch.allclose(
        tensor.float(), ours, rtol=1e-4, atol=1e-7
    ):
        diff = (
            (tensor.float() - ours).abs().max().item()
            if tensor.shape == ours.shape
            else f"shape {tuple(tensor.shape)} vs {tuple(ours.shape)}"
        )
        raise NeMoImportError(
            f"{path}: the stored {key} differs from the one NeMoFeaturizer computes "
            f"for the config's preprocessor settings ({diff}); the features would "
            "not match NeMo's."
        )


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def nemo_load_report(path: str | os.PathLike) -> str:
    """A human-readable account of importing ``path``, with the known differences.

    Reads the file (config and weights, so every check of :func:`load_nemo_state`
    runs) and says what the encoder, head, tokens and features became, the import
    notes, and how close the imported model is to NeMo end to end: the bound the
    tests measure against NeMo's own outputs (:data:`END_TO_END_TOLERANCE`).

    Arguments
    ---------
    path : str or path-like
        The ``.nemo`` archive.

    Returns
    -------
    str
        The report, several lines.

    Example
    -------
    >>> fixtures = Path(__file__).parents[1] / "tests/fixtures/nemo"
    >>> nemo_file = fixtures / "quartznet_tiny.nemo"
    >>> print(nemo_load_report(nemo_file).splitlines()[0])
    NeMo import of quartznet_tiny.nemo (NeMo 3.0.0, EncDecCTCModel)
    """
    config = read_nemo_config(path)
    state = load_nemo_state(path)
    enc = config["encoder_config"]
    feats = config["features"]
    meta = config["metadata"]
    n_params = sum(
        t.numel() for t in state["encoder"].values() if t.is_floating_point()
    )
    kind = "QuartzNet (separable)" if enc["separable"] else "Jasper (dense)"
    if enc["dense_residual"]:
        kind += ", dense residual"
    blocks = len(enc["channels"]) * enc["block_repeats"]
    lines = [
        f"NeMo import of {Path(path).name} (NeMo {meta['nemo_version'] or '?'}, "
        f"{_class_name(meta['nemo_target']) or 'EncDecCTCModel'})",
        f"encoder: {kind}: prologue + {blocks} B-blocks ({len(enc['channels'])} "
        f"distinct, each x{enc['block_repeats']}) of R{enc['repeats']} + "
        f"{len(enc['epilogue_channels'])} closing blocks; output "
        f"{config['encoder_output_size']} channels; {len(state['encoder'])} tensors, "
        f"{n_params} values, every checkpoint key used once",
        f"head: Linear {config['encoder_output_size']} -> {config['n_tokens']} rows "
        f"in NeMo's order: {config['n_tokens'] - 1} labels, then the blank "
        f"(blank_index={config['blank_index']})",
        "features: NeMoFeaturizer: "
        f"{feats['n_mels']} mels, {feats['sample_rate']} Hz, window {feats['window']} "
        f"{feats['win_length']:g} ms, hop {feats['hop_length']:g} ms, n_fft "
        f"{feats['n_fft']}, preemph {feats['preemph']}, log guard "
        f"{feats['log_zero_guard_type']} {feats['log_zero_guard_value']}; window "
        "and filterbank equal the checkpoint's",
        f"normalisation: NeMo's {feats['normalize']} (unbiased std + 1e-5 over "
        "each utterance's valid frames, padding 0), inside NeMoFeaturizer; no "
        "InputNormalization after it; the batch's lengths reach the featurizer",
        f"vs NeMo {NEMO_VERSION}: CTC log-probabilities from the waveform within "
        f"{END_TO_END_TOLERANCE:g} (max abs, valid frames), one clip at a time and "
        "in a padded batch: the bound the tests measure against NeMo's own outputs "
        "of a trained QuartzNet",
    ]
    lines += [f"note: {note}" for note in meta["notes"]]
    return "\n".join(lines)
