"""The run-folder contract: what a recipe run leaves behind, written and read here.

A run folder (a recipe's ``output_folder``) holds ``metrics.jsonl``, one JSON
line per epoch and stage, written by the training loop
(:class:`xlt_plugin.brain.CTCTransferBrain`) and by extra decoders
(:func:`xlt_plugin.decode.transcribe.evaluate_decoder`)::

    {"epoch": 3, "stage": "train", "loss": ..., "CER": null, "WER": null, "lr": ...,
     "seconds": ..., "elapsed": ..., "trainable_params": ..., "nonfinite_skipped": 0}
    {"epoch": 3, "stage": "valid", "loss": ..., "CER": 41.2, "WER": 88.0, ...}
    {"epoch": 3, "stage": "test", ..., "test_set": "test", "zero_shot": false}
    {"epoch": 3, "stage": "test", ..., "decoder": "beam+lm", "beam": 16, ...}

Test lines with ``zero_shot`` true score the pretrained model before any
fine-tuning; a test line without ``decoder`` was decoded greedily. Besides the
metrics, ``save/CKPT+*`` holds SpeechBrain checkpoints (the best has the lowest
``CER`` in its meta) and ``model/config.json`` the exported model, written last:
a run is finished when it has both that and a final test line.

Every writer and reader of these files goes through this module: the training
loop, the recipes, the study runner and report, and ``xlt export``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xlt_plugin.pretrained import CONFIG_FILE

__all__ = [
    "BEST_KEY",
    "HOW_TO_RUN",
    "METRICS_FILE",
    "MODEL_DIR",
    "MetricsError",
    "REMAP_REPORT",
    "NoCheckpointError",
    "RunFolderError",
    "append_metrics",
    "find_best_checkpoint",
    "final_tests",
    "has_zero_shot",
    "is_finished",
    "metrics_path",
    "model_dir",
    "read_json",
    "read_metrics",
    "read_remap_report",
    "run_folder_of",
    "stage_lines",
    "scored_tests",
    "trained_epochs",
    "trim_metrics",
    "valid_curve",
    "zero_shot_tests",
]

METRICS_FILE = "metrics.jsonl"
#: The checkpoint meta key the training loop minimises (the best checkpoint).
BEST_KEY = "CER"
#: The model a run writes at its very end, in hub layout (a ``pretrained_path``).
MODEL_DIR = "model"
#: How the head of a transfer was remapped (``xlt_plugin.remap.RemapReport``).
REMAP_REPORT = "remap_report.json"


class RunFolderError(ValueError):
    """A run folder that does not hold what is asked of it; says what to do."""


class MetricsError(RunFolderError):
    """A ``metrics.jsonl`` line that is not JSON."""


class NoCheckpointError(RunFolderError):
    """The run saved no checkpoint at all."""


# ------------------------------------------------------------------- writing
def metrics_path(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/metrics.jsonl``."""
    return Path(run_dir) / METRICS_FILE


def model_dir(run_dir: str | os.PathLike) -> Path:
    """``<run_dir>/model``: the run's model in hub layout, written at its end."""
    return Path(run_dir) / MODEL_DIR


def read_json(path: str | os.PathLike):
    """A JSON file of a run (or corpus) folder; None when it is missing.

    Raises
    ------
    RunFolderError
        The file is not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunFolderError(
            f"{path} is not valid JSON ({err}); re-run the recipe"
        ) from None


def read_remap_report(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``remap_report.json`` (None for a run trained from scratch)."""
    return read_json(Path(run_dir) / REMAP_REPORT)


def append_metrics(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line to a ``metrics.jsonl`` file.

    The line is written in one ``write`` call, so a killed run leaves whole
    lines (:func:`trim_metrics` drops those past the last checkpoint).

    Arguments
    ---------
    path : path
        The ``metrics.jsonl`` file (its folder is created).
    record : dict
        The fields of the line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(path: str | os.PathLike, last_epoch: int) -> None:
    """Drop train/valid lines past ``last_epoch`` (a killed run, resumed).

    A resumed run restarts from its last checkpoint: lines written after it
    would otherwise appear twice.

    Arguments
    ---------
    path : path
        The ``metrics.jsonl`` file (nothing happens when it is missing).
    last_epoch : int
        The epoch of the recovered checkpoint.

    Example
    -------
    >>> path = getfixture("tmp_path") / METRICS_FILE
    >>> for epoch in (1, 2):
    ...     append_metrics(path, {"epoch": epoch, "stage": "train"})
    >>> trim_metrics(path, 1)
    >>> [r["epoch"] for r in read_metrics(path.parent)]
    [1]
    """
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["stage"] in ("train", "valid") and rec["epoch"] > last_epoch:
            continue
        kept.append(line)
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


# ------------------------------------------------------------------- reading
def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The run's ``metrics.jsonl`` records, in order (empty when missing).

    Arguments
    ---------
    run_dir : path
        The run folder.

    Returns
    -------
    list of dict

    Raises
    ------
    MetricsError
        A line is not JSON (its number is in the message).
    """
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise MetricsError(
                f"{path}:{number} is not a JSON line; fix or delete that line"
            ) from None
    return records


def stage_lines(records: list[dict], stage: str) -> list[dict]:
    """The records of one stage (``train``, ``valid`` or ``test``), in order."""
    return [r for r in records if r.get("stage") == stage]


def trained_epochs(records: list[dict]) -> int:
    """The last epoch with a training line (0 before the first)."""
    return max((r["epoch"] for r in stage_lines(records, "train")), default=0)


def valid_curve(records: list[dict]) -> list[dict]:
    """Validation records in epoch order (the last line of each epoch).

    Example
    -------
    >>> lines = [{"epoch": 2, "stage": "valid", "CER": 40.0},
    ...          {"epoch": 1, "stage": "valid", "CER": 60.0},
    ...          {"epoch": 2, "stage": "valid", "CER": 35.0}]
    >>> [(r["epoch"], r["CER"]) for r in valid_curve(lines)]
    [(1, 60.0), (2, 35.0)]
    """
    by_epoch = {r["epoch"]: r for r in stage_lines(records, "valid")}
    return [by_epoch[e] for e in sorted(by_epoch)]


#: Epochs over which :func:`still_improving` fits dev CER's slope, and the fall
#: per epoch (a fraction of the CER) from which a run counts as still improving.
IMPROVING_WINDOW = 4
IMPROVING_RATE = 0.01


def still_improving(
    records: list[dict],
    window: int = IMPROVING_WINDOW,
    min_relative: float = IMPROVING_RATE,
) -> float | None:
    """How fast dev CER was still falling when the run stopped, or None.

    The least-squares slope of dev CER over the last ``window`` epochs; a run
    counts as still improving when that slope loses at least ``min_relative`` of
    the window's mean CER per epoch (1 %: 0.6 points an epoch at 60 % CER, 0.05
    at 5 %). More epochs would then likely have lowered its test CER, so a
    comparison against it overstates the other side's lead. A fit rather than the
    last two points, so that one noisy epoch neither hides nor fakes it.

    Arguments
    ---------
    records : list of dict
        A run's ``metrics.jsonl`` lines.
    window : int
        The last epochs the slope is fitted on.
    min_relative : float
        Fall per epoch, as a fraction of the window's mean dev CER, below which
        a run counts as converged (or stuck).

    Returns
    -------
    float or None
        Dev CER points lost per epoch over the window, or None (converged,
        stuck, or fewer than ``window`` epochs).

    Example
    -------
    >>> curve = [{"epoch": e, "stage": "valid", "CER": c}
    ...          for e, c in enumerate([90.0, 70.0, 60.0, 52.0], start=1)]
    >>> still_improving(curve)
    12.4
    >>> flat = [dict(r, CER=60.0 - r["epoch"] / 10) for r in curve]
    >>> still_improving(flat) is None  # 0.1 point per epoch at 60: converged
    True
    >>> still_improving(curve[:3]) is None  # too short to say
    True
    """
    cer = [r["CER"] for r in valid_curve(records)][-window:]
    if len(cer) < window or window < 2:
        return None
    mean_x, mean_y = (window - 1) / 2, sum(cer) / window
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(cer)) / sum(
        (x - mean_x) ** 2 for x in range(window)
    )
    return round(-slope, 2) if -slope >= min_relative * mean_y > 0 else None


def scored_tests(records: list[dict]) -> list[dict]:
    """The last test line per (test set, zero-shot, decoder), in first-seen order.

    Arguments
    ---------
    records : list of dict
        ``metrics.jsonl`` lines.

    Returns
    -------
    list of dict
        Copies of the lines, each with ``test_set`` (``test`` when the line has
        none), ``zero_shot`` (a bool) and ``decoder`` (``greedy`` when the line
        has none) filled in.

    Example
    -------
    >>> lines = [
    ...     {"stage": "test", "test_set": "test", "zero_shot": True, "CER": 80.0},
    ...     {"stage": "valid", "CER": 50.0},
    ...     {"stage": "test", "test_set": "test", "zero_shot": False, "CER": 40.0},
    ...     {"stage": "test", "test_set": "test", "zero_shot": False, "CER": 30.0},
    ... ]
    >>> [(r["zero_shot"], r["CER"]) for r in scored_tests(lines)]
    [(True, 80.0), (False, 30.0)]
    """
    found: dict[tuple, dict] = {}
    for record in stage_lines(records, "test"):
        row = dict(record)
        row["test_set"] = row.get("test_set") or "test"
        row["zero_shot"] = bool(row.get("zero_shot"))
        row["decoder"] = row.get("decoder") or "greedy"
        found[(row["test_set"], row["zero_shot"], row["decoder"])] = row
    return list(found.values())


def final_tests(records: list[dict], decoder: str = "greedy") -> dict:
    """Test set name -> final (fine-tuned) test record of one decoder.

    Example
    -------
    >>> lines = [
    ...     {"stage": "test", "test_set": "us", "zero_shot": True, "CER": 70.0},
    ...     {"stage": "test", "test_set": "us", "zero_shot": False, "CER": 20.0},
    ...     {"stage": "test", "test_set": "us", "decoder": "beam+lm", "CER": 15.0},
    ... ]
    >>> {k: r["CER"] for k, r in final_tests(lines).items()}
    {'us': 20.0}
    >>> {k: r["CER"] for k, r in final_tests(lines, "beam+lm").items()}
    {'us': 15.0}
    """
    return {
        r["test_set"]: r
        for r in scored_tests(records)
        if not r["zero_shot"] and r["decoder"] == decoder
    }


def zero_shot_tests(records: list[dict]) -> dict:
    """Test set name -> test record of the pretrained model before fine-tuning."""
    return {
        r["test_set"]: r
        for r in scored_tests(records)
        if r["zero_shot"] and r["decoder"] == "greedy"
    }


def has_zero_shot(run_dir: str | os.PathLike) -> bool:
    """Whether the run already scored its pretrained model before fine-tuning."""
    return bool(zero_shot_tests(read_metrics(run_dir)))


def is_finished(run_dir: str | os.PathLike) -> bool:
    """A run is finished when it wrote its model and a final (not zero-shot) test.

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> append_metrics(metrics_path(run), {"stage": "test", "zero_shot": False})
    >>> is_finished(run)  # no model/ yet
    False
    >>> (run / "model").mkdir()
    >>> _ = (run / "model" / "config.json").write_text("{}")
    >>> is_finished(run)
    True
    """
    if not (model_dir(run_dir) / CONFIG_FILE).exists():
        return False
    return any(not r["zero_shot"] for r in scored_tests(read_metrics(run_dir)))


# ---------------------------------------------------------------- checkpoints
#: What a run folder is, for error messages.
HOW_TO_RUN = (
    "Give the output folder of a recipe run (it holds hyperparams.yaml, "
    "metrics.jsonl and save/CKPT+*), e.g. results/CommonVoice/es_xfer/1234."
)


def find_best_checkpoint(run_dir: str | os.PathLike, min_key: str = BEST_KEY):
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

    Raises
    ------
    NoCheckpointError
        The run saved none.
    RunFolderError
        Not a run folder, or no checkpoint has ``min_key``.

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
        raise RunFolderError(
            f"{save} does not exist: {run_dir} is not a run folder. " + HOW_TO_RUN
        )
    checkpointer = Checkpointer(save)
    found = checkpointer.list_checkpoints()
    if only is not None:
        found = [c for c in found if c.path.name == only]
        if not found:
            raise RunFolderError(
                f"{run_dir}/CKPT.yaml could not be read as a checkpoint"
            )
        return found[0]
    if not found:
        raise NoCheckpointError(
            f"{save} holds no checkpoint (CKPT+*/CKPT.yaml): the run stopped before "
            "its first validation. Train at least one epoch, then export."
        )
    with_key = [c for c in found if c.meta.get(min_key) is not None]
    if not with_key:
        keys = sorted({k for c in found for k in c.meta})
        raise RunFolderError(
            f"no checkpoint in {save} has {min_key!r} in its meta (they have "
            f"{keys}); choose one of those with --min-key"
        )
    return checkpointer.find_checkpoint(min_key=min_key)


def run_folder_of(path: str | os.PathLike) -> Path:
    """The run folder of ``path``: itself, or the run of a ``CKPT+*`` folder."""
    path = Path(path)
    if (path / "CKPT.yaml").is_file():
        return path.parent.parent
    return path
