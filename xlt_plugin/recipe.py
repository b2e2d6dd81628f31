"""The steps every recipe's ``train.py`` takes, each one function.

A recipe reads as SpeechBrain's do: load the YAML, prepare data, build tokens and
datasets, build the Brain, fit, test, and (for base models) write the model in hub
layout. The choices live in the YAML; these functions only wire them.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from xlt_plugin.brain import CTCTransferBrain
from xlt_plugin.runs import BEST_KEY, has_zero_shot

logger = logging.getLogger(__name__)

#: What to tell a user who did not give a required path.
PLACEHOLDER_HINTS = {
    "data_folder": (
        "a Common Voice locale folder (train.tsv, dev.tsv, test.tsv, clips/). "
        "Make a synthetic one with `xlt synth --lang es --out data/es "
        "--utterances 600`, or download a release from commonvoice.mozilla.org."
    ),
    "pretrained_path": (
        "a pretrained model folder in hub layout. Train one with "
        "`python recipes/EnglishBase/train.py "
        "recipes/EnglishBase/hparams/quartznet_small.yaml --data_folder=...` "
        "(it writes <output_folder>/model/), or give an `xlt export` folder."
    ),
}


def _placeholders(yaml_text: str) -> list[str]:
    return re.findall(r"^(\w+):\s*!PLACEHOLDER", yaml_text, flags=re.MULTILINE)


def _unknown_key_message(hparams_file: str, yaml_text: str, err: KeyError) -> str:
    import difflib

    match = re.search(r"Override '([^']+)' not found", str(err))
    if not match:
        return f"{hparams_file}: {err}"
    key = match.group(1)
    keys = re.findall(r"^(\w+):", yaml_text, flags=re.MULTILINE)
    close = difflib.get_close_matches(key, keys, n=3)
    hint = f" Did you mean {', '.join('--' + c for c in close)}?" if close else ""
    return (
        f"--{key} is not a key of {hparams_file}.{hint} Command-line overrides "
        "must name a top-level key of the YAML (SpeechBrain run options such as "
        "--device or --debug are fine too)."
    )


def load_recipe(argv: list[str] | None = None) -> tuple[dict, dict, str]:
    """Parse the command line and load the recipe YAML, SpeechBrain style.

    Arguments
    ---------
    argv : list of str, optional
        ``hparams.yaml --key=value ...``; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    (hparams, run_opts, hparams_file)
    """
    argv = sys.argv[1:] if argv is None else argv
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    yaml_text = Path(hparams_file).read_text(encoding="utf-8")
    given = set(re.findall(r"^(\w+):", overrides or "", flags=re.MULTILINE))
    missing = [k for k in _placeholders(yaml_text) if k not in given]
    if missing:
        hints = "\n".join(
            f"  --{k}=...  {PLACEHOLDER_HINTS.get(k, 'required by ' + hparams_file)}"
            for k in missing
        )
        raise SystemExit(f"{hparams_file} needs:\n{hints}")
    sb.utils.distributed.ddp_init_group(run_opts)
    try:
        hparams = load_hyperpyyaml(yaml_text, overrides)
    except FileNotFoundError as err:  # e.g. a pretrained_path that is not there
        raise SystemExit(f"{hparams_file}: {err}") from None
    except KeyError as err:  # hyperpyyaml: an override names no key of the YAML
        raise SystemExit(_unknown_key_message(hparams_file, yaml_text, err)) from None
    except ValueError as err:  # e.g. a .nemo that is not a NeMo checkpoint
        raise SystemExit(f"{hparams_file}: {err}") from None
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    return hparams, run_opts, hparams_file


def common_voice_data(hparams: dict) -> tuple:
    """Prepare a Common Voice folder, build the tokens and the datasets.

    Preparation runs on the main process only (DDP); it is skipped when its
    manifests are up to date.

    Arguments
    ---------
    hparams : dict
        ``data_folder``, ``save_folder``, ``language``, ``train_csv``,
        ``valid_csv``, ``test_csv``, optional ``max_duration``, ``skip_prep``.

    Returns
    -------
    (tokenizer, datasets)
    """
    from speechbrain.utils.distributed import run_on_main

    from xlt_plugin.data.commonvoice import prepare_common_voice
    from xlt_plugin.data.pipeline import build_tokenizer, make_datasets

    run_on_main(
        prepare_common_voice,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "language": hparams["language"],
            "max_duration": hparams.get("max_duration"),
            "skip_prep": hparams.get("skip_prep", False),
            # CTC needs a frame per label: judge clips at the model's own rate.
            "time_stride": getattr(hparams["encoder"], "time_stride", 2),
            "frames_per_second": 1000.0 / hparams.get("hop_length", 10),
        },
    )
    csvs = [hparams["train_csv"], hparams["valid_csv"], hparams["test_csv"]]
    tokenizer = build_tokenizer(csvs, Path(hparams["save_folder"]) / "tokenizer.ckpt")
    if hparams.get("test_split_by"):
        hparams["test_csv"] = split_csv_by(
            hparams["test_csv"], hparams["test_split_by"], hparams["save_folder"]
        )
    return tokenizer, make_datasets(hparams, tokenizer)


def split_csv_by(csv_file: str | Path, column: str, out_dir: str | Path) -> dict:
    """Split a manifest into one manifest per value of ``column``.

    Used to score a test set per accent or per domain. Rows with an empty value go
    to ``"unlabelled"``.

    Arguments
    ---------
    csv_file : path
        A manifest written by the prep.
    column : str
        E.g. ``accents`` or ``sentence_domain``.
    out_dir : path
        Where ``<stem>_<value>.csv`` files go.

    Returns
    -------
    dict
        Value -> manifest path, sorted by value.
    """
    import csv
    import re

    with open(csv_file, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if column not in (fields or []):
        raise ValueError(f"{csv_file} has no column {column!r}; it has {fields}")
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row[column] or "unlabelled", []).append(row)
    out = {}
    for value in sorted(groups):
        slug = re.sub(r"[^\w]+", "_", value).strip("_").lower()
        path = Path(out_dir) / f"{Path(csv_file).stem}_{slug}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(groups[value])
        out[value] = str(path)
    return out


def make_brain(hparams: dict, run_opts: dict, tokenizer) -> CTCTransferBrain:
    """Build the model for the target tokens and the ``CTCTransferBrain``.

    ``hparams["head"]`` may be a partial (``!name:speechbrain.nnet.linear.Linear``):
    its ``n_neurons`` is then the tokenizer's size, known only once the data is
    prepared, and its ``input_size`` (unless given) the encoder's ``output_size``.

    Arguments
    ---------
    hparams : dict
        The loaded YAML: ``encoder``, ``head``, optional ``normalize``,
        ``opt_class``, ``checkpointer``.
    run_opts : dict
        SpeechBrain run options.
    tokenizer : CTCTextEncoder
        The target token inventory.

    Returns
    -------
    CTCTransferBrain
    """
    head = hparams["head"]
    if not isinstance(head, torch.nn.Module):  # a class or a partial of one
        sizes = {"n_neurons": len(tokenizer)}
        if "input_size" not in getattr(head, "keywords", {}):
            sizes["input_size"] = hparams["encoder"].output_size
        head = head(**sizes)
        hparams["head"] = head
    modules = {"encoder": hparams["encoder"], "head": head}
    if hparams.get("normalize") is not None:
        modules["normalize"] = hparams["normalize"]
    return CTCTransferBrain(
        modules=modules,
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams.get("checkpointer"),
        tokenizer=tokenizer,
    )


def fit_and_test(brain: CTCTransferBrain, datasets: dict, hparams: dict) -> dict:
    """Train (resuming if a checkpoint exists), then test the best checkpoint.

    Arguments
    ---------
    brain : CTCTransferBrain
    datasets : dict
        From :func:`xlt_plugin.data.pipeline.make_datasets`.
    hparams : dict

    Returns
    -------
    dict
        Test stats per test set name.
    """
    test_opts = hparams.get("test_dataloader_opts", {})
    if hparams.get("zero_shot_eval") and hparams.get("pretrained_path"):
        if not _has_zero_shot_lines(brain):
            brain.evaluate_zero_shot(datasets["test"], test_opts)
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams.get("train_dataloader_opts", {}),
        valid_loader_kwargs=hparams.get("valid_dataloader_opts", {}),
    )
    results = {}
    for name, test_set in datasets["test"].items():
        brain.eval_tag = name
        brain.evaluate(test_set, min_key=BEST_KEY, test_loader_kwargs=dict(test_opts))
        results[name] = brain.scores.summarize()
    brain.eval_tag = None
    return results


def _has_zero_shot_lines(brain: CTCTransferBrain) -> bool:
    if brain.metrics_path is None:
        return False
    return has_zero_shot(brain.metrics_path.parent)


def export_model(
    brain: CTCTransferBrain, hparams: dict, results: dict, extra: dict | None = None
):
    """Write the (best-checkpoint) model to ``<output_folder>/model`` in hub layout.

    ``config.json`` keeps the run's language, pretrained_path, remap strategy
    and test results as metadata.

    Arguments
    ---------
    brain : CTCTransferBrain
        After :func:`fit_and_test` (which loaded the best checkpoint).
    hparams : dict
    results : dict
        Test stats per test set (what :func:`fit_and_test` returns).
    extra : dict, optional
        More metadata (e.g. the domain recipe's beam + LM results).

    Returns
    -------
    Path or None
        The model folder (None on non-main DDP processes).
    """
    from xlt_plugin.pretrained import read_config, save_pretrained

    if not sb.utils.distributed.if_main_process():
        return None

    def unwrap(module):
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            return module.module
        return module

    modules = {name: unwrap(module) for name, module in brain.modules.items()}
    metadata = {
        "language": hparams["language"],
        "pretrained_path": str(hparams.get("pretrained_path") or ""),
        "remap_strategy": hparams.get("remap_strategy"),
        "test": results,
        **(extra or {}),
    }
    if hparams.get("pretrained_path"):  # the base's features, whatever their kind
        features = read_config(hparams["pretrained_path"], "features")
    else:
        keys = ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length")
        features = {k: hparams[k] for k in keys if k in hparams}
    out = save_pretrained(
        Path(hparams["output_folder"]) / "model",
        encoder=modules["encoder"],
        head=modules["head"],
        tokenizer=brain.tokenizer,
        features=features,
        normalize=modules.get("normalize"),
        metadata=metadata,
    )
    logger.info("Model written to %s (a pretrained_path for transfers).", out)
    return out
