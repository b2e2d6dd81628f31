"""Kill-and-resume helpers shared by the fault tests (resume, rehearsal, ...).

A test runs a recipe through a *driver*: a small script that patches the Brain
(``driver_source``), then runs the recipe's ``train.py`` as ``__main__``. With
``PAUSE_EPOCH`` set in its environment, the driver writes ``PAUSE_FLAG`` (its pid;
``PAUSE_FLAG-rank<r>`` for process r > 0 of a torchrun) once the first intra-epoch
checkpoint of that epoch is complete, and waits to be killed: the kill lands at a
known point, with no race against a fast tiny model.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

_PAUSE = """
import os, runpy, sys, time
from pathlib import Path
from xlt_plugin.brain import CTCTransferBrain

save = CTCTransferBrain._save_intra_epoch_ckpt

def save_then_wait(self):
    save(self)
    if self.hparams.epoch_counter.current == int(os.environ.get("PAUSE_EPOCH", 0)):
        # One flag per process (torchrun sets RANK), holding its pid; a process
        # restarted by torchrun finds its flag and does not pause again.
        rank = int(os.environ.get("RANK", 0))
        flag = Path(os.environ["PAUSE_FLAG"] + (f"-rank{rank}" if rank else ""))
        if not flag.exists():
            flag.write_text(str(os.getpid()))
            time.sleep(600)

CTCTransferBrain._save_intra_epoch_ckpt = save_then_wait
"""

# SpectrogramDrop on (the recipes' default has no augmentation): random draws that
# a resumed run must replay exactly.
AUGMENTATION_PATCH = """
from speechbrain.augment.freq_domain import SpectrogramDrop
import xlt_plugin.recipe

load_recipe = xlt_plugin.recipe.load_recipe

def with_augmentation(argv=None):
    hparams, run_opts, hparams_file = load_recipe(argv)
    hparams["augmentation"] = SpectrogramDrop(
        drop_length_low=5, drop_length_high=15, drop_count_low=1,
        drop_count_high=2, dim=2,
    )
    return hparams, run_opts, hparams_file

xlt_plugin.recipe.load_recipe = with_augmentation
"""

_RUN = """
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def driver_source(patches: str = "") -> str:
    """A driver script: the pause patch, then ``patches``, then the recipe."""
    return _PAUSE + patches + _RUN


def spanish_run(corpus: Path, out: Path, epochs: int, every_steps: int) -> list[str]:
    """``train.py`` and the arguments of the fault tests' tiny Spanish run.

    From scratch, quartznet_tiny, batch 2, a checkpoint every ``every_steps``
    steps, dropout 0.1 (randomness a resumed run must replay).
    """
    recipe = REPO / "recipes" / "CommonVoice"
    return [
        str(recipe / "train.py"),
        str(recipe / "hparams" / "es_scratch.yaml"),
        f"--data_folder={corpus}",
        f"--output_folder={out}",
        "--encoder_preset=quartznet_tiny",
        "--batch_size=2",
        f"--number_of_epochs={epochs}",
        "--ckpt_interval_minutes=0",
        f"--ckpt_interval_steps={every_steps}",
        "--noprogressbar",
        "--dropout=0.1",
    ]


def env(**extra) -> dict:
    """The subprocess environment: one thread, this checkout importable."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)


def checkpoints(save: Path) -> list:
    """(folder, CKPT.yaml metadata) of a save folder, oldest first."""
    found = []
    for folder in sorted(Path(save).glob("CKPT+*")):
        meta = yaml.safe_load((folder / "CKPT.yaml").read_text())
        found.append((meta["unixtime"], folder, meta))
    return [(folder, meta) for _, folder, meta in sorted(found, key=lambda x: x[0])]


def metrics(out: Path) -> list[dict]:
    """``metrics.jsonl`` lines without their wall-clock fields (they differ)."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    for record in records:
        record.pop("seconds", None), record.pop("elapsed", None)
    return records


def assert_same_weights(a: Path, b: Path) -> None:
    """The exported models (``model/``) of two run folders are bit-identical."""
    import torch

    for name in ("model.ckpt", "head.ckpt"):
        left = torch.load(a / "model" / name, weights_only=True)
        right = torch.load(b / "model" / name, weights_only=True)
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), (name, key)


def kill_when_paused(victim: subprocess.Popen, flag: Path, save: Path) -> None:
    """SIGKILL ``victim`` once its driver paused after an intra-epoch checkpoint."""
    try:
        deadline = time.monotonic() + 300
        # Poll the save folder: the intra-epoch checkpoint, then the driver's flag.
        while not (
            flag.exists()
            and any("brain_intra_epoch_ckpt" in meta for _, meta in checkpoints(save))
        ):
            assert victim.poll() is None, victim.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no intra-epoch checkpoint came"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def kill_one_process_when_paused(
    launcher: subprocess.Popen, flag: Path, save: Path, rank: int = 1
) -> None:
    """SIGKILL process ``rank`` of a paused torchrun (every process paused first).

    The launcher is left running: torchrun notices the dead worker and stops the
    others (or restarts them all, with ``--max-restarts``).
    """
    flags = [flag] + [Path(f"{flag}-rank{r}") for r in range(1, rank + 1)]
    deadline = time.monotonic() + 300
    while not (
        all(f.exists() and f.read_text() for f in flags)
        and any("brain_intra_epoch_ckpt" in meta for _, meta in checkpoints(save))
    ):
        if launcher.poll() is not None:
            raise AssertionError(launcher.stderr.read()[-3000:])
        assert time.monotonic() < deadline, "no intra-epoch checkpoint came"
        time.sleep(0.05)
    os.kill(int(flags[rank].read_text()), signal.SIGKILL)
