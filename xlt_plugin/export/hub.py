"""Export a recipe run as a SpeechBrain ``EncoderASR`` folder with a model card.

``export_run(RUN, OUT)`` (``xlt export --checkpoint RUN --out OUT``) takes a
recipe's output folder, picks its best checkpoint (lowest valid CER in
SpeechBrain's ``Checkpointer`` meta, :func:`xlt_plugin.runs.find_best_checkpoint`),
and writes ``OUT`` in the hub layout of :mod:`xlt_plugin.pretrained`:
SpeechBrain's ``EncoderASR.from_hparams(source=OUT)`` loads it unchanged, and it
is a valid ``pretrained_path`` for the next transfer (English -> Spanish ->
Catalan). A run in SpeechBrain's debug mode keeps no checkpoint (they go to a
temporary folder); its ``model/`` folder, which every recipe writes at its end, is
exported then.

Next to the weights it writes ``OUT/README.md``, a HuggingFace model card
(:mod:`xlt_plugin.export.card`).

Facts come from the run folder only (read through :mod:`xlt_plugin.runs`):
``hyperparams.yaml`` (the YAML as run), ``metrics.jsonl``, ``remap_report.json``,
``save/`` and ``model/config.json``; whether the audio was synthetic comes from
the data folder's ``xlt synth`` marker.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import yaml

from xlt_plugin.export.card import dataset_entry, model_card
from xlt_plugin.runs import (
    BEST_KEY,
    HOW_TO_RUN,
    NoCheckpointError,
    RunFolderError,
    model_dir,
    read_json,
    read_metrics,
    read_remap_report,
    run_folder_of,
    scored_tests,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ExportError",
    "detect_synthetic",
    "export_run",
    "find_best_checkpoint",
    "read_run",
]

CARD_FILE = "README.md"
LM_FILE = "lm.arpa"


class ExportError(ValueError):
    """A run folder that cannot be exported; the message says what to do."""


class _NoCheckpoint(ExportError):
    """The run saved no checkpoint at all."""


# ------------------------------------------------------------- the run folder
class _AnyTagLoader(yaml.SafeLoader):
    """Reads SpeechBrain YAML without building objects: tags become strings."""


def _tag_as_text(loader, suffix, node):
    return f"!{suffix}"


_AnyTagLoader.add_multi_constructor("!", _tag_as_text)


def _read_yaml_values(path: Path) -> dict:
    """Plain values of a run's ``hyperparams.yaml`` (``!`` objects as tag text)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
    except yaml.YAMLError as err:
        raise ExportError(f"{path} is not valid YAML: {err}") from None
    return data if isinstance(data, dict) else {}


def find_best_checkpoint(run_dir: str | os.PathLike, min_key: str = BEST_KEY):
    """:func:`xlt_plugin.runs.find_best_checkpoint`, failing with an ExportError."""
    from xlt_plugin import runs

    try:
        return runs.find_best_checkpoint(run_dir, min_key=min_key)
    except NoCheckpointError as err:
        raise _NoCheckpoint(str(err)) from None
    except RunFolderError as err:
        raise ExportError(str(err)) from None


def read_run(run_dir: str | os.PathLike) -> dict:
    """Everything the export and the card need from a run folder.

    Arguments
    ---------
    run_dir : path
        A recipe's output folder.

    Returns
    -------
    dict
        ``run_dir``, ``hparams`` (plain values of ``hyperparams.yaml``),
        ``config`` (``model/config.json`` or None), ``metrics`` (records),
        ``prep_report``, ``remap_report`` (or None each).

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> _ = (run / "hyperparams.yaml").write_text(
    ...     "language: es\\nencoder: !new:x.Y\\n    size: 3\\n")
    >>> facts = read_run(run)
    >>> facts["hparams"], facts["metrics"], facts["config"]
    ({'language': 'es', 'encoder': '!new:x.Y'}, [], None)
    """
    from xlt_plugin.pretrained import CONFIG_FILE

    run_dir = run_folder_of(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} does not exist. " + HOW_TO_RUN)
    hparams_file = run_dir / "hyperparams.yaml"
    if not hparams_file.is_file():
        raise ExportError(f"{hparams_file} is missing. " + HOW_TO_RUN)
    hparams = _read_yaml_values(hparams_file)
    try:
        return {
            "run_dir": run_dir,
            "hparams": hparams,
            "config": read_json(model_dir(run_dir) / CONFIG_FILE),
            "metrics": read_metrics(run_dir),
            "prep_report": read_json(run_dir / "save" / "prep_report.json"),
            "remap_report": read_remap_report(run_dir),
        }
    except RunFolderError as err:
        raise ExportError(str(err)) from None


# ------------------------------------------------------------------ the model
def _architecture(run: dict) -> tuple:
    """The run's encoder (random weights), feature settings and norm type.

    From ``model/config.json`` through :func:`xlt_plugin.pretrained.build_encoder`;
    without it (the run was stopped before its end), the YAML's own encoder.
    """
    from xlt_plugin.pretrained import FEATURE_KEYS, build_encoder

    config = run["config"]
    if config is not None:
        encoder = build_encoder(model_dir(run["run_dir"]))
        return encoder, dict(config["features"]), config["normalize"]["norm_type"]
    from hyperpyyaml import load_hyperpyyaml

    path = run["run_dir"] / "hyperparams.yaml"
    try:
        hparams = load_hyperpyyaml(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise ExportError(
            f"{run['run_dir']}/model/config.json is missing and {path} cannot be "
            f"loaded to rebuild the architecture ({err})"
        ) from err
    normalize = hparams.get("normalize")
    return (
        hparams["encoder"],
        {k: hparams[k] for k in FEATURE_KEYS if k in hparams},
        getattr(normalize, "norm_type", "sentence"),
    )


def _parts_from_checkpoint(run: dict, checkpoint) -> tuple:
    """Encoder, head, normaliser, tokenizer and features of one ``CKPT+*`` folder.

    The weights are loaded by SpeechBrain's ``Checkpointer``, as the recipe's own
    test step loads them.
    """
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.nnet.linear import Linear
    from speechbrain.processing.features import InputNormalization
    from speechbrain.utils.checkpoints import Checkpointer

    encoder, features, norm_type = _architecture(run)
    tokenizer = CTCTextEncoder()
    tokens_file = run["run_dir"] / "save" / "tokenizer.ckpt"
    if not tokens_file.is_file():
        raise ExportError(f"{tokens_file} is missing: the run's token list is gone")
    tokenizer.load(tokens_file)
    tokenizer.ignore_len()  # the head's rows are checked when its weights load
    head = Linear(input_size=encoder.output_size, n_neurons=len(tokenizer))
    normalize = InputNormalization(norm_type=norm_type)
    loader = Checkpointer(
        checkpoint.path.parent, recoverables={"encoder": encoder, "head": head}
    )
    loader.add_recoverable("normalize", normalize, optional_load=True)
    missing = [n for n in ("encoder", "head") if n not in checkpoint.paramfiles]
    if missing:
        raise ExportError(
            f"{checkpoint.path} has no {', '.join(missing)}.ckpt: an incomplete "
            "checkpoint"
        )
    try:
        loader.load_checkpoint(checkpoint)
    except RuntimeError as err:
        raise ExportError(
            f"{checkpoint.path} does not fit the architecture of {run['run_dir']} "
            f"(model/config.json or hyperparams.yaml) with the {len(tokenizer)} "
            f"tokens of {tokens_file} (from different runs?): {err}"
        ) from None
    return encoder, head, normalize, tokenizer, features


def _parts_from_model_dir(folder: Path) -> tuple:
    """Encoder, head, normaliser, tokenizer and features of a hub-layout folder."""
    from speechbrain.dataio.encoder import CTCTextEncoder

    from xlt_plugin.pretrained import TOKENS_FILE, load_pretrained

    model = load_pretrained(folder)
    tokenizer = CTCTextEncoder()
    tokenizer.load(folder / TOKENS_FILE)
    tokenizer.ignore_len()  # load_pretrained checked it against the head
    features = dict(model.config["features"])
    return model.encoder, model.head, model.normalize, tokenizer, features


# ------------------------------------------------------------ synthetic data
def detect_synthetic(data_folder: str | os.PathLike | None) -> bool | None:
    """Whether a Common Voice-layout folder was written by ``xlt synth``.

    ``xlt synth`` writes a marker file beside the tsv files
    (:data:`xlt_plugin.data.commonvoice.SYNTH_MARKER`), saying the corpus is
    synthetic and how it was made; a folder without it is taken to be recorded
    speech (give ``xlt export --data-origin synthetic`` for a synthetic corpus
    made before the marker existed).

    Arguments
    ---------
    data_folder : path or None
        The recipe's ``data_folder``.

    Returns
    -------
    bool or None
        True: synthetic; False: no sign of synthesis; None: cannot tell (the
        folder or its tsv files are gone).

    Example
    -------
    >>> detect_synthetic(getfixture("tmp_path") / "deleted-corpus") is None
    True
    """
    from xlt_plugin.data.commonvoice import SYNTH_MARKER

    if not data_folder:
        return None
    folder = Path(data_folder)
    tsvs = [folder / f"{s}.tsv" for s in ("train", "validated", "dev", "test")]
    if not folder.is_dir() or not any(t.is_file() for t in tsvs):
        return None
    try:
        marker = read_json(folder / SYNTH_MARKER)
    except RunFolderError:  # a damaged marker is still the synthesizer's
        return True
    return bool(marker and marker.get("synthetic", True))


# ------------------------------------------------------------------- export
def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    min_key: str = BEST_KEY,
    name: str | None = None,
    synthetic: bool | None = None,
) -> Path:
    """Export a run's best checkpoint in hub layout, with a model card.

    Arguments
    ---------
    run_dir : path
        A recipe's output folder (or one of its ``save/CKPT+*`` folders).
    out_dir : path
        The folder to write (replaced if it exists).
    min_key : str
        Checkpoint meta key to minimise (the recipes save ``CER``).
    name : str, optional
        Model name for the card; default from encoder, language and base.
    synthetic : bool, optional
        Whether the data is synthetic; detected when None.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from xlt_plugin.pretrained import read_config, save_pretrained

    run = read_run(run_dir)
    hp = run["hparams"]
    try:
        checkpoint = find_best_checkpoint(run_dir, min_key=min_key)
    except _NoCheckpoint:
        if run["config"] is None:
            raise
        # SpeechBrain's debug mode keeps checkpoints in a temporary folder: the
        # model the recipe wrote at its end is all there is.
        checkpoint = None
    if checkpoint is None:
        folder = model_dir(run["run_dir"])
        logger.warning("%s has no checkpoint; exporting %s", run_dir, folder)
        encoder, head, normalize, tokenizer, features = _parts_from_model_dir(folder)
        ckpt_facts = {"name": "none saved (debug run?): the run's model/", "meta": {}}
    else:
        encoder, head, normalize, tokenizer, features = _parts_from_checkpoint(
            run, checkpoint
        )
        ckpt_facts = {"name": checkpoint.path.name, "meta": dict(checkpoint.meta)}

    locale = str(
        hp.get("language")
        or (run["config"] or {}).get("metadata", {}).get("language", "und")
    )
    data_folder = hp.get("data_folder")
    if run["prep_report"]:
        data_folder = data_folder or run["prep_report"]["options"].get("data_folder")
    if synthetic is None:
        synthetic = detect_synthetic(data_folder)
    pretrained_path = hp.get("pretrained_path") or None
    if isinstance(pretrained_path, str) and pretrained_path.startswith("!"):
        pretrained_path = None
    base_config = None
    if pretrained_path:
        try:
            base_config = read_config(pretrained_path)
        except (OSError, ValueError, KeyError):
            base_config = None
    results = scored_tests(run["metrics"])
    lm_rows = [r for r in results if r.get("lm") and Path(str(r["lm"])).is_file()]
    encoder_name = type(encoder).__name__
    facts = {
        "hparams": hp,
        "locale": locale,
        "data_folder": data_folder,
        "synthetic": synthetic,
        "dataset": dataset_entry(locale, data_folder, synthetic),
        "pretrained_path": pretrained_path,
        "base_config": base_config,
        "remap_strategy": hp.get("remap_strategy"),
        "remap_report": run["remap_report"],
        "prep_report": run["prep_report"],
        "results": results,
        "metrics": run["metrics"],
        "checkpoint": ckpt_facts,
        "encoder_name": encoder_name,
        "n_params": sum(p.numel() for p in encoder.parameters())
        + sum(p.numel() for p in head.parameters()),
        "n_tokens": len(tokenizer),
        "lm_file": lm_rows[-1]["lm"] if lm_rows else None,
        "lm_name": LM_FILE if lm_rows else None,
    }
    if name is None:
        name = f"{encoder_name.lower()}-ctc-{locale}"
        if base_config:
            base_language = base_config.get("metadata", {}).get("language")
            name += (
                "-adapted"
                if base_language == locale
                else f"-from-{base_language or 'base'}"
            )
    metadata = dict((run["config"] or {}).get("metadata", {}))
    metadata.update(
        {
            "name": name,
            "language": locale,
            "pretrained_path": str(pretrained_path or ""),
            "remap_strategy": hp.get("remap_strategy"),
            "synthetic_data": synthetic,
            "exported_from": str(run["run_dir"]),
            "checkpoint": facts["checkpoint"],
            "test": {
                r["test_set"]: {"CER": r.get("CER"), "WER": r.get("WER")}
                for r in results
                if not r["zero_shot"] and r["decoder"] == "greedy"
            },
        }
    )
    out = save_pretrained(
        out_dir,
        encoder=encoder,
        head=head,
        tokenizer=tokenizer,
        features=features,
        normalize=normalize,
        metadata=metadata,
    )
    if facts["lm_file"]:
        shutil.copyfile(facts["lm_file"], out / LM_FILE)
    (out / CARD_FILE).write_text(model_card(facts, name, str(out_dir)), "utf-8")
    logger.info("Exported %s (%s) to %s", run["run_dir"], ckpt_facts["name"], out)
    return out
