"""What makes a killed run resume exactly: checkpointed run totals and random
states, and a guard against half-written checkpoints.

A run killed at any point (``kill -9`` included) and started again with the same
command resumes from its last checkpoint and, on CPU with a fixed seed, ends where
an uninterrupted run ends: checkpoints keep the random-number states (torch, numpy,
``random``; per DDP process) besides SpeechBrain's dataloader position, and a
checkpoint folder left half-written by the kill is set aside (renamed
``broken-CKPT+...``, never deleted) instead of being loaded.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class RunClock:
    """Run totals kept in checkpoints so a resumed run adds up.

    ``elapsed`` training seconds and ``nonfinite_skipped`` batches so far.
    """

    def __init__(self):
        self.elapsed = 0.0
        self.nonfinite_skipped = 0

    @mark_as_saver
    def _save(self, path):
        totals = {"elapsed": self.elapsed, "nonfinite_skipped": self.nonfinite_skipped}
        Path(path).write_text(json.dumps(totals))

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        totals = json.loads(Path(path).read_text())
        self.elapsed = totals["elapsed"]
        self.nonfinite_skipped = totals.get("nonfinite_skipped", 0)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


@functools.partial(register_checkpoint_hooks, save_on_main_only=False)
class RandomStates:
    """The random-number states of this process, saved and restored exactly.

    Dropout and augmentation draw from torch's global generator; samplers and
    user code may draw from numpy's and Python's. Under DDP every process has its
    own states: process 0 gathers them all and writes them in one file (a
    per-process file could be missing from a checkpoint whose other files are
    complete, when one process is killed while the others go on), and each
    process resumes from its own entry.

    A state saved inside an epoch is applied at the first training batch after
    recovery (:meth:`apply_pending`), not at recovery: between the two, creating
    the dataloader iterator draws a seed from torch's generator, which the
    uninterrupted run drew before saving. A state saved at the end of an epoch is
    applied at once: the uninterrupted run's next draw is that same iterator seed.

    Example
    -------
    >>> states = RandomStates()
    >>> path = getfixture("tmp_path") / "random_states.ckpt"
    >>> _ = torch.manual_seed(0)
    >>> states._save(path)
    >>> first = torch.rand(3)
    >>> states._load(path, end_of_epoch=True)
    >>> torch.equal(torch.rand(3), first)
    True
    """

    def __init__(self):
        self.pending = None

    @staticmethod
    def capture() -> dict:
        """The current states, as tensors and plain numbers (``weights_only``)."""
        np_state = np.random.get_state()
        py_version, py_internal, py_gauss = random.getstate()
        states = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": {
                "version": py_version,
                "internal": torch.tensor(py_internal, dtype=torch.int64),
                "gauss": py_gauss,
            },
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    @staticmethod
    def restore(states: dict) -> None:
        """Set the generators to ``states`` (from :meth:`capture`)."""
        torch.set_rng_state(states["torch"])
        np_state = states["numpy"]
        np.random.set_state(
            (
                "MT19937",
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached_gaussian"],
            )
        )
        py = states["python"]
        internal = tuple(int(x) for x in py["internal"].tolist())
        random.setstate((py["version"], internal, py["gauss"]))
        cuda = states.get("cuda")
        if cuda is not None and torch.cuda.is_available():
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:
                logger.warning(
                    "CUDA random states saved for %d devices, %d visible: not "
                    "restored (the resumed run is not bit-exact).",
                    len(cuda),
                    torch.cuda.device_count(),
                )

    def apply_pending(self) -> None:
        """Restore states recovered from an intra-epoch checkpoint, once."""
        if self.pending is not None:
            self.restore(self.pending)
            self.pending = None

    @mark_as_saver
    def _save(self, path):
        states = self.capture()
        if _world_size() > 1:
            # A collective: every process calls it (save_on_main_only=False).
            gathered = [None] * _world_size() if _rank() == 0 else None
            torch.distributed.gather_object(states, gathered, dst=0)
            states = {"per_process": gathered}
        if _rank() == 0:
            torch.save(states, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        states = torch.load(path, map_location="cpu", weights_only=True)
        if "per_process" in states:
            per_process, rank = states["per_process"], _rank()
            if rank >= len(per_process) or _world_size() != len(per_process):
                logger.warning(
                    "%s holds the random states of %d processes; this run has %d: "
                    "process %d resumes with process %d's (not bit-exact).",
                    path,
                    len(per_process),
                    _world_size(),
                    rank,
                    min(rank, len(per_process) - 1),
                )
            states = per_process[min(rank, len(per_process) - 1)]
        elif _world_size() > 1:
            logger.warning(
                "%s holds one process's random states; every process of this "
                "run resumes with them (not bit-exact).",
                path,
            )
        self.pending = None
        if end_of_epoch:
            self.restore(states)
        else:
            self.pending = states


def checkpoint_problem(folder: str | os.PathLike, required=()) -> str | None:
    """Why a SpeechBrain checkpoint folder cannot be resumed from, or None.

    SpeechBrain writes ``CKPT.yaml`` first, then one file per recoverable, in
    place: a run killed while saving leaves a folder that looks like a
    checkpoint but lacks files or holds a truncated one. Every ``.ckpt`` written
    by ``torch.save`` is a zip whose members carry CRCs, so truncation and
    corruption are both caught without unpickling anything.

    Arguments
    ---------
    folder : path
        A ``CKPT+...`` folder.
    required : iterable of str
        Recoverable names whose ``<name>.ckpt`` must be there.

    Returns
    -------
    str or None

    Example
    -------
    >>> ckpt = getfixture("tmp_path") / "CKPT+x"
    >>> ckpt.mkdir()
    >>> _ = (ckpt / "CKPT.yaml").write_text("end-of-epoch: true")
    >>> torch.save({"w": torch.zeros(100)}, ckpt / "model.ckpt")
    >>> checkpoint_problem(ckpt, ["model"]) is None
    True
    >>> data = (ckpt / "model.ckpt").read_bytes()
    >>> _ = (ckpt / "model.ckpt").write_bytes(data[: len(data) // 2])
    >>> checkpoint_problem(ckpt, ["model"])  # doctest: +ELLIPSIS
    'model.ckpt is truncated or corrupt (...)'
    >>> checkpoint_problem(ckpt, ["model", "optimizer"])
    'optimizer.ckpt is missing'
    """
    folder = Path(folder)
    try:
        meta = yaml.safe_load((folder / "CKPT.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return f"CKPT.yaml is unreadable ({err})"
    if not isinstance(meta, dict) or "end-of-epoch" not in meta:
        return "CKPT.yaml is incomplete"
    for name in required:
        if not (folder / f"{name}.ckpt").is_file():
            return f"{name}.ckpt is missing"
    for path in sorted(folder.glob("*.ckpt")):
        if path.stat().st_size == 0:
            return f"{path.name} is empty"
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        if not is_zip:
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            return f"{path.name} is truncated or corrupt ({err})"
        if bad is not None:
            return f"{path.name} is corrupt (member {bad} fails its CRC check)"
    return None


def set_aside_broken_checkpoints(checkpointer) -> list[Path]:
    """Rename every unusable ``CKPT+*`` folder to ``broken-CKPT+*`` and say so.

    Renamed, not deleted: nothing is lost, and SpeechBrain no longer sees them
    (it only lists folders named ``CKPT+*`` with a ``CKPT.yaml``).

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer

    Returns
    -------
    list of Path
        The renamed folders.
    """
    root = Path(checkpointer.checkpoints_dir)
    if not root.is_dir():
        return []
    optional = getattr(checkpointer, "optional_recoverables", {})
    required = [n for n in checkpointer.recoverables if not optional.get(n)]
    moved = []
    for folder in sorted(root.glob("CKPT+*")):
        if not folder.is_dir():
            continue
        problem = checkpoint_problem(folder, required)
        if problem is None:
            continue
        target, n = folder.with_name("broken-" + folder.name), 1
        while target.exists():  # set aside before, under the same name
            n += 1
            target = folder.with_name(f"broken{n}-{folder.name}")
        os.replace(folder, target)
        moved.append(target)
        logger.warning(
            "Checkpoint %s is unusable (%s; the run was probably killed while "
            "saving it): set aside as %s, resuming from the previous one. Delete "
            "it once you no longer need it.",
            folder,
            problem,
            target.name,
        )
    return moved


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, read-only folder, quota)."""


def save_or_explain(checkpointer, save, *args, **kwargs):
    """Run ``save(*args, **kwargs)``; on a write error stop with what to free.

    SpeechBrain writes a checkpoint's ``CKPT.yaml`` first and its files after,
    so a save that fails half-way (``ENOSPC``, ``EROFS``, ``EACCES``, a quota)
    leaves a folder that looks like a checkpoint. Its partial folder is removed
    here (it holds nothing usable, and the space is what the user lacks), the
    complete checkpoints before it are untouched (SpeechBrain deletes old ones
    only after a successful save), and the run stops with a message naming the
    folder, the error, the last good checkpoint and the space one needs.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        Whose ``checkpoints_dir`` the save writes into.
    save : callable
        The saving call, e.g. ``checkpointer.save_and_keep_only``.
    *args, **kwargs
        Passed to ``save``.

    Returns
    -------
    What ``save`` returns.

    Raises
    ------
    CheckpointWriteError
        When ``save`` raised an ``OSError``.

    Example
    -------
    >>> import errno, tempfile
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"w": torch.nn.Linear(2, 2)})
    >>> _ = save_or_explain(ckpt, ckpt.save_checkpoint)
    >>> def full_disk():
    ...     (Path(ckpt.checkpoints_dir) / "CKPT+partial").mkdir()
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    >>> try:
    ...     save_or_explain(ckpt, full_disk)
    ... except CheckpointWriteError as err:
    ...     print(str(err).startswith("Could not write a checkpoint in"), err.errno)
    True 28
    >>> sorted(p.name.startswith("CKPT+") for p in Path(ckpt.checkpoints_dir).iterdir())
    [True]
    """
    root = Path(checkpointer.checkpoints_dir)
    before = set(root.glob("CKPT+*")) if root.is_dir() else set()
    try:
        return save(*args, **kwargs)
    except OSError as err:
        partial = sorted(set(root.glob("CKPT+*")) - before) if root.is_dir() else []
        for folder in partial:
            shutil.rmtree(folder, ignore_errors=True)
        complete = sorted(before, key=lambda p: p.stat().st_mtime)
        if complete:
            last = complete[-1]
            size = sum(f.stat().st_size for f in last.rglob("*") if f.is_file())
            kept = (
                f"the last complete checkpoint, {last.name}, is intact; one "
                f"checkpoint here takes about {size / 2**20:.1f} MB"
            )
        else:
            kept = "no complete checkpoint was written before this one"
        code = errno.errorcode.get(err.errno, "error") if err.errno else "error"
        error = CheckpointWriteError(
            f"Could not write a checkpoint in {root}: {err.strerror or err} "
            f"({code}). The incomplete checkpoint was removed and {kept}. Free "
            f"space on that disk (`df -h {root}`) or make the folder writable "
            "(or choose another --output_folder), then rerun the same command: "
            "training resumes from the last complete checkpoint."
        )
        error.errno = err.errno
        raise error from err
