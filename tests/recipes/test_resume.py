"""Faults: kill -9 in the middle of an epoch, half-written checkpoints, resuming.

A tiny Spanish-from-scratch run (quartznet_tiny, 3 epochs, dropout and
SpectrogramDrop augmentation on, a checkpoint every 2 steps) is run twice: once
uninterrupted, once killed with SIGKILL from this test after its first
intra-epoch checkpoint of epoch 2. Rerunning the same command must end with
exactly the uninterrupted run's metrics and weights (CPU, fixed seed, one thread:
the arithmetic is deterministic, so any difference is lost state). The same must
hold when the newest checkpoint was left half-written.
"""

import shutil
import subprocess
import sys

import faults
import pytest
import torch
from conftest import REPO
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.checkpoints import Checkpointer

from xlt_plugin.resume import (
    RandomStates,
    checkpoint_problem,
    set_aside_broken_checkpoints,
)

# Runs the recipe with SpectrogramDrop augmentation on (random draws the resumed
# run must replay). With PAUSE_EPOCH set, once the first intra-epoch checkpoint of
# that epoch is complete it writes PAUSE_FLAG and waits to be killed: the kill
# lands at a known point, with no race against a fast tiny model.
DRIVER = faults.driver_source(faults.AUGMENTATION_PATCH)


def _command(driver, corpus, out):
    return [str(driver), *faults.spanish_run(corpus, out, epochs=3, every_steps=2)]


def _run(args):
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=faults.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(corpora, tmp_path_factory):
    """An uninterrupted run, and a run killed in epoch 2 (not yet rerun)."""
    corpus = corpora("es", 16)
    root = tmp_path_factory.mktemp("resume")
    whole, killed, flag = root / "whole", root / "killed", root / "paused"
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    uninterrupted = subprocess.Popen(
        [sys.executable, *_command(driver, corpus, whole)],
        cwd=REPO,
        env=faults.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = subprocess.Popen(
        [sys.executable, *_command(driver, corpus, killed)],
        cwd=REPO,
        env=faults.env(PAUSE_EPOCH="2", PAUSE_FLAG=str(flag)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    faults.kill_when_paused(victim, flag, killed / "save")
    _, errors = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, errors[-3000:]
    return {"corpus": corpus, "whole": whole, "killed": killed, "driver": driver}


def test_killed_mid_epoch_reruns_to_the_uninterrupted_result(runs, tmp_path):
    out = tmp_path / "killed"
    shutil.copytree(runs["killed"], out)
    checkpoints = faults.checkpoints(out / "save")
    assert "brain_intra_epoch_ckpt" in checkpoints[-1][1]  # killed mid-epoch 2
    assert [r["epoch"] for r in faults.metrics(out)] == [1, 1]
    _run(_command(runs["driver"], runs["corpus"], out))
    whole = faults.metrics(runs["whole"])
    assert [r["stage"] for r in whole] == ["train", "valid"] * 3 + ["test"]
    assert faults.metrics(out) == whole  # losses, CER, WER, lr: every epoch, exactly
    faults.assert_same_weights(runs["whole"], out)


def _truncate_optimizer(folder):
    data = (folder / "optimizer.ckpt").read_bytes()
    (folder / "optimizer.ckpt").write_bytes(data[: len(data) // 2])


def _drop_last_files(folder):
    # SpeechBrain writes CKPT.yaml, then the files in recoverable order: killed
    # after the dataloader position, before the optimizer and the lr schedule.
    (folder / "optimizer.ckpt").unlink()
    (folder / "lr_scheduler.ckpt").unlink()


@pytest.mark.parametrize(
    "damage, problem",
    [
        (_truncate_optimizer, "optimizer.ckpt is truncated"),
        (_drop_last_files, "optimizer.ckpt is missing"),
    ],
)
def test_a_half_written_newest_checkpoint_is_set_aside(runs, tmp_path, damage, problem):
    out = tmp_path / "killed"
    shutil.copytree(runs["killed"], out)
    newest = faults.checkpoints(out / "save")[-1][0]
    damage(newest)
    proc = _run(_command(runs["driver"], runs["corpus"], out))
    assert (out / "save" / f"broken-{newest.name}").is_dir()  # kept, not deleted
    assert problem in proc.stderr + proc.stdout
    # It resumed from the end of epoch 1 instead, and still ends the same.
    assert faults.metrics(out) == faults.metrics(runs["whole"])
    faults.assert_same_weights(runs["whole"], out)


# ------------------------------------------------------------------ unit tests
class _Weights(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(64))


def _checkpointer(folder):
    model = _Weights()
    return model, Checkpointer(folder, recoverables={"model": model})


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda c: (c / "model.ckpt").unlink(), "model.ckpt is missing"),
        (lambda c: (c / "model.ckpt").write_bytes(b""), "model.ckpt is empty"),
        (
            lambda c: (c / "model.ckpt").write_bytes(
                (c / "model.ckpt").read_bytes()[:-60]
            ),
            "model.ckpt is truncated",
        ),
        (lambda c: (c / "CKPT.yaml").write_text(""), "CKPT.yaml is incomplete"),
        (lambda c: (c / "CKPT.yaml").write_text("a: [1,"), "CKPT.yaml is unread"),
    ],
)
def test_recovery_skips_a_damaged_newest_checkpoint(tmp_path, damage, problem):
    model, checkpointer = _checkpointer(tmp_path)
    model.w.data.fill_(1.0)
    checkpointer.save_checkpoint(name="older")
    model.w.data.fill_(2.0)
    newest = checkpointer.save_checkpoint(name="newer").path
    assert checkpoint_problem(newest, ["model"]) is None
    damage(newest)
    assert checkpoint_problem(newest, ["model"]).startswith(problem)
    moved = set_aside_broken_checkpoints(checkpointer)
    assert [m.name for m in moved] == ["broken-CKPT+newer"]
    model.w.data.fill_(0.0)
    assert checkpointer.recover_if_possible().path.name == "CKPT+older"
    assert torch.equal(model.w.data, torch.ones(64))


def test_a_flipped_byte_fails_the_crc(tmp_path):
    model, checkpointer = _checkpointer(tmp_path)
    model.w.data.normal_()
    folder = checkpointer.save_checkpoint(name="x").path
    data = bytearray((folder / "model.ckpt").read_bytes())
    at = data.index(model.w.data.numpy().tobytes()[:8])  # inside the tensor bytes
    data[at] ^= 0xFF
    (folder / "model.ckpt").write_bytes(bytes(data))
    assert "fails its CRC check" in checkpoint_problem(folder, ["model"])


def test_random_states_round_trip_and_defer_inside_an_epoch(tmp_path):
    import random

    import numpy as np

    path = tmp_path / "random_states.ckpt"
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    states = RandomStates()
    states._save(path)
    expected = (torch.rand(2), np.random.rand(2), random.random())

    def draws():
        return torch.rand(2), np.random.rand(2), random.random()

    def same(a, b):
        return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]

    states._load(path, end_of_epoch=True)
    assert same(draws(), expected)
    states._load(path, end_of_epoch=False)  # pending until the next batch
    assert not same(draws(), expected)
    states.apply_pending()
    assert same(draws(), expected)
    states.apply_pending()  # once only
    assert not same(draws(), expected)


@pytest.mark.parametrize("dynamic", [False, True])
def test_dataloader_position_survives_a_checkpoint(tmp_path, dynamic):
    """SpeechBrain's saved loader position, with sorted or dynamic batching."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    data = {f"u{i:02d}": {"duration": 1.0 + (i * 7) % 5} for i in range(20)}
    dataset = DynamicItemDataset(data).filtered_sorted(sort_key="duration")
    dataset.set_output_keys(["id"])

    def loader():
        if dynamic:
            sampler = DynamicBatchSampler(
                dataset,
                max_batch_length=6.0,
                num_buckets=3,
                length_func=lambda x: x["duration"],
                shuffle=True,
                batch_ordering="random",
            )
            sampler.set_epoch(2)
            return make_dataloader(dataset, batch_sampler=sampler)
        return make_dataloader(dataset, batch_size=3)

    full = [batch.id for batch in loader()]
    first = loader()
    checkpointer = Checkpointer(tmp_path, recoverables={"loader": first})
    iterator = iter(first)
    head = [next(iterator).id for _ in range(2)]
    checkpointer.save_checkpoint(end_of_epoch=False)
    resumed = loader()
    Checkpointer(tmp_path, recoverables={"loader": resumed}).recover_if_possible()
    assert head + [batch.id for batch in resumed] == full
