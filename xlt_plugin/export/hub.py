"""Export a recipe run as a SpeechBrain ``EncoderASR`` folder with a model card.

``export_run(RUN, OUT)`` (``xlt export --checkpoint RUN --out OUT``) takes a
recipe's output folder, picks its best checkpoint (lowest valid CER in
SpeechBrain's ``Checkpointer`` meta), and writes ``OUT`` in the hub layout of
:mod:`xlt_plugin.pretrained`: SpeechBrain's
``EncoderASR.from_hparams(source=OUT)`` loads it unchanged, and it is a valid
``pretrained_path`` for the next transfer (English -> Spanish -> Catalan). A run
in SpeechBrain's debug mode keeps no checkpoint (they go to a temporary folder);
its ``model/`` folder, which every recipe writes at its end, is exported then.

Next to the weights it writes ``OUT/README.md``, a HuggingFace model card: YAML
front matter (``language``, ``license``, ``library_name``, ``tags``,
``datasets``, ``metrics`` and a ``model-index`` with the test WER/CER of
``metrics.jsonl``), then the base model, the token remap, the freezing schedule,
the training data (from ``save/prep_report.json``), a results table (zero-shot,
fine-tuned, and beam search + LM when the recipe ran it), limitations (synthetic
speech is detected, see :func:`detect_synthetic`) and three lines of usage.

Facts come from the run folder only: ``hyperparams.yaml`` (the YAML as run),
``metrics.jsonl``, ``remap_report.json``, ``save/`` and ``model/config.json``.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

__all__ = [
    "ExportError",
    "collect_test_results",
    "detect_synthetic",
    "export_run",
    "find_best_checkpoint",
    "hf_language",
    "model_card",
    "read_run",
]

CARD_FILE = "README.md"
LM_FILE = "lm.arpa"
_HOW_TO_RUN = (
    "Give the output folder of a recipe run (it holds hyperparams.yaml, "
    "metrics.jsonl and save/CKPT+*), e.g. results/CommonVoice/es_xfer/1234."
)
#: Common Voice locales whose HuggingFace language code is not their prefix.
_HF_LANGUAGES = {"zh-HK": "yue", "zh-CN": "zh", "zh-TW": "zh", "yue": "yue"}


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


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ExportError(
            f"{path} is not valid JSON ({err}); re-run the recipe"
        ) from None


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ExportError(
                f"{path}:{number} is not a JSON line; fix or delete that line"
            ) from None
    return records


def find_best_checkpoint(run_dir: str | os.PathLike, min_key: str = "CER"):
    """The run's checkpoint with the lowest ``min_key`` in its meta.

    Uses SpeechBrain's ``Checkpointer`` over ``<run_dir>/save`` (the folders
    ``CKPT+*`` with their ``CKPT.yaml``), as the recipe's own test step does.

    Arguments
    ---------
    run_dir : path
        A recipe's output folder, or one ``CKPT+*`` folder (then that one).
    min_key : str
        The meta key to minimise.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        ``path``, ``meta`` and ``paramfiles``.

    Example
    -------
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> run = getfixture("tmp_path")
    >>> saver = Checkpointer(run / "save")
    >>> _ = saver.save_checkpoint(meta={"CER": 30.0}, name="a")
    >>> _ = saver.save_checkpoint(meta={"CER": 20.0}, name="b")
    >>> _ = saver.save_checkpoint(meta={"CER": 25.0}, name="c")
    >>> find_best_checkpoint(run).path.name
    'CKPT+b'
    """
    from speechbrain.utils.checkpoints import Checkpointer

    run_dir = Path(run_dir)
    if (run_dir / "CKPT.yaml").is_file():  # a checkpoint folder itself
        save, only = run_dir.parent, run_dir.name
    else:
        save, only = run_dir / "save", None
    if not save.is_dir():
        raise ExportError(
            f"{save} does not exist: {run_dir} is not a run folder. " + _HOW_TO_RUN
        )
    checkpointer = Checkpointer(save)
    found = checkpointer.list_checkpoints()
    if only is not None:
        found = [c for c in found if c.path.name == only]
        if not found:
            raise ExportError(f"{run_dir}/CKPT.yaml could not be read as a checkpoint")
        return found[0]
    if not found:
        raise _NoCheckpoint(
            f"{save} holds no checkpoint (CKPT+*/CKPT.yaml): the run stopped before "
            "its first validation. Train at least one epoch, then export."
        )
    with_key = [c for c in found if c.meta.get(min_key) is not None]
    if not with_key:
        keys = sorted({k for c in found for k in c.meta})
        raise ExportError(
            f"no checkpoint in {save} has {min_key!r} in its meta (they have "
            f"{keys}); choose one of those with --min-key"
        )
    return checkpointer.find_checkpoint(min_key=min_key)


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
    run_dir = Path(run_dir)
    if (run_dir / "CKPT.yaml").is_file():
        run_dir = run_dir.parent.parent
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} does not exist. " + _HOW_TO_RUN)
    hparams_file = run_dir / "hyperparams.yaml"
    if not hparams_file.is_file():
        raise ExportError(f"{hparams_file} is missing. " + _HOW_TO_RUN)
    return {
        "run_dir": run_dir,
        "hparams": _read_yaml_values(hparams_file),
        "config": _read_json(run_dir / "model" / "config.json"),
        "metrics": _read_metrics(run_dir / "metrics.jsonl"),
        "prep_report": _read_json(run_dir / "save" / "prep_report.json"),
        "remap_report": _read_json(run_dir / "remap_report.json"),
    }


def _architecture(run: dict) -> dict:
    """Encoder class/config, features and normalisation of the run's model."""
    config = run["config"]
    if config is not None:
        return {
            "encoder_class": config["encoder_class"],
            "encoder_config": config["encoder_config"],
            "features": dict(config["features"]),
            "norm_type": config["normalize"]["norm_type"],
        }
    # No model/ (the run was stopped before its end): build from the YAML.
    from hyperpyyaml import load_hyperpyyaml

    path = run["run_dir"] / "hyperparams.yaml"
    try:
        hparams = load_hyperpyyaml(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise ExportError(
            f"{run['run_dir']}/model/config.json is missing and {path} cannot be "
            f"loaded to rebuild the architecture ({err})"
        ) from err
    from xlt_plugin.pretrained import FEATURE_KEYS

    encoder = hparams["encoder"]
    normalize = hparams.get("normalize")
    return {
        "encoder_class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "encoder_config": dict(encoder.config),
        "features": {k: hparams[k] for k in FEATURE_KEYS if k in hparams},
        "norm_type": getattr(normalize, "norm_type", "sentence"),
    }


# ------------------------------------------------------------ synthetic data
def _synthetic_client_ids(locale: str, accent: str, gender: str) -> set[str]:
    """Every client id ``xlt synth`` can give a speaker of this locale/accent/gender.

    A synthetic speaker's id is a hash of its espeak-ng parameters
    (``xlt_plugin.synth.corpus.Speaker``); the ranges below are those the
    synthesiser draws from (rate 140-200 wpm by 5, pitch by 2, range by 5, word
    gap 0-2).
    """
    from xlt_plugin.synth import corpus as synth
    from xlt_plugin.synth.texts import LANGUAGES

    voices = [
        a.voice for a in synth.ACCENTS.get(locale, {}).values() if a.label == accent
    ]
    if not voices and locale in LANGUAGES:
        voices = [LANGUAGES[locale].voice]
    female = gender.startswith("female")
    variants = (
        ("f1", "f2", "f3", "f4") if female else tuple(f"m{i}" for i in range(1, 8))
    )
    pitches = range(40, 72, 2) if female else range(20, 62, 2)
    ids = set()
    for voice in voices:
        for variant in variants:
            for rate in range(140, 205, 5):
                for pitch in pitches:
                    for pitch_range in range(30, 85, 5):
                        for gap in range(3):
                            speaker = synth.Speaker(
                                locale, voice, variant, rate, pitch, pitch_range, gap
                            )
                            ids.add(speaker.client_id)
    return ids


def detect_synthetic(data_folder: str | os.PathLike | None) -> bool | None:
    """Whether a Common Voice-layout folder was written by ``xlt synth``.

    ``xlt synth`` writes a marker file (``xlt_synth.json``); corpora from before
    the marker are recognised as ``xlt synth`` always wrote them:
    ``clip_durations.tsv`` and, as client id, the hash of each speaker's voice
    parameters (checked on up to three speakers). Real Common Voice client ids are
    hashes of nothing a synthesiser can reproduce. A corpus synthesised with
    a custom ``--voice`` is not recognised (its voice is not in the tables).

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
    if not data_folder:
        return None
    folder = Path(data_folder)
    tsvs = [folder / f"{s}.tsv" for s in ("train", "validated", "dev", "test")]
    tsvs = [t for t in tsvs if t.is_file()]
    if not folder.is_dir() or not tsvs:
        return None
    if (folder / "xlt_synth.json").is_file():
        return True
    if not (folder / "clip_durations.tsv").is_file():
        return False
    speakers = {}
    with tsvs[0].open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            key = row.get("client_id", "")
            if key and key not in speakers:
                speakers[key] = (
                    row.get("locale", ""),
                    row.get("accents", ""),
                    row.get("gender", ""),
                )
            if len(speakers) >= 3:
                break
    cache: dict[tuple, set] = {}
    for client_id, (locale, accent, gender) in speakers.items():
        key = (locale, accent, gender.startswith("female"))
        if key not in cache:
            cache[key] = _synthetic_client_ids(locale, accent, gender)
        if client_id in cache[key]:
            return True
    return False


# ------------------------------------------------------------------ results
def collect_test_results(records: list[dict]) -> list[dict]:
    """The last test line per (test set, zero-shot, decoder), in first-seen order.

    Arguments
    ---------
    records : list of dict
        ``metrics.jsonl`` lines.

    Returns
    -------
    list of dict
        Each with ``test_set``, ``zero_shot``, ``decoder`` (``greedy`` when the
        line has none), ``CER``, ``WER`` and the line's other fields.

    Example
    -------
    >>> lines = [
    ...     {"stage": "test", "test_set": "test", "zero_shot": True, "CER": 80.0},
    ...     {"stage": "valid", "CER": 50.0},
    ...     {"stage": "test", "test_set": "test", "zero_shot": False, "CER": 40.0},
    ...     {"stage": "test", "test_set": "test", "zero_shot": False, "CER": 30.0},
    ... ]
    >>> [(r["zero_shot"], r["CER"]) for r in collect_test_results(lines)]
    [(True, 80.0), (False, 30.0)]
    """
    found: dict[tuple, dict] = {}
    for record in records:
        if record.get("stage") != "test":
            continue
        row = dict(record)
        row["test_set"] = row.get("test_set") or "test"
        row["zero_shot"] = bool(row.get("zero_shot"))
        row["decoder"] = row.get("decoder") or "greedy"
        found[(row["test_set"], row["zero_shot"], row["decoder"])] = row
    return list(found.values())


def hf_language(locale: str) -> str:
    """HuggingFace language code of a Common Voice locale.

    Arguments
    ---------
    locale : str
        E.g. ``es``, ``zh-HK``.

    Returns
    -------
    str

    Example
    -------
    >>> hf_language("es"), hf_language("zh-HK"), hf_language("pt-BR")
    ('es', 'yue', 'pt')
    """
    return _HF_LANGUAGES.get(locale, locale.split("-")[0].lower())


# ---------------------------------------------------------------- the card
def _percent(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def _dataset(locale: str, data_folder: str, synthetic: bool | None) -> dict:
    if synthetic:
        return {
            "id": "xlt-synth",
            "name": f"Synthetic speech in Common Voice layout (xlt synth, {locale})",
        }
    match = re.search(r"cv-corpus-(\d+)", str(data_folder or ""))
    if match:
        version = match.group(1)
        return {
            "id": f"mozilla-foundation/common_voice_{version}_0",
            "name": f"Common Voice {version}.0 ({locale})",
        }
    return {"id": "common_voice", "name": f"Common Voice layout corpus ({locale})"}


def _decoder_label(row: dict) -> str:
    if row["decoder"] == "greedy":
        return "greedy"
    label = row["decoder"]
    if row.get("beam"):
        label = f"beam {row['beam']}"
        if row.get("lm_order"):
            label += f" + {row['lm_order']}-gram LM"
    return label


def _model_index(name: str, facts: dict) -> list[dict]:
    results = []
    for row in facts["results"]:
        if row["zero_shot"] or row["decoder"] != "greedy":
            continue  # the index reports the exported model as it is, greedy
        metrics = []
        for key in ("WER", "CER"):
            if row.get(key) is not None:
                metrics.append(
                    {
                        "type": key.lower(),
                        "value": _percent(row[key]),
                        "name": f"Test {key} ({row['test_set']}, greedy)",
                    }
                )
        results.append(
            {
                "task": {
                    "type": "automatic-speech-recognition",
                    "name": "Automatic Speech Recognition",
                },
                "dataset": {
                    "name": facts["dataset"]["name"],
                    "type": facts["dataset"]["id"],
                    "config": facts["locale"],
                    "split": row["test_set"],
                },
                "metrics": metrics,
            }
        )
    return [{"name": name, "results": results}] if results else []


def _front_matter(name: str, facts: dict) -> dict:
    tags = ["automatic-speech-recognition", "CTC", "speechbrain", "xlt_plugin"]
    tags.append(facts["encoder_name"])
    if facts["pretrained_path"]:
        tags.append("transfer-learning")
    if facts["synthetic"]:
        tags.append("synthetic-speech")
    front = {
        "language": [hf_language(facts["locale"])],
        "license": "apache-2.0",
        "library_name": "speechbrain",
        "pipeline_tag": "automatic-speech-recognition",
        "tags": tags,
        "datasets": [facts["dataset"]["id"]],
        "metrics": ["wer", "cer"],
    }
    index = _model_index(name, facts)
    if index:
        front["model-index"] = index
    return front


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def _base_section(facts: dict) -> list[str]:
    lines = ["## Base model", ""]
    path = facts["pretrained_path"]
    if not path:
        lines += ["Trained from scratch (the run had no `pretrained_path`).", ""]
        return lines
    base = facts["base_config"]
    text = f"Transferred from `{path}`"
    if base:
        meta = base.get("metadata", {})
        encoder_class = str(base.get("encoder_class", "unknown encoder"))
        text += (
            f" ({encoder_class.rsplit('.', 1)[-1]}, language "
            f"`{meta.get('language', 'unknown')}`, "
            f"{base.get('n_tokens', 'unknown')} output tokens)"
        )
        if meta.get("pretrained_path"):
            text += f", itself transferred from `{meta['pretrained_path']}`"
    else:
        text += " (that folder is no longer readable here, so its details are unknown)"
    lines += [text + ": its encoder weights were copied, its CTC head remapped.", ""]
    report = facts["remap_report"]
    lines += [f"Token remap strategy: `{facts['remap_strategy'] or 'exact'}`.", ""]
    if report:
        by = ", ".join(f"{k} {v}" for k, v in sorted(report["by_strategy"].items()))
        lines += _table(
            [
                "target tokens",
                "blank kept",
                "copied (shared/mapped)",
                "averaged",
                "fresh",
            ],
            [
                [
                    report["n_target"],
                    report["blank"],
                    report["copied"],
                    report["averaged"],
                    report["fresh"],
                ]
            ],
        )
        lines += ["", f"By rule: {by}."]
        if report.get("fresh_tokens"):
            fresh = " ".join(f"`{t}`" for t in report["fresh_tokens"])
            lines += [f"Fresh (randomly initialised) tokens: {fresh}."]
        lines.append("")
    else:
        lines += ["No `remap_report.json` in the run folder.", ""]
    return lines


def _training_section(facts: dict) -> list[str]:
    hp = facts["hparams"]
    lines = ["## Training", ""]
    frozen = hp.get("freeze_patterns") or []
    stages = hp.get("unfreeze_at") or {}
    if not frozen and not stages:
        lines.append("- Freezing: none (every parameter trained from the first epoch).")
    else:
        lines.append(f"- Frozen at the start: {', '.join(f'`{p}`' for p in frozen)}.")
        for epoch, patterns in sorted(stages.items(), key=lambda kv: int(kv[0])):
            names = ", ".join(f"`{p}`" for p in patterns)
            lines.append(f"- Unfrozen at epoch {epoch}: {names}.")
        if hp.get("keep_batchnorm_trainable"):
            lines.append("- BatchNorm layers kept trainable inside frozen parts.")
    for key, label in (
        ("lr", "Peak learning rate"),
        ("lr_decay", "Layer-wise learning-rate decay"),
        ("warmup_ratio", "Warmup ratio"),
        ("number_of_epochs", "Epochs configured"),
        ("batch_size", "Batch size"),
    ):
        if key in hp and not str(hp[key]).startswith("!"):
            lines.append(f"- {label}: {hp[key]}.")
    trained = [r["epoch"] for r in facts["metrics"] if r.get("stage") == "train"]
    if trained:
        lines.append(f"- Epochs trained: {max(trained)}.")
    ckpt = facts["checkpoint"]
    meta = ", ".join(
        f"{k} {round(v, 2) if isinstance(v, float) else v}"
        for k, v in ckpt["meta"].items()
        if k != "unixtime"
    )
    meta = f" ({meta})" if meta else ""
    lines += [f"- Exported checkpoint: `{ckpt['name']}`{meta}.", ""]
    return lines


def _data_section(facts: dict) -> list[str]:
    lines = ["## Training data", ""]
    origin = {
        True: "synthetic speech written by `xlt synth` (espeak-ng voices)",
        False: "a Common Voice-layout folder with no sign of synthesis "
        "(taken to be recorded speech)",
        None: "unknown (the data folder is not readable here)",
    }[facts["synthetic"]]
    lines += [
        f"Data folder `{facts['data_folder']}`, locale `{facts['locale']}`: {origin}.",
        "",
    ]
    report = facts["prep_report"]
    if not report:
        return lines + ["No `save/prep_report.json`: sizes unknown.", ""]
    rows = []
    for split, rep in report.get("splits", {}).items():
        skipped = ", ".join(f"{k} {v}" for k, v in rep.get("skipped", {}).items())
        rows.append(
            [split, rep.get("rows"), rep.get("kept"), rep.get("hours"), skipped or "-"]
        )
    lines += _table(["split", "rows", "kept", "hours", "skipped (reason count)"], rows)
    return lines + [""]


def _results_section(facts: dict) -> list[str]:
    lines = ["## Results", ""]
    if not facts["results"]:
        return lines + ["No test line in `metrics.jsonl`.", ""]
    rows = []
    for row in facts["results"]:
        model = (
            "zero-shot (base, remapped head, before fine-tuning)"
            if row["zero_shot"]
            else "this model"
        )
        rows.append(
            [
                row["test_set"],
                model,
                _decoder_label(row),
                _fmt(row.get("CER")),
                _fmt(row.get("WER")),
            ]
        )
    lines += _table(["test set", "model", "decoder", "CER %", "WER %"], rows)
    return lines + [""]


def _limitations(facts: dict) -> list[str]:
    lines = ["## Limitations", ""]
    if facts["synthetic"] is True:
        lines.append(
            "- Trained and tested on synthetic speech (espeak-ng voices through "
            "`xlt synth`), not on recordings of people: these error rates say "
            "nothing about real speech; expect much higher error rates on recordings."
        )
    elif facts["synthetic"] is None:
        lines.append(
            "- Whether the training audio was recorded or synthetic is unknown: "
            f"the data folder `{facts['data_folder']}` could not be read at export."
        )
    hours = None
    if facts["prep_report"]:
        hours = facts["prep_report"].get("splits", {}).get("train", {}).get("hours")
    if hours is not None:
        lines.append(
            f"- Trained on {hours} h of speech; expect errors on other "
            "speakers, accents, microphones and topics."
        )
    lines += [
        "- Character-level CTC; transcripts are normalised (lower case, no "
        "punctuation, numbers spelled out).",
        "- Audio is resampled to the model's rate and down-mixed to mono; files "
        "longer than 30 s are cut at pauses by `xlt transcribe`.",
        "",
    ]
    return lines


def model_card(facts: dict, name: str, source: str) -> str:
    """Render the model card (``README.md``) of an exported run.

    Arguments
    ---------
    facts : dict
        As gathered by :func:`export_run` (run facts, results, dataset).
    name : str
        The model's name (``model-index`` name and title).
    source : str
        What ``from_hparams(source=...)`` is given in the usage lines.

    Returns
    -------
    str
        Markdown with YAML front matter.
    """
    front = yaml.safe_dump(
        _front_matter(name, facts), sort_keys=False, allow_unicode=True, width=88
    )
    usage = [
        "## How to use",
        "",
        "```python",
        "from speechbrain.inference.ASR import EncoderASR",
        f'asr = EncoderASR.from_hparams(source="{source}", savedir="pretrained")',
        'print(asr.transcribe_file("speech.wav"))',
        "```",
        "",
        "Or, with beam search, long files and any sample rate: "
        f"`xlt transcribe --model {source} speech.wav`",
    ]
    if facts.get("lm_file"):
        usage[-1] += f" (add `--beam 16 --lm {source}/{LM_FILE}` for the domain LM)"
    usage += [""]
    summary = (
        f"A {facts['encoder_name']} CTC speech recognizer for `{facts['locale']}` "
        f"({facts['n_params'] / 1e6:.2f}M parameters, {facts['n_tokens']} "
        "output tokens), trained with the recipes of the SpeechBrain plugin "
        "`xlt_plugin` (cross-language transfer learning for CTC models)."
    )
    body = [f"# {name}", "", summary, ""]
    body += _base_section(facts) + _training_section(facts) + _data_section(facts)
    body += _results_section(facts) + _limitations(facts) + usage
    return f"---\n{front}---\n\n" + "\n".join(body)


# ------------------------------------------------------------------- export
def _parts_from_checkpoint(run_dir: Path, checkpoint, arch: dict) -> tuple:
    """Encoder, head, normaliser and tokenizer of one ``CKPT+*`` folder."""
    import torch
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.nnet.linear import Linear
    from speechbrain.processing.features import InputNormalization

    module_name, _, class_name = arch["encoder_class"].rpartition(".")
    encoder_class = getattr(importlib.import_module(module_name), class_name)
    encoder = encoder_class(**arch["encoder_config"])
    tokenizer = CTCTextEncoder()
    tokens_file = run_dir / "save" / "tokenizer.ckpt"
    if not tokens_file.is_file():
        raise ExportError(f"{tokens_file} is missing: the run's token list is gone")
    tokenizer.load(tokens_file)
    tokenizer.ignore_len()  # checked against the head's rows below
    head = Linear(input_size=encoder.output_size, n_neurons=len(tokenizer))
    normalize = InputNormalization(norm_type=arch["norm_type"])
    for module, stem in ((encoder, "encoder"), (head, "head")):
        path = checkpoint.path / f"{stem}.ckpt"
        if not path.is_file():
            raise ExportError(f"{path} is missing: an incomplete checkpoint")
        state = torch.load(path, map_location="cpu", weights_only=True)
        rows = state.get("w.weight", torch.empty(len(tokenizer))).shape[0]
        if stem == "head" and rows != len(tokenizer):
            raise ExportError(
                f"{path} has {rows} rows but {tokens_file} lists "
                f"{len(tokenizer)} tokens: they come from different runs"
            )
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ExportError(
                f"{path} does not fit the architecture of {run_dir} "
                f"(model/config.json or hyperparams.yaml): {err}"
            ) from None
    if (checkpoint.path / "normalize.ckpt").is_file():
        normalize._load(checkpoint.path / "normalize.ckpt")
    return encoder, head, normalize, tokenizer


def _parts_from_model_dir(model_dir: Path) -> tuple:
    """Encoder, head, normaliser and tokenizer of a hub-layout folder."""
    from speechbrain.dataio.encoder import CTCTextEncoder

    from xlt_plugin.pretrained import TOKENS_FILE, load_pretrained

    model = load_pretrained(model_dir)
    tokenizer = CTCTextEncoder()
    tokenizer.load(model_dir / TOKENS_FILE)
    tokenizer.ignore_len()  # load_pretrained checked it against the head
    return model.encoder, model.head, model.normalize, tokenizer


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    min_key: str = "CER",
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
    model_dir = run["run_dir"] / "model"
    try:
        checkpoint = find_best_checkpoint(run_dir, min_key=min_key)
    except _NoCheckpoint:
        if not (model_dir / "config.json").is_file():
            raise
        # SpeechBrain's debug mode keeps checkpoints in a temporary folder: the
        # model the recipe wrote at its end is all there is.
        checkpoint = None
    arch = _architecture(run)
    if checkpoint is None:
        logger.warning("%s has no checkpoint; exporting %s", run_dir, model_dir)
        encoder, head, normalize, tokenizer = _parts_from_model_dir(model_dir)
        ckpt_facts = {"name": "none saved (debug run?): the run's model/", "meta": {}}
    else:
        encoder, head, normalize, tokenizer = _parts_from_checkpoint(
            run["run_dir"], checkpoint, arch
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
    results = collect_test_results(run["metrics"])
    lm_rows = [r for r in results if r.get("lm") and Path(str(r["lm"])).is_file()]
    encoder_name = arch["encoder_class"].rsplit(".", 1)[-1]
    facts = {
        "hparams": hp,
        "locale": locale,
        "data_folder": data_folder,
        "synthetic": synthetic,
        "dataset": _dataset(locale, data_folder, synthetic),
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
        features=arch["features"],
        normalize=normalize,
        metadata=metadata,
    )
    if facts["lm_file"]:
        shutil.copyfile(facts["lm_file"], out / LM_FILE)
    (out / CARD_FILE).write_text(model_card(facts, name, str(out_dir)), "utf-8")
    logger.info("Exported %s (%s) to %s", run["run_dir"], ckpt_facts["name"], out)
    return out
