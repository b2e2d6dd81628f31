"""The steps every recipe's ``train.py`` takes, each one function.

A recipe reads as SpeechBrain's do: load the YAML, prepare data, build tokens and
datasets, build the Brain, fit, test, and (for base models) write the model in hub
layout. The choices live in the YAML; these functions only wire them.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from xlt_plugin.brain import CTCTransferBrain, TransferSettings
from xlt_plugin.resume import CheckpointWriteError
from xlt_plugin.runlock import RunLockedError, acquire_run_lock
from xlt_plugin.runs import BEST_KEY, has_zero_shot

logger = logging.getLogger(__name__)


class RecipeError(ValueError):
    """A recipe cannot start as asked; the message says what to change.

    A required path not given, a misspelt override, a pretrained model that is
    not there. :func:`main` prints it and exits with status 1, no traceback.
    """


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

    Raises
    ------
    RecipeError
        A required path not given, an override that names no key of the YAML,
        a YAML that does not load (a pretrained_path that is not there).
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
        raise RecipeError(f"{hparams_file} needs:\n{hints}")
    check_device(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    if torch.distributed.is_initialized():
        atexit.register(close_process_group)
    try:
        hparams = load_hyperpyyaml(yaml_text, overrides)
    except FileNotFoundError as err:  # e.g. a pretrained_path that is not there
        raise RecipeError(f"{hparams_file}: {err}") from None
    except KeyError as err:  # hyperpyyaml: an override names no key of the YAML
        raise RecipeError(_unknown_key_message(hparams_file, yaml_text, err)) from None
    except ValueError as err:  # e.g. a .nemo that is not a NeMo checkpoint
        raise RecipeError(f"{hparams_file}: {err}") from None
    if sb.utils.distributed.if_main_process():
        # Before create_experiment_directory, which rewrites the hyperparams.yaml
        # and log of a run that may be live in this folder. Rank 0 only: the
        # other ranks of a torchrun are the same run. Held until the process ends.
        try:
            acquire_run_lock(hparams["output_folder"])
        except RunLockedError as err:
            raise RecipeError(str(err)) from None
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    return hparams, run_opts, hparams_file


def close_process_group() -> None:
    """Close this process's DDP process group, if open, before Python's teardown.

    Registered at exit by :func:`load_recipe` under torchrun: left open, the
    group's threads meet the interpreter's teardown, which destroys C++ objects
    in no set order (a 2-process gloo script ending right after ``fit`` was seen
    to abort there with "terminate called without an active exception").
    Closing is local to the process: no collective, so a process that exits on
    an error does not wait for the others.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def check_device(run_opts) -> None:
    """Refuse a device or precision this machine cannot run, before any work.

    Without this, ``--device=cuda`` on a machine without a CUDA device fails
    inside torch, and ``--precision=fp16`` on a CPU fails in SpeechBrain's
    ``Brain`` after the data preparation, both with a traceback.

    Arguments
    ---------
    run_opts : speechbrain RunOptions or dict
        The parsed run options (``device``, ``precision``, ``eval_precision``).

    Raises
    ------
    RecipeError
        What to use instead.

    Example
    -------
    >>> check_device({"device": "cpu", "precision": "bf16"})
    >>> check_device({"device": "cpu", "precision": "fp16"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    xlt_plugin.recipe.RecipeError: --precision=fp16 needs a CUDA device: ...
    """
    from speechbrain.utils.distributed import infer_device

    device = str(run_opts.get("device") or infer_device())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(
            f"--device={device}, but torch sees no CUDA device (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}; "
            "nvidia-smi lists the GPUs the driver sees). Run on a machine with an "
            "NVIDIA GPU, or use --device=cpu."
        )
    for key in ("precision", "eval_precision"):
        if device.startswith("cpu") and run_opts.get(key) == "fp16":
            raise RecipeError(
                f"--{key}=fp16 needs a CUDA device: SpeechBrain runs fp16 "
                "autocast and its GradScaler on GPUs only. On a CPU use "
                f"--{key}=bf16 (bfloat16 autocast) or fp32."
            )


def continual_settings(hparams: dict) -> TransferSettings:
    """The recipe's settings (:class:`~xlt_plugin.brain.TransferSettings`), checked
    for the continual-learning keys before anything is prepared or trained.

    The recipe steps read ``replay_*``, ``average_*`` and ``adapter_*`` from here,
    so their defaults live in one place. Combinations that could only fail after
    training (``average_alpha: auto`` without a source corpus, averaging an
    adapted model, a misspelt ``average_alpha``) fail here, before it.

    Arguments
    ---------
    hparams : dict
        The loaded YAML.

    Returns
    -------
    TransferSettings

    Raises
    ------
    RecipeError
        What to change, e.g. ``replay_ratio`` outside [0, 1).
    """
    try:
        settings = TransferSettings.from_hparams(hparams)
    except ValueError as err:
        raise RecipeError(str(err)) from None
    ratio = float(settings.replay_ratio or 0.0)
    if not 0.0 <= ratio < 1.0:
        raise RecipeError(
            f"replay_ratio must be in [0, 1) (the source share of each training "
            f"batch), got {settings.replay_ratio}."
        )
    if ratio > 0 and not settings.replay_data_folder:
        raise RecipeError(
            f"replay_ratio is {ratio} but replay_data_folder is not given: name "
            "the source corpus to rehearse (a Common Voice layout folder)."
        )
    if ratio > 0 and _distributed():
        raise RecipeError(
            "replay under DDP is not supported yet: run the rehearsal on one "
            "process (replay_ratio 0 under torchrun)."
        )
    alpha = settings.average_alpha
    if alpha is not None:
        if alpha != "auto":
            try:
                number = float(alpha)
            except (TypeError, ValueError):
                number = None
            if number is None or not 0.0 <= number <= 1.0:
                raise RecipeError(
                    f"average_alpha must be null, a number in [0, 1] or auto, got "
                    f"{alpha!r}."
                )
        elif not settings.replay_data_folder:
            raise RecipeError(
                "average_alpha: auto chooses alpha on the source and target dev "
                "sets: give replay_data_folder (the source corpus; replay_ratio 0 "
                "keeps it out of training)."
            )
        grid = settings.average_grid
        if alpha == "auto" and grid is not None:
            try:
                bad = not grid or any(not 0.0 <= float(a) <= 1.0 for a in grid)
            except (TypeError, ValueError):
                bad = True
            if bad:
                raise RecipeError(
                    f"average_grid must be a non-empty list of alphas in [0, 1], "
                    f"got {grid!r}."
                )
        if not settings.pretrained_path:
            raise RecipeError("average_alpha needs a pretrained_path (the base).")
        if settings.adapter_dim:
            raise RecipeError(
                "average_alpha and adapter_dim do not combine: an adapted model "
                "keeps the base's weights already (remove the adapters to get the "
                "base)."
            )
        if settings.average_batchnorm not in ("average", "recompute"):
            raise RecipeError(
                "average_batchnorm must be average or recompute, got "
                f"{settings.average_batchnorm!r}."
            )
    dim = settings.adapter_dim
    if dim and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 0):
        raise RecipeError(f"adapter_dim must be a positive int (0: none), got {dim!r}.")
    return settings


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


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

    settings = continual_settings(hparams)
    prep = {
        "language": hparams["language"],
        "max_duration": hparams.get("max_duration"),
        "skip_prep": hparams.get("skip_prep", False),
        # CTC needs a frame per label: judge clips at the model's own rate.
        "time_stride": getattr(hparams["encoder"], "time_stride", 2),
        "frames_per_second": 1000.0 / hparams.get("hop_length", 10),
    }
    run_on_main(
        prepare_common_voice,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            **prep,
        },
    )
    csvs = [hparams["train_csv"], hparams["valid_csv"], hparams["test_csv"]]
    if settings.replay_data_folder:
        # Rehearsal: the source corpus, through the same prep into its own folder;
        # its letters join the tokens (its transcripts must encode).
        replay_save = Path(hparams["save_folder"]) / "replay"
        run_on_main(
            prepare_common_voice,
            kwargs={
                "data_folder": settings.replay_data_folder,
                "save_folder": str(replay_save),
                **prep,
            },
        )
        hparams["replay_train_csv"] = str(replay_save / "train.csv")
        hparams["replay_valid_csv"] = str(replay_save / "dev.csv")
        csvs += [hparams["replay_train_csv"], hparams["replay_valid_csv"]]
    tokenizer = build_tokenizer(csvs, Path(hparams["save_folder"]) / "tokenizer.ckpt")
    if hparams.get("test_split_by"):
        hparams["test_csv"] = split_csv_by(
            hparams["test_csv"], hparams["test_split_by"], hparams["save_folder"]
        )
    return tokenizer, make_datasets(
        hparams, tokenizer, replay_ratio=float(settings.replay_ratio or 0.0)
    )


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
    if continual_settings(hparams).adapter_dim:
        use_adapters(hparams)
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


def use_adapters(hparams: dict) -> None:
    """Put ``adapter_dim`` adapters in the encoder; train only them (and the head).

    The encoder gets zero-initialised residual bottleneck adapters
    (:func:`xlt_plugin.lobes.adapters.add_adapters`), so the model starts equal
    to the base, whose weights still load into it. ``unfreezing`` becomes a
    schedule that freezes the rest of the encoder for the whole run (BatchNorm
    affine parameters stay trainable with ``adapter_train_batchnorm``); a
    freezing schedule of the YAML's own is replaced, with a warning.

    Arguments
    ---------
    hparams : dict
        The loaded YAML: ``encoder``, ``adapter_dim``, optional
        ``adapter_train_batchnorm``, ``unfreezing``.
    """
    from xlt_plugin.freeze import StagedUnfreezing
    from xlt_plugin.lobes.adapters import ADAPTER_PATTERN, add_adapters

    settings = continual_settings(hparams)
    dim = int(settings.adapter_dim)
    added = add_adapters(hparams["encoder"], dim)
    own = hparams.get("unfreezing")
    if own is not None and (own.frozen or own.unfreeze_at):
        logger.warning(
            "adapter_dim=%d: the freezing schedule of the YAML (%r) is replaced "
            "by one that trains only the adapters and the head.",
            dim,
            own,
        )
    hparams["unfreezing"] = StagedUnfreezing(
        frozen=["encoder"],
        # Epoch 1 releases the adapters: everything else of the encoder stays
        # frozen for the whole run, out of the optimizer.
        unfreeze_at={1: [ADAPTER_PATTERN]},
        keep_batchnorm_trainable=bool(settings.adapter_train_batchnorm),
    )
    logger.info("Adapters (dim %d) in %d encoder blocks.", dim, len(added))


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


def average_with_base(
    brain: CTCTransferBrain, datasets: dict, hparams: dict, results: dict
) -> tuple[dict, dict]:
    """Interpolate the fine-tuned model toward the base, then test it.

    ``alpha * finetuned + (1 - alpha) * base`` over the encoder and the shared
    rows of the head (:mod:`xlt_plugin.averaging`), from the best checkpoint
    (which :func:`fit_and_test` loaded). ``average_alpha`` a number: that alpha;
    ``auto``: the alpha of ``average_grid`` with the lowest CER on the union of
    the target dev set and the source dev set (``replay_data_folder``'s).
    BatchNorm statistics are averaged (``average_batchnorm: average``) or
    re-estimated on ``average_recompute_batches`` batches of the training data
    (``recompute``). The averaged model is tested (test sets named
    ``<name>_averaged``) and stays in the modules, so :func:`export_model` writes
    it; checkpoints keep the fine-tuned weights.

    Arguments
    ---------
    brain : CTCTransferBrain
    datasets : dict
    hparams : dict
    results : dict
        The fine-tuned model's test stats.

    Returns
    -------
    (results, extra)
        The averaged model's test stats, and metadata for the exported model.
    """
    from xlt_plugin.averaging import (
        average_head_state,
        interpolate_state,
        recompute_batchnorm,
    )
    from xlt_plugin.pretrained import load_pretrained

    settings = continual_settings(hparams)
    alpha = settings.average_alpha
    if alpha == "auto" and "replay_valid" not in datasets:
        raise RecipeError(
            "average_alpha: auto chooses alpha on the source and target dev sets: "
            "give replay_data_folder (the source corpus; replay_ratio 0 keeps it "
            "out of training)."
        )
    base = load_pretrained(hparams["pretrained_path"])
    encoder, head = brain.modules.encoder, brain.modules.head
    tuned_encoder = {k: v.clone() for k, v in encoder.state_dict().items()}
    tuned_head = {k: v.clone() for k, v in head.state_dict().items()}
    from xlt_plugin.tokens import load_tokens

    tokens = load_tokens(brain.tokenizer)
    mode = settings.average_batchnorm

    def apply(a: float) -> None:
        encoder.load_state_dict(
            interpolate_state(base.encoder.state_dict(), tuned_encoder, a)
        )
        head.load_state_dict(
            average_head_state(
                base.head.state_dict(), base.tokens, tuned_head, tokens, a
            )
        )
        if mode == "recompute":
            batches = _union_batches(brain, datasets, hparams, settings)
            recompute_batchnorm(
                brain.modules,
                batches,
                lambda batch: brain.compute_forward(batch, sb.Stage.VALID),
            )

    grid_cer = {}
    if alpha == "auto":
        for a in settings.average_grid or [0.2, 0.4, 0.6, 0.8, 1.0]:
            apply(float(a))
            grid_cer[float(a)] = _dev_cer(
                brain, [datasets["valid"], datasets["replay_valid"]], hparams
            )
        alpha = min(grid_cer, key=grid_cer.get)
        logger.info("Averaging: union dev CER per alpha %s; alpha %s", grid_cer, alpha)
    alpha = float(alpha)
    apply(alpha)
    averaged = {}
    checkpointer, brain.checkpointer = brain.checkpointer, None
    try:  # no checkpoint may replace the averaged weights
        test_opts = hparams.get("test_dataloader_opts", {})
        for name, test_set in datasets["test"].items():
            brain.eval_tag = f"{name}_averaged"
            brain.evaluate(test_set, test_loader_kwargs=dict(test_opts))
            averaged[name] = brain.scores.summarize()
    finally:
        brain.checkpointer = checkpointer
        brain.eval_tag = None
    extra = {
        "averaging": {
            "alpha": alpha,
            "union_dev_CER": {str(k): v for k, v in grid_cer.items()},
            "batchnorm": mode,
            "finetuned_test": results,
        }
    }
    return averaged, extra


def _dev_cer(brain: CTCTransferBrain, dev_sets: list, hparams: dict) -> float:
    """Pooled CER of the model as it is over ``dev_sets`` (no metrics line)."""
    brain.on_stage_start(sb.Stage.VALID)
    brain.modules.eval()
    opts = hparams.get("valid_dataloader_opts", {})
    with torch.no_grad():
        for dev in dev_sets:
            for batch in brain.make_dataloader(dev, sb.Stage.VALID, **dict(opts)):
                out = brain.compute_forward(batch, sb.Stage.VALID)
                brain.compute_objectives(out, batch, sb.Stage.VALID)
    return float(brain.scores.summarize()["CER"])


def _union_batches(
    brain: CTCTransferBrain, datasets: dict, hparams: dict, settings
) -> torch.utils.data.DataLoader:
    """A few seeded batches of the training data (target + source)."""
    from speechbrain.dataio.batch import PaddedBatch

    parts = [datasets["train"]]
    if "replay_valid" in datasets and not settings.replay_ratio:
        parts.append(datasets["replay_valid"])  # the only source data there is
    union = torch.utils.data.ConcatDataset(parts)
    size = int(hparams.get("batch_size", 8))
    count = int(settings.average_recompute_batches) * size
    generator = torch.Generator().manual_seed(int(hparams.get("seed", 0)))
    order = torch.randperm(len(union), generator=generator)[:count].tolist()
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(union, order), batch_size=size, collate_fn=PaddedBatch
    )


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


def main(argv: list[str] | None = None, extra_tests=None) -> None:
    """A recipe's ``train.py``: load, prepare, fit, test, export.

    A :class:`RecipeError` (what the user can fix) ends the run with its
    message and exit status 1, no traceback.

    Arguments
    ---------
    argv : list of str, optional
        ``hparams.yaml --key=value ...``; ``sys.argv[1:]`` when omitted.
    extra_tests : callable, optional
        ``extra_tests(brain, datasets, hparams) -> dict`` after the tests; its
        dict is kept in the exported model's metadata (the domain recipe's
        beam + LM results).
    """
    try:
        hparams, run_opts, _ = load_recipe(argv)
        tokenizer, datasets = common_voice_data(hparams)
        brain = make_brain(hparams, run_opts, tokenizer)
        results = fit_and_test(brain, datasets, hparams)
        averaging = None
        if continual_settings(hparams).average_alpha is not None:
            results, averaging = average_with_base(brain, datasets, hparams, results)
        extra = extra_tests(brain, datasets, hparams) if extra_tests else None
        if averaging:
            extra = {**(extra or {}), **averaging}
        export_model(brain, hparams, results, extra)
    except (RecipeError, CheckpointWriteError) as err:
        sys.exit(str(err))
