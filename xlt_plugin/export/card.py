"""The HuggingFace model card (``README.md``) of an exported run.

:func:`model_card` renders YAML front matter (``language``, ``license``,
``library_name``, ``tags``, ``datasets``, ``metrics`` and a ``model-index`` with
the test WER/CER of ``metrics.jsonl``), then the base model, the token remap, the
freezing schedule, the training data (from ``save/prep_report.json``), a results
table (zero-shot, fine-tuned, and beam search + LM when the recipe ran it),
limitations (synthetic speech says so) and three lines of usage. It renders the
facts :func:`xlt_plugin.export.hub.export_run` gathered; it reads no file.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from xlt_plugin.runs import trained_epochs

__all__ = ["dataset_entry", "hf_language", "model_card"]

#: Common Voice locales whose HuggingFace language code is not their prefix.
_HF_LANGUAGES = {"zh-HK": "yue", "zh-CN": "zh", "zh-TW": "zh", "yue": "yue"}


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


def dataset_entry(locale: str, data_folder: str, synthetic: bool | None) -> dict:
    """The card's ``datasets`` entry: the synthetic corpus, or a Common Voice one."""
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
    trained = trained_epochs(facts["metrics"])
    if trained:
        lines.append(f"- Epochs trained: {trained}.")
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
        As gathered by :func:`xlt_plugin.export.hub.export_run` (run facts,
        results, dataset, ``lm_name`` when the export holds an LM).
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
    if facts.get("lm_name"):
        usage[-1] += (
            f" (add `--beam 16 --lm {source}/{facts['lm_name']}` for the domain LM)"
        )
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
