"""Two runs, one folder: the second is refused by name; a dead run holds nothing."""

import json
import signal
import socket
import subprocess
import sys

import pytest

from xlt_plugin import runlock
from xlt_plugin.runlock import (
    LOCK_NAME,
    RunLockedError,
    acquire_run_lock,
    read_holder,
)

COMMAND = "train.py hparams/es_xfer.yaml --seed=3"
#: A run in another process: takes the lock, says so, then sleeps.
HOLD = f"""
import sys, time
from xlt_plugin.runlock import acquire_run_lock
acquire_run_lock(sys.argv[1], command={COMMAND!r})
print("held", flush=True)
time.sleep(600)
"""
#: Another process trying once: prints what happened.
TRY = """
import sys
from xlt_plugin.runlock import RunLockedError, acquire_run_lock
try:
    acquire_run_lock(sys.argv[1])
except RunLockedError:
    print("refused")
else:
    print("acquired")
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process holding ``tmp_path / "out"``; yields (process, folder)."""
    folder = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc, folder
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _other_process_tries(folder) -> str:
    done = subprocess.run(
        [sys.executable, "-c", TRY, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_a_second_run_is_refused_with_the_first_runs_name(holder):
    proc, folder = holder
    with pytest.raises(RunLockedError) as err:
        acquire_run_lock(folder)
    message = str(err.value)
    for part in (
        f"Output folder {folder} is in use by another run",
        f"pid {proc.pid} on {socket.gethostname()}",
        "running since 20",
        COMMAND,
        f"`kill {proc.pid}` on",
        "another --output_folder",
        str(folder / LOCK_NAME),
    ):
        assert part in message, (part, message)
    assert read_holder(folder)["pid"] == proc.pid  # the refusal changed nothing


def test_a_killed_run_leaves_a_lock_the_next_run_takes(holder):
    proc, folder = holder
    proc.send_signal(signal.SIGKILL)  # no cleanup at all: the kernel lets go
    proc.wait()
    assert read_holder(folder)["pid"] == proc.pid  # the file still names it
    with acquire_run_lock(folder, command="rerun") as lock:
        assert read_holder(folder) == lock.holder
        assert lock.holder["command"] == "rerun"
    assert read_holder(folder) == {}


def test_the_same_process_may_take_its_folder_again(tmp_path):
    """Re-entrant: recipe steps run one by one in a process take it each time."""
    folder = tmp_path / "out"
    first = acquire_run_lock(folder)
    second = acquire_run_lock(folder)
    assert second.holder == first.holder
    first.release()
    first.release()  # once per acquisition: this one is spent
    assert _other_process_tries(folder) == "refused"
    second.release()
    assert _other_process_tries(folder) == "acquired"


def test_without_fcntl_a_pid_file_stands_in(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "fcntl", None)
    folder = tmp_path / "out"
    folder.mkdir()
    lock_file = folder / LOCK_NAME
    # A dead holder: a process that has ended.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = {"pid": int(gone.stdout), "host": socket.gethostname(), "since": "x"}
    lock_file.write_text(json.dumps(stale))
    with acquire_run_lock(folder, command="mine") as lock:
        assert read_holder(folder)["command"] == "mine" == lock.holder["command"]
    assert not lock_file.exists()  # released: the pid file is gone

    # A live holder on this host, and one on another host: both refuse.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for host in (socket.gethostname(), "elsewhere"):
            live = {
                "pid": sleeper.pid,
                "host": host,
                "since": "9:00",
                "command": "x.py",
            }
            lock_file.write_text(json.dumps(live))
            with pytest.raises(RunLockedError, match=f"pid {sleeper.pid} on {host}"):
                acquire_run_lock(folder)
    finally:
        sleeper.kill()
        sleeper.wait()
