"""A checkpoint that cannot be written (full disk, read-only folder).

The run stops with a message naming the folder, the error and what to free; the
incomplete checkpoint folder is removed; the previous checkpoint stays intact and
a rerun resumes from it.
"""

import errno

import pytest
import torch
from conftest import tiny_ctc_brain
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from xlt_plugin.resume import CheckpointWriteError, checkpoint_problem

TEXTS = ["hola", "sí", "no", "casa"]


def _brain(tmp_path, epochs):
    counter = EpochCounter(epochs)
    checkpointer = Checkpointer(tmp_path / "save", {"counter": counter})
    return tiny_ctc_brain(
        TEXTS,
        checkpointer=checkpointer,
        epoch_counter=counter,
        number_of_epochs=epochs,
        output_folder=str(tmp_path),
    )


def _fit(brain, dataset):
    loader = {"batch_size": 2}
    brain.fit(brain.hparams.epoch_counter, dataset, dataset, loader, loader)


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_failed_checkpoint_write_stops_clearly_and_keeps_the_last_one(
    tmp_path, monkeypatch, code, words
):
    brain, dataset = _brain(tmp_path, epochs=2)
    real_save, folders = torch.save, []

    def save_until_epoch_two(obj, path, *args, **kwargs):
        folder = str(path).rsplit("/", 1)[0]
        if folder not in folders:
            folders.append(folder)
        if len(folders) > 1:  # the second checkpoint (end of epoch 2)
            raise OSError(code, words)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_epoch_two)
    with pytest.raises(CheckpointWriteError) as caught:
        _fit(brain, dataset)
    message = str(caught.value)
    save = tmp_path / "save"
    assert str(save) in message and words in message
    assert errno.errorcode[code] in message and "rerun the same command" in message
    assert caught.value.errno == code
    left = sorted(save.glob("CKPT+*"))
    assert len(left) == 1 and left[0].name in message  # the partial one is gone
    assert checkpoint_problem(left[0], ["encoder", "head", "counter"]) is None

    monkeypatch.setattr(torch, "save", real_save)
    again, dataset = _brain(tmp_path, epochs=2)
    _fit(again, dataset)  # resumes after epoch 1 and finishes
    assert again.hparams.epoch_counter.current == 2
    assert len(sorted(save.glob("CKPT+*"))) == 1
