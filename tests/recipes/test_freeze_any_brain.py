"""Freezing, staged unfreezing and layer-wise lrs in a plain SpeechBrain ``Brain``.

No ``CTCTransferBrain`` and no Python for the freezing: the YAML freezes the
encoder by pattern (BatchNorm kept trainable), unfreezes it top-down through an
``UnfreezingEpochCounter`` and gives ``Brain`` an ``opt_class`` that builds
layer-wise parameter groups without the frozen parameters.
"""

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

BLOCK = """
    - !new:torch.nn.Sequential
        - !new:torch.nn.Linear [4, 4]
        - !new:torch.nn.BatchNorm1d [4]
        - !new:torch.nn.ReLU"""

YAML = (
    """
lr: 0.1
number_of_epochs: 4
save_folder: !PLACEHOLDER

encoder: !new:torch.nn.Sequential"""
    + BLOCK * 3
    + """
head: !new:torch.nn.Linear [4, 3]
modules:
    encoder: !ref <encoder>
    head: !ref <head>

# Block 0 stays frozen (its BatchNorm trains); 2 joins at epoch 2, 1 at epoch 3.
unfreezing: !new:xlt_plugin.freeze.StagedUnfreezing
    frozen: [encoder]
    unfreeze_at:
        2: [encoder.2]
        3: [encoder.1]
    keep_batchnorm_trainable: True

epoch_counter: !new:xlt_plugin.freeze.UnfreezingEpochCounter
    limit: !ref <number_of_epochs>
    unfreezing: !ref <unfreezing>
    modules: !ref <modules>

opt_class: !new:xlt_plugin.freeze.LayerwiseOptimizer
    optimizer: !name:torch.optim.SGD
        momentum: 0.9
        weight_decay: 0.01
    modules: !ref <modules>
    lr: !ref <lr>
    decay: 0.5
    layers: [head, encoder.2, encoder.1, encoder.0]
    unfreezing: !ref <unfreezing>

checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: !ref <save_folder>
    recoverables:
        encoder: !ref <encoder>
        head: !ref <head>
        counter: !ref <epoch_counter>
"""
)

LINEAR = {i: [f"encoder.{i}.0.weight", f"encoder.{i}.0.bias"] for i in range(3)}
BATCHNORM = [f"encoder.{i}.1.{p}" for i in range(3) for p in ("weight", "bias")]
HEAD = ["head.weight", "head.bias"]


class TinyBrain(sb.Brain):
    """The least a SpeechBrain user writes, plus a record of each epoch."""

    def compute_forward(self, batch, stage):
        return self.modules.head(self.modules.encoder(batch[0].to(self.device)))

    def compute_objectives(self, predictions, batch, stage):
        return torch.nn.functional.cross_entropy(predictions, batch[1])

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.record[epoch] = {
                "trainable": {
                    n for n, p in self.modules.named_parameters() if p.requires_grad
                },
                "params": _snapshot(self.modules),
            }
            self.checkpointer.save_checkpoint()


def _snapshot(modules):
    return {n: p.detach().clone() for n, p in modules.named_parameters()}


def _loader():
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, generator=gen), int(i % 3)) for i in range(24)]
    return torch.utils.data.DataLoader(data, batch_size=8)


def _run(save_folder, epochs):
    torch.manual_seed(0)
    hparams = load_hyperpyyaml(
        YAML, {"save_folder": str(save_folder), "number_of_epochs": epochs}
    )
    brain = TinyBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=hparams["checkpointer"],
    )
    brain.record = {}
    brain.initial = _snapshot(brain.modules)
    brain.fit(hparams["epoch_counter"], _loader())
    return brain


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full"), epochs=4)


def test_frozen_parameters_are_not_in_the_optimizer(uninterrupted):
    brain = uninterrupted
    groups = [(g["name"], g["lr"]) for g in brain.optimizer.param_groups]
    assert groups == [
        ("head", 0.1),
        ("encoder.2", 0.05),
        ("encoder.1", 0.025),
        ("encoder.0", 0.0125),
    ]
    names = {id(p): n for n, p in brain.modules.named_parameters()}
    in_groups = [
        [names[id(p)] for p in g["params"]] for g in brain.optimizer.param_groups
    ]
    assert in_groups[0] == HEAD
    assert sorted(in_groups[1]) == sorted(LINEAR[2] + BATCHNORM[4:])
    assert sorted(in_groups[2]) == sorted(LINEAR[1] + BATCHNORM[2:4])
    assert in_groups[3] == BATCHNORM[:2]  # block 0: only its BatchNorm
    for group in brain.optimizer.param_groups:  # the optimizer's own options kept
        assert group["momentum"] == 0.9 and group["weight_decay"] == 0.01


def test_frozen_parameters_do_not_change(uninterrupted):
    brain, initial = uninterrupted, uninterrupted.initial
    for epoch, record in brain.record.items():
        for name in LINEAR[0]:  # never unfrozen
            assert torch.equal(record["params"][name], initial[name]), (epoch, name)
    for name in LINEAR[1]:  # frozen until epoch 3
        assert torch.equal(brain.record[2]["params"][name], initial[name]), name
        assert not torch.equal(brain.record[3]["params"][name], initial[name]), name
    for name in LINEAR[2] + BATCHNORM + HEAD:
        assert not torch.equal(brain.record[4]["params"][name], initial[name]), name


def test_stages_unfreeze_the_right_blocks_at_the_right_epoch(uninterrupted):
    always = set(HEAD + BATCHNORM)
    expected = {
        1: always,
        2: always | set(LINEAR[2]),
        3: always | set(LINEAR[2] + LINEAR[1]),
        4: always | set(LINEAR[2] + LINEAR[1]),
    }
    assert {e: r["trainable"] for e, r in uninterrupted.record.items()} == expected


def test_a_resumed_run_unfreezes_on_schedule_and_ends_the_same(uninterrupted, tmp_path):
    first = _run(tmp_path, epochs=2)
    assert set(first.record) == {1, 2}
    resumed = _run(tmp_path, epochs=4)  # recovers the counter at epoch 2
    assert set(resumed.record) == {3, 4}
    for epoch in (3, 4):
        assert (
            resumed.record[epoch]["trainable"]
            == (uninterrupted.record[epoch]["trainable"])
        )
    final, expected = resumed.record[4]["params"], uninterrupted.record[4]["params"]
    for name in expected:
        assert torch.equal(final[name], expected[name]), name
