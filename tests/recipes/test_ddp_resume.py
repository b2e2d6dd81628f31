"""Faults under DDP: one process of a 2-process torchrun (gloo, CPU) killed mid-epoch.

The tiny Spanish-from-scratch run of test_resume.py (quartznet_tiny, 2 epochs,
dropout and SpectrogramDrop on, a checkpoint every step) is launched with
``torchrun --nproc_per_node=2``. Both processes pause after their first
intra-epoch checkpoint of epoch 2 and the test SIGKILLs process 1 only; torchrun
then stops process 0. Rerunning the same command, or letting
``torchrun --max-restarts=1`` restart the processes by itself, must end with
exactly the metrics and weights of an uninterrupted 2-process run: the sampler
position and every process's random states are in the checkpoint (process 0
gathers the states of all processes into it), and gloo's sum of two gradients
does not depend on their order.
"""

import subprocess
import sys

import faults
import pytest
import torch
from conftest import REPO

DRIVER = faults.driver_source(faults.AUGMENTATION_PATCH)
# Without it, processes restarted by torchrun can read their peers' addresses of
# the previous attempt from torchrun's shared store and fail to connect
# (pytorch/pytorch#135712); the README's DDP section says to set it.
RESTARTABLE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def _torchrun(driver, corpus, out, restarts=0):
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # c10d rendezvous on a free port: restarts re-rendezvous
        "--nproc_per_node=2",
        f"--max-restarts={restarts}",
        "--monitor-interval=0.1",
        str(driver),
        *faults.spanish_run(corpus, out, epochs=2, every_steps=1),
        "--distributed_backend=gloo",
        "--device=cpu",
    ]


def _start(command, **env):
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=faults.env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc) -> tuple[int, str]:
    try:
        _, errors = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, errors


@pytest.fixture(scope="module")
def runs(corpora, tmp_path_factory):
    """The uninterrupted 2-process run, and its driver and corpus."""
    corpus = corpora("es", 16)
    root = tmp_path_factory.mktemp("ddp_resume")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    whole = _start(_torchrun(driver, corpus, root / "whole"))
    code, errors = _finish(whole)
    assert code == 0, errors[-3000:]
    assert "terminate called" not in errors  # a clean exit (test_ddp_equivalence)
    # Only process 0 writes the metrics: one line per stage, not two.
    stages = [r["stage"] for r in faults.metrics(root / "whole")]
    assert stages == ["train", "valid"] * 2 + ["test"]
    return {"corpus": corpus, "driver": driver, "whole": root / "whole"}


def _assert_same_run(reference, out):
    whole = faults.metrics(reference)
    assert [r["stage"] for r in whole] == ["train", "valid"] * 2 + ["test"]
    assert faults.metrics(out) == whole  # losses, CER, WER, lr: exactly
    faults.assert_same_weights(reference, out)


def _kill_process_1(runs, out, restarts):
    flag = out.parent / f"{out.name}-paused"
    launcher = _start(
        _torchrun(runs["driver"], runs["corpus"], out, restarts),
        PAUSE_EPOCH="2",
        PAUSE_FLAG=str(flag),
        **RESTARTABLE,
    )
    try:
        faults.kill_one_process_when_paused(launcher, flag, out / "save", rank=1)
    except BaseException:
        launcher.kill()
        raise
    return _finish(launcher)


def test_rerun_after_one_process_was_killed_matches_the_uninterrupted_run(
    runs, tmp_path
):
    out = tmp_path / "killed"
    code, errors = _kill_process_1(runs, out, restarts=0)
    assert code != 0, "torchrun should fail when one of its processes is killed"
    checkpoints = faults.checkpoints(out / "save")
    assert "brain_intra_epoch_ckpt" in checkpoints[-1][1]  # killed mid-epoch 2
    assert [r["epoch"] for r in faults.metrics(out)] == [1, 1]
    rerun = _start(_torchrun(runs["driver"], runs["corpus"], out))
    code, errors = _finish(rerun)
    assert code == 0, errors[-3000:]
    assert "terminate called" not in errors
    _assert_same_run(runs["whole"], out)


def test_torchrun_max_restarts_resumes_by_itself(runs, tmp_path):
    out = tmp_path / "restarted"
    code, errors = _kill_process_1(runs, out, restarts=1)
    assert code == 0, errors[-3000:]
    assert "exitcode: -9" in errors  # process 1 was killed, and torchrun went on
    assert "terminate called" not in errors
    _assert_same_run(runs["whole"], out)


def test_a_checkpoint_holds_the_random_states_of_both_processes(runs):
    saved = faults.checkpoints(runs["whole"] / "save")[-1][0]
    states = torch.load(saved / "random_states.ckpt", weights_only=True)
    per_process = states["per_process"]
    assert len(per_process) == 2
    # Each process draws its own dropout and masks: different generator states.
    assert not torch.equal(per_process[0]["torch"], per_process[1]["torch"])
    assert not list(saved.glob("*-rank*"))  # one file, written by process 0
