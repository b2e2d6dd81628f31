"""A lock a run takes on its output folder, so that two runs never share one.

Two runs writing one output folder interleave their checkpoints, logs and
metrics, and either may resume from the other's checkpoint. A run takes
:func:`acquire_run_lock` on its folder before it writes anything there; a
second run on that folder is then refused with a message that names the first
(pid, host, command, since when) and says what to do.

The lock is an ``fcntl.flock`` on ``<folder>/.xlt_run.lock``, which the kernel
releases when the holding process ends, however it ends (``kill -9``, a crash,
an out-of-memory kill): a dead run never holds its folder, and no one has to
delete anything. The file stays after the run (deleting a lock file races with
the next run opening it); it names its holder while held and is emptied on
release. Where ``fcntl`` does not exist (Windows), a pid file created
exclusively stands in, and a holder counts as gone when its pid no longer runs
on this host (a reused pid keeps the folder locked until that process ends).

Within one process the lock is re-entrant: a process that holds a folder may
acquire it again (recipe steps called one by one, as the tests do, or runs
started in-process one after the other on one folder); the folder is let go
when every acquisition is released, or when the process ends. Children forked
by the holder (data-loader workers) keep the lock alive while they live; any
other process is refused.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: the pid-file fallback
    fcntl = None

#: The lock file, inside the output folder.
LOCK_NAME = ".xlt_run.lock"


class RunLockedError(RuntimeError):
    """Another live run holds the output folder."""


@dataclass
class _Held:
    fd: int | None  # the flock'ed descriptor (None for a pid file)
    pid: int  # the process that acquired it (a forked child is not it)
    count: int = 1


_HELD: dict[str, _Held] = {}
_REGISTRY = threading.Lock()


@dataclass
class RunLock:
    """A held lock on an output folder, from :func:`acquire_run_lock`.

    Arguments
    ---------
    path : Path
        The lock file.
    holder : dict
        What the lock file says: ``pid``, ``host``, ``command``, ``since``.
    """

    path: Path
    holder: dict
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        """Let this acquisition go (the folder is free after the last one)."""
        with _REGISTRY:
            key = os.path.realpath(self.path)
            held = _HELD.get(key)
            if self._released or held is None or held.pid != os.getpid():
                return
            self._released = True
            held.count -= 1
            if held.count:
                return
            del _HELD[key]
            if held.fd is None:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(held.fd, 0)  # an empty lock file: nobody holds it
                fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_run_lock(folder: str | os.PathLike, command: str | None = None) -> RunLock:
    """Lock ``folder`` for this run, or refuse if another live run holds it.

    The lock lasts until :meth:`RunLock.release` (or the ``with`` block) or the
    end of the process, whichever comes first: nothing needs to keep the
    returned object alive.

    Arguments
    ---------
    folder : path
        The run's output folder (created if missing).
    command : str, optional
        Shown to a run that is refused; default this process's command line.

    Returns
    -------
    RunLock

    Raises
    ------
    RunLockedError
        Another process holds the folder: the message names it and says what
        to do.

    Example
    -------
    >>> out = getfixture("tmp_path") / "run"
    >>> with acquire_run_lock(out, command="train.py es.yaml") as lock:
    ...     lock.holder["command"], (out / LOCK_NAME).exists()
    ('train.py es.yaml', True)
    >>> (out / LOCK_NAME).read_text()  # released: nobody holds it
    ''
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(sys.argv) or sys.executable,
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    with _REGISTRY:
        key = os.path.realpath(path)
        held = _HELD.get(key)
        if held is not None and held.pid == os.getpid():
            held.count += 1
            return RunLock(path, read_holder(folder) or holder)
        fd = _flock(path, holder) if fcntl else _pid_file(path, holder)
        _HELD[key] = _Held(fd, os.getpid())
    return RunLock(path, holder)


def read_holder(folder: str | os.PathLike) -> dict:
    """What ``folder``'s lock file says about its holder (``{}``: nobody, unknown).

    Arguments
    ---------
    folder : path
        An output folder.

    Returns
    -------
    dict
        ``pid``, ``host``, ``command``, ``since``; empty when the file is
        missing, empty (released) or unreadable.
    """
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _flock(path: Path, holder: dict) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # EWOULDBLOCK: held by another open file, in any process
        os.close(fd)
        raise RunLockedError(_refusal(path, read_holder(path.parent))) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    return fd


def _pid_file(path: Path, holder: dict) -> None:
    """Create ``path`` exclusively, taking over one whose holder has died."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = read_holder(path.parent)
            if _holder_alive(other):
                raise RunLockedError(_refusal(path, other)) from None
            path.unlink(missing_ok=True)  # its run is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(holder) + "\n")
        return None
    raise RunLockedError(_refusal(path, read_holder(path.parent)))


def _holder_alive(holder: dict) -> bool:
    """Whether a pid file's holder may still run (unknown ones count as alive)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return bool(holder)  # another host's process cannot be checked from here
    if os.name == "nt":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only checks that the pid exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows.
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
    kernel32.CloseHandle(handle)
    return code.value == 259  # STILL_ACTIVE


def _refusal(path: Path, holder: dict) -> str:
    folder = path.parent
    if holder:
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, running since "
            f"{holder.get('since')}: {holder.get('command')}"
        )
        stop = f"stop it (`kill {holder.get('pid')}` on {holder.get('host')})"
        if fcntl and not _holder_alive(holder):
            who += (
                "; that pid has exited, but a process it started (a data-loader "
                f"worker?) still holds the lock: `fuser {path}` names it"
            )
            stop = "stop that process"
    else:
        who = "a process that has not written its name yet"
        stop = "stop it"
    return (
        f"Output folder {folder} is in use by another run ({who}). Two runs in "
        "one folder would overwrite each other's checkpoints and logs. Wait for "
        f"that run to end, {stop}, or give this run another --output_folder. "
        f"The lock ({path}) goes away by itself when that process ends; "
        "deleting it does not stop that run."
    )
