"""A study folder read back, and the numbers its run folders give.

:class:`Study` opens ``study.json`` and every run's ``metrics.jsonl``; the
functions here derive what the report's sections share (parameters, seconds per
epoch, convergence, corpus minutes). Run files are read through
:mod:`xlt_plugin.runs`.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import torch

from xlt_plugin.runs import (
    final_tests,
    model_dir,
    read_metrics,
    read_remap_report,
    stage_lines,
    still_improving,
    trained_epochs,
    valid_curve,
    zero_shot_tests,
)


# ------------------------------------------------------------------ run files
def parameter_count(folder: Path) -> int | None:
    """Parameters of the exported model (encoder + head)."""
    from xlt_plugin.pretrained import ENCODER_FILE, HEAD_FILE

    total = 0
    for name in (ENCODER_FILE, HEAD_FILE):
        path = model_dir(folder) / name
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        total += sum(
            t.numel()
            for k, t in state.items()
            if "running" not in k and not k.endswith("num_batches_tracked")
        )
    return total


#: An epoch that took more than this many times its run's median training
#: seconds was paused (the study stopped mid-epoch, e.g. while a test suite used
#: the machine); contention alone (two runs and a test suite on 2 cores) took up
#: to 2.6x here. :func:`discount_pauses` counts such an epoch at the median.
PAUSED_EPOCH_FACTOR = 3.0


def discount_pauses(records: list[dict]) -> tuple[list[dict], int]:
    """The records with each paused epoch's training seconds at the run's median.

    A paused epoch (over :data:`PAUSED_EPOCH_FACTOR` times the median of the
    run's epochs, with 3 epochs or more) gives its excess back: its ``seconds``
    become the median, and every ``elapsed`` from that epoch on is that much
    lower, so seconds per epoch and seconds to a dev CER measure training, not
    the pause.

    Returns
    -------
    (records, paused)
        New records (the originals are left as they are) and how many epochs
        were discounted.

    Example
    -------
    >>> lines = [{"epoch": e, "stage": "train", "seconds": s, "elapsed": t}
    ...          for e, s, t in [(1, 10.0, 10.0), (2, 900.0, 910.0), (3, 11.0, 921.0)]]
    >>> fixed, paused = discount_pauses(lines)
    >>> [(r["seconds"], r["elapsed"]) for r in fixed], paused
    ([(10.0, 10.0), (11.0, 21.0), (11.0, 32.0)], 1)
    """
    train = [r for r in stage_lines(records, "train") if r.get("seconds") is not None]
    if len(train) < 3:
        return records, 0
    median = statistics.median(r["seconds"] for r in train)
    excess = {
        r["epoch"]: r["seconds"] - median
        for r in train
        if r["seconds"] > PAUSED_EPOCH_FACTOR * median
    }
    if not excess:
        return records, 0
    fixed = []
    for record in records:
        record = dict(record)
        if record.get("elapsed") is not None:
            record["elapsed"] -= sum(
                v for e, v in excess.items() if e <= record.get("epoch", 0)
            )
        if record.get("stage") == "train" and record["epoch"] in excess:
            record["seconds"] = median
        fixed.append(record)
    return fixed, len(excess)


def seconds_per_epoch(records: list[dict]) -> float | None:
    """Median training seconds per epoch.

    The median, as a run paused mid-epoch (a study stopped for a while, then
    continued) counts the pause in that epoch's seconds.

    Example
    -------
    >>> seconds_per_epoch([{"epoch": e, "stage": "train", "seconds": s}
    ...                    for e, s in enumerate([250.0, 1085.0, 240.0], 1)])
    250.0
    """
    train = [r["seconds"] for r in stage_lines(records, "train")]
    return statistics.median(train) if train else None


def epochs_to_reach(curve: list[dict], target: float) -> int | None:
    """First epoch whose dev CER is at or below ``target`` (None: never)."""
    for record in curve:
        if record["CER"] <= target + 1e-9:
            return record["epoch"]
    return None


def convergence_ratio(xfer: list[dict], scratch: list[dict]) -> dict:
    """Epochs transfer needs to reach scratch's best dev CER / epochs scratch needed.

    The same ratio in training seconds (each record's ``elapsed``, the run's
    cumulative training time) counts slower epochs, e.g. of a larger model.

    Arguments
    ---------
    xfer, scratch : list of dict
        Validation curves (:func:`valid_curve`).

    Returns
    -------
    dict
        ``target`` (scratch's best dev CER), ``scratch_epochs``, ``xfer_epochs``
        (None when never reached), ``ratio``, ``xfer_trained`` (the transfer's
        validated epochs), and ``scratch_seconds``, ``xfer_seconds``,
        ``seconds_ratio`` (None without ``elapsed``).

    Example
    -------
    >>> def curve(cers, seconds_per_epoch):
    ...     return [
    ...         {"epoch": e, "CER": c, "elapsed": seconds_per_epoch * e}
    ...         for e, c in enumerate(cers, start=1)
    ...     ]
    >>> r = convergence_ratio(curve([50, 35, 30], 20.0), curve([90, 60, 40], 10.0))
    >>> r["ratio"], r["seconds_ratio"]
    (0.6666666666666666, 1.3333333333333333)
    """
    keys = ("target", "scratch_epochs", "xfer_epochs", "ratio")
    keys += ("scratch_seconds", "xfer_seconds", "seconds_ratio", "xfer_trained")
    result = dict.fromkeys(keys)
    if not xfer or not scratch:
        return result
    result["xfer_trained"] = len(xfer)
    target = min(r["CER"] for r in scratch)
    scratch_epochs = epochs_to_reach(scratch, target)
    xfer_epochs = epochs_to_reach(xfer, target)
    result.update(
        target=target,
        scratch_epochs=scratch_epochs,
        xfer_epochs=xfer_epochs,
        ratio=xfer_epochs / scratch_epochs if xfer_epochs else None,
    )
    scratch_seconds = _elapsed_at(scratch, scratch_epochs)
    xfer_seconds = _elapsed_at(xfer, xfer_epochs)
    result.update(scratch_seconds=scratch_seconds, xfer_seconds=xfer_seconds)
    if scratch_seconds and xfer_seconds:
        result["seconds_ratio"] = xfer_seconds / scratch_seconds
    return result


def _elapsed_at(curve: list[dict], epoch: int | None) -> float | None:
    """Cumulative training seconds at the end of ``epoch`` (None if unknown)."""
    for record in curve:
        if record["epoch"] == epoch:
            return record.get("elapsed")
    return None


# --------------------------------------------------------------------- corpora
def corpus_sizes(folder: Path) -> dict:
    """Utterances and minutes per split of a Common Voice-layout folder.

    Minutes are None when ``clip_durations.tsv`` misses a clip of the split.
    """
    durations = {}
    path = folder / "clip_durations.tsv"
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                durations[row["clip"]] = float(row["duration[ms]"]) / 1000
    sizes = {}
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        known = [durations[r["path"]] for r in rows if r["path"] in durations]
        minutes = round(sum(known) / 60, 1) if len(known) == len(rows) else None
        sizes[split] = {"utterances": len(rows), "minutes": minutes}
    return sizes


# ----------------------------------------------------------------------- study
class Study:
    """A study folder: ``study.json`` plus ``runs/<name>/``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "study.json").read_text())
        self.runs = {r["name"]: r for r in self.manifest["runs"]}
        self.records, self.paused = {}, {}  # run -> records; -> paused epochs
        for name in self.runs:
            self.records[name], self.paused[name] = discount_pauses(
                read_metrics(self.path(name))
            )

    def corpus_folder(self, name: str) -> Path:
        """Corpus ``name``'s folder: the study's own ``data/<name>`` when there.

        The manifest keeps the folder as the run saw it, relative to the working
        directory it was started from; a report written from elsewhere (or a
        study folder moved whole) still finds its corpora.
        """
        own = self.folder / "data" / name
        if own.is_dir():
            return own
        return Path(self.manifest["corpora"][name]["folder"])

    def path(self, name: str) -> Path:
        """The folder of run ``name`` (that of its ``same_as`` run, if any)."""
        run = self.runs.get(name, {})
        return self.folder / "runs" / (run.get("same_as") or name)

    def select(self, **match) -> list[dict]:
        """Runs whose manifest fields equal ``match`` and that finished."""
        return [
            r
            for r in self.manifest["runs"]
            if all(r.get(k) == v for k, v in match.items())
            and final_tests(self.records[r["name"]])
        ]

    def final(self, run: dict, key: str = "CER", test_set: str | None = None):
        tests = final_tests(self.records[run["name"]])
        if test_set is not None:
            return tests[test_set][key] if test_set in tests else None
        return statistics.mean(t[key] for t in tests.values())

    def zero_shot(self, run: dict, key: str = "CER", test_set: str | None = None):
        tests = zero_shot_tests(self.records[run["name"]])
        if not tests:
            return None
        if test_set is not None:
            return tests[test_set][key] if test_set in tests else None
        return statistics.mean(t[key] for t in tests.values())

    def epochs(self, run: dict) -> int:
        return trained_epochs(self.records[run["name"]])

    def dev_cer(self, run: dict, epoch: int) -> float | None:
        """Dev CER after ``epoch`` epochs."""
        for record in valid_curve(self.records[run["name"]]):
            if record["epoch"] == epoch:
                return record["CER"]
        return None

    def still_improving(self, run: dict) -> float | None:
        """Dev CER points per epoch still being gained at the end, or None
        (:func:`xlt_plugin.runs.still_improving`)."""
        return still_improving(self.records[run["name"]])

    def best_dev_cer(self, run: dict) -> float | None:
        """The lowest dev CER of any epoch, or None before the first."""
        curve = valid_curve(self.records[run["name"]])
        return min(r["CER"] for r in curve) if curve else None

    def remap(self, run: dict) -> dict | None:
        return read_remap_report(self.path(run["name"]))


#: A best dev CER at or above this (%) is a run that did not learn: most
#: characters still wrong, the model barely past CTC's all-blank start.
NOT_LEARNED_CER = 75.0


def not_learned(study: Study, runs: list[dict], who: str) -> str:
    """A caveat for a claim against ``runs`` of which some never learned.

    A seed whose dev CER never went below :data:`NOT_LEARNED_CER` (a from-scratch
    run that did not leave CTC's blank plateau in its epochs) makes the spread
    of its side; the reader should know that the line compares with a failed
    start. Empty when every seed learned.

    Example
    -------
    >>> class Curves:
    ...     def best_dev_cer(self, run):
    ...         return run["best"]
    >>> runs = [{"seed": 1, "best": 26.2}, {"seed": 2, "best": 80.2}]
    >>> print(not_learned(Curves(), runs, "scratch").strip())
    ... # doctest: +NORMALIZE_WHITESPACE
    Caveat: scratch seed 2 of 2 never brought its dev CER below 75 % (best 80.2):
    a training that did not start makes the spread.
    >>> failed = [dict(r, best=90.0) for r in runs]
    >>> print(not_learned(Curves(), failed, "scratch").strip())
    ... # doctest: +NORMALIZE_WHITESPACE
    Caveat: scratch never brought its dev CER below 75 % in any of its 2 seeds
    (best 90.0, 90.0): on this data it did not learn.
    >>> not_learned(Curves(), runs[:1], "scratch")
    ''
    >>> "in its one seed (best 80.2)" in not_learned(Curves(), runs[1:], "scratch")
    True
    """
    best = {r["seed"]: study.best_dev_cer(r) for r in runs}
    failed = {s: b for s, b in best.items() if b is not None and b >= NOT_LEARNED_CER}
    if not failed:
        return ""
    values = ", ".join(f"{b:.1f}" for b in failed.values())
    limit = f"never brought its dev CER below {NOT_LEARNED_CER:.0f} %"
    if len(failed) == len(runs):
        seeds = "its one seed" if len(runs) == 1 else f"any of its {len(runs)} seeds"
        return (
            f" Caveat: {who} {limit} in {seeds} (best {values}): on this data it "
            "did not learn."
        )
    seeds = ", ".join(str(s) for s in failed)
    some = "s" if len(failed) > 1 else ""
    start = "trainings that did not start make" if some else (
        "a training that did not start makes")  # fmt: skip
    return (
        f" Caveat: {who} seed{some} {seeds} of {len(runs)} {limit} (best "
        f"{values}): {start} the spread."
    )


def epochs_cell(study: Study, runs: list[dict]) -> str:
    """Epochs trained, and how many seeds were still improving at the end
    (:meth:`Study.still_improving`): a table cell."""
    late = sum(study.still_improving(r) is not None for r in runs)
    cell = str(study.epochs(runs[0]))
    return f"{cell}, still improving ({late}/{len(runs)})" if late else cell


def _train_minutes(study: Study, data: str) -> float | None:
    if data not in study.manifest["corpora"]:
        return None
    try:
        return corpus_sizes(study.corpus_folder(data))["train"]["minutes"]
    except FileNotFoundError:
        return None
