"""Tests for xlt_plugin.freeze: patterns, freezing, staged unfreezing, layer-wise LR."""

import warnings

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from xlt_plugin.freeze import (
    StagedUnfreezing,
    default_layers,
    first_blocks,
    freeze,
    layerwise_param_groups,
    select_parameters,
    set_frozen_batchnorm_eval,
    trainable_summary,
    unfreeze,
)

NUM_BLOCKS = 15
CHANNELS = 4
VOCAB = 5


class Block(torch.nn.Module):
    """Stand-in QuartzNet block: conv + BatchNorm under ``mconv``."""

    def __init__(self, channels):
        super().__init__()
        self.mconv = torch.nn.Sequential(
            torch.nn.Conv1d(channels, channels, 3, padding=1),
            torch.nn.BatchNorm1d(channels),
        )
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.mconv(x))


class StandInEncoder(torch.nn.Module):
    """Same naming as the QuartzNet encoder: prologue, blocks.i, epilogue.j."""

    def __init__(self, num_blocks=NUM_BLOCKS, channels=CHANNELS):
        super().__init__()
        self.prologue = torch.nn.Sequential(
            torch.nn.Conv1d(3, channels, 3, padding=1), torch.nn.BatchNorm1d(channels)
        )
        self.blocks = torch.nn.ModuleList(Block(channels) for _ in range(num_blocks))
        self.epilogue = torch.nn.Sequential(
            torch.nn.Conv1d(channels, channels, 1),
            torch.nn.BatchNorm1d(channels),
            torch.nn.ReLU(),
        )

    def forward(self, x):
        x = self.prologue(x)
        for block in self.blocks:
            x = block(x)
        return self.epilogue(x)


def make_model(seed=0, num_blocks=NUM_BLOCKS):
    torch.manual_seed(seed)
    return torch.nn.ModuleDict(
        {
            "encoder": StandInEncoder(num_blocks),
            "head": torch.nn.Linear(CHANNELS, VOCAB),
        }
    )


def loss_on_random_batch(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, 20, generator=gen)
    target = torch.randint(0, VOCAB, (6, 20), generator=gen)
    logits = model["head"](model["encoder"](x).transpose(1, 2))
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, VOCAB), target.reshape(-1)
    )


def snapshot(model):
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    state.update({n: b.detach().clone() for n, b in model.named_buffers()})
    return state


def names_under(model, *prefixes):
    return [
        n
        for n, _ in model.named_parameters()
        if any(n.startswith(p + ".") for p in prefixes)
    ]


# ----------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------
def test_patterns_ranges_globs_and_module_vs_parameter_names():
    model = make_model()
    blocks = lambda *ids: names_under(model, *[f"encoder.blocks.{i}" for i in ids])  # noqa: E731

    assert select_parameters(model, "encoder.blocks.0-2") == blocks(0, 1, 2)
    assert select_parameters(model, "encoder.blocks.13-") == blocks(13, 14)
    assert select_parameters(model, "encoder.blocks.-1") == blocks(0, 1)
    assert select_parameters(model, first_blocks(3)) == blocks(0, 1, 2)
    # A module name covers its parameters, but "blocks.1" is not "blocks.10".
    assert select_parameters(model, "encoder.blocks.1") == blocks(1)
    assert select_parameters(model, "encoder.blocks.1?") == blocks(10, 11, 12, 13, 14)
    assert select_parameters(model, "encoder.blocks.[0-2]") == blocks(0, 1, 2)
    # A parameter name covers only itself.
    assert select_parameters(model, "head.weight") == ["head.weight"]
    # '*' spans dots; results are in model order, each once.
    biases = select_parameters(model, ["*.bias", "head.*"])
    assert biases == [
        n
        for n, _ in model.named_parameters()
        if n.endswith(".bias") or n == "head.weight"
    ]
    assert len(biases) == len(set(biases))
    bn = select_parameters(model, "encoder.blocks.*.mconv.1")
    assert len(bn) == 2 * NUM_BLOCKS and all(".mconv.1." in n for n in bn)
    assert select_parameters(model, "*") == [n for n, _ in model.named_parameters()]


def test_patterns_see_through_distributed_wrappers():
    model = make_model()
    plain = select_parameters(model, ["encoder.blocks.3-4", "head"])
    model["encoder"] = torch.nn.DataParallel(model["encoder"])
    assert any(".module." in n for n, _ in model.named_parameters())
    assert select_parameters(model, ["encoder.blocks.3-4", "head"]) == plain


@pytest.mark.parametrize(
    "pattern, hint",
    [
        ("encoder.blcks.3", "encoder.blocks.3"),
        ("encoder.blocks.20-30", "encoder"),
        ("encoder.blocks.*.act", "encoder"),  # matches modules with no parameters
        ("heads", "head"),
    ],
)
def test_unmatched_pattern_errors_with_valid_names(pattern, hint):
    model = make_model()
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError) as err:
        freeze(model, ["head.bias", pattern])
    message = str(err.value)
    assert repr(pattern) in message and hint in message and "matches no" in message
    # Nothing was frozen by the failed call.
    assert [p.requires_grad for p in model.parameters()] == before


def test_bad_pattern_inputs():
    model = make_model()
    with pytest.raises(ValueError, match="empty range"):
        select_parameters(model, "encoder.blocks.5-2")
    with pytest.raises(TypeError, match="pattern"):
        select_parameters(model, ["head", 3])
    with pytest.raises(ValueError, match="k must be"):
        first_blocks(0)


# ----------------------------------------------------------------------------
# Freezing and an optimizer step
# ----------------------------------------------------------------------------
def test_optimizer_step_leaves_frozen_parameters_bit_identical():
    model = make_model()
    frozen = freeze(model, ["encoder.prologue", first_blocks(10)])
    assert frozen == names_under(model, "encoder.prologue") + names_under(
        model, *[f"encoder.blocks.{i}" for i in range(10)]
    )
    # The optimizer even holds the frozen parameters: they must still not move.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model.train()
    assert len(set_frozen_batchnorm_eval(model)) == 11  # prologue + 10 blocks
    before = snapshot(model)
    optimizer.zero_grad()
    loss_on_random_batch(model).backward()
    optimizer.step()

    after = dict(model.named_parameters())
    for name, value in after.items():
        if name in frozen:
            assert torch.equal(value, before[name]), name
        else:
            assert not torch.equal(value, before[name]), name
    buffers = dict(model.named_buffers())
    frozen_regions = ["encoder.prologue."] + [f"encoder.blocks.{i}." for i in range(10)]
    checked = 0
    for name, value in buffers.items():
        if any(name.startswith(region) for region in frozen_regions):
            assert torch.equal(value, before[name]), name
            checked += 1
    assert checked == 11 * 3  # running_mean, running_var, num_batches_tracked
    # Control: a trainable BatchNorm kept learning its statistics.
    assert not torch.equal(
        buffers["encoder.epilogue.1.running_mean"],
        before["encoder.epilogue.1.running_mean"],
    )


def test_refrozen_parameter_with_stale_grad_does_not_move():
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(2):  # build momentum for every parameter
        optimizer.zero_grad()
        loss_on_random_batch(model).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # stale zero grads, as in SpeechBrain
    freeze(model, "encoder.blocks.0")
    before = snapshot(model)
    loss_on_random_batch(model).backward()
    optimizer.step()
    for name in select_parameters(model, "encoder.blocks.0"):
        assert torch.equal(dict(model.named_parameters())[name], before[name])
    assert unfreeze(model, "encoder.blocks.0") == names_under(model, "encoder.blocks.0")
    assert all(p.requires_grad for p in model.parameters())


def test_batchnorm_running_stats_frozen_or_kept_trainable():
    x = torch.randn(8, 3, 20) * 3 + 1

    model = make_model()
    freeze(model, "encoder")
    model.train()
    set_frozen_batchnorm_eval(model)
    before = snapshot(model)
    model["encoder"](x)
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name

    model = make_model()
    frozen = freeze(model, "encoder", keep_batchnorm_trainable=True)
    assert not any(".mconv.1." in n for n in frozen)
    assert "encoder.blocks.0.mconv.0.weight" in frozen
    model.train()
    assert set_frozen_batchnorm_eval(model) == []
    before = snapshot(model)
    model["encoder"](x)
    bn = dict(model["encoder"].blocks[0].mconv[1].named_buffers())
    assert not torch.equal(
        bn["running_mean"], before["encoder.blocks.0.mconv.1.running_mean"]
    )
    assert bn["num_batches_tracked"].item() == 1


def test_frozen_prefix_gets_no_grad_and_no_backward():
    def grads_and_hooks(frozen_patterns):
        model = make_model()
        if frozen_patterns:
            freeze(model, frozen_patterns)
        fired = []
        for name, module in [("prologue", model["encoder"].prologue)] + [
            (f"blocks.{i}", b) for i, b in enumerate(model["encoder"].blocks)
        ]:
            module.register_full_backward_hook(
                lambda m, gi, go, name=name: fired.append(name)
            )
        model.train()
        set_frozen_batchnorm_eval(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hook on a layer whose input needs no grad
            loss_on_random_batch(model).backward()
        with_grad = sum(p.grad is not None for p in model.parameters())
        return model, with_grad, set(fired)

    full, n_full, fired_full = grads_and_hooks([])
    assert n_full == len(list(full.parameters()))
    assert "prologue" in fired_full

    model, n_frozen, fired = grads_and_hooks(["encoder.prologue", first_blocks(10)])
    trainable = sum(p.requires_grad for p in model.parameters())
    assert n_frozen == trainable < n_full
    # Backward stops at the first trainable block: no hook below it ever fires.
    assert fired == {f"blocks.{i}" for i in range(10, NUM_BLOCKS)}

    # Control: a frozen block under a trainable one must still pass gradients.
    _, _, fired_mid = grads_and_hooks(["encoder.blocks.1"])
    assert "blocks.1" in fired_mid and "prologue" in fired_mid


# ----------------------------------------------------------------------------
# Staged unfreezing
# ----------------------------------------------------------------------------
BRIEF_SCHEDULE = {3: ["encoder.epilogue", "encoder.blocks.10-14"], 5: ["encoder"]}


def frozen_state(model):
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def test_staged_unfreezing_epochs_1_to_6_and_idempotent():
    model = make_model()
    schedule = StagedUnfreezing(["encoder"], BRIEF_SCHEDULE)
    encoder = set(names_under(model, "encoder"))
    top = names_under(model, "encoder.epilogue") + names_under(
        model, *[f"encoder.blocks.{i}" for i in range(10, 15)]
    )
    expected_frozen = {
        1: encoder,
        2: encoder,
        3: encoder - set(top),
        4: encoder - set(top),
        5: set(),
        6: set(),
    }
    returned = {}
    for epoch in range(1, 7):
        returned[epoch] = schedule.apply(model, epoch)
        assert frozen_state(model) == expected_frozen[epoch], epoch
        assert schedule.frozen_names(model, epoch) == expected_frozen[epoch]
        # Re-applying the same epoch changes nothing and reports nothing.
        assert schedule.apply(model, epoch) == []
        assert frozen_state(model) == expected_frozen[epoch]
    assert sorted(returned[3]) == sorted(top)
    assert set(returned[5]) == encoder - set(top)
    assert returned[1] == returned[2] == returned[4] == returned[6] == []
    assert model["head"].weight.requires_grad  # outside `frozen`: never touched
    assert schedule.always_frozen(model) == set()

    # A resumed run: a fresh model at epoch 4 gets the same state.
    resumed = make_model()
    schedule.apply(resumed, 4)
    assert frozen_state(resumed) == expected_frozen[4]
    # Going back refreezes.
    schedule.apply(model, 1)
    assert frozen_state(model) == encoder


def test_top_down_constructor_and_always_frozen():
    model = make_model()
    top_down = StagedUnfreezing.top_down(15, blocks_per_stage=5, every=2, start_epoch=3)
    explicit = StagedUnfreezing(["encoder"], BRIEF_SCHEDULE)
    assert top_down.unfreeze_at == {
        3: ["encoder.epilogue", "encoder.blocks.10-14"],
        5: ["encoder.blocks.5-9"],
        7: ["encoder.blocks.0-4", "encoder"],
    }
    for epoch in (1, 2, 3, 4):  # identical to the brief's schedule until epoch 5
        assert top_down.frozen_names(model, epoch) == explicit.frozen_names(
            model, epoch
        )
    middle = set(names_under(model, *[f"encoder.blocks.{i}" for i in range(5, 10)]))
    assert explicit.frozen_names(model, 4) - top_down.frozen_names(model, 5) == middle
    assert top_down.frozen_names(model, 7) == set()
    assert top_down.always_frozen(model) == set()

    partial = StagedUnfreezing.top_down(15, 4, every=1, keep_frozen_blocks=7)
    assert partial.unfreeze_at == {
        2: ["encoder.epilogue", "encoder.blocks.11-14"],
        3: ["encoder.blocks.7-10"],
    }
    lowest = set(names_under(model, "encoder.prologue")) | set(
        names_under(model, *[f"encoder.blocks.{i}" for i in range(7)])
    )
    assert partial.always_frozen(model) == lowest

    kept = StagedUnfreezing.top_down(15, 5, keep_batchnorm_trainable=True)
    kept.apply(model, 1)
    assert model["encoder"].blocks[0].mconv[1].weight.requires_grad
    assert not model["encoder"].blocks[0].mconv[0].weight.requires_grad


def test_staged_unfreezing_errors():
    model = make_model()
    with pytest.raises(ValueError, match=r"unfreeze_at\[3\].*'head'.*covers no"):
        StagedUnfreezing("encoder", {3: ["head"]}).apply(model, 1)
    with pytest.raises(ValueError, match=r"unfreeze_at\[2\].*'encoder.blocks.99'"):
        StagedUnfreezing("encoder", {2: "encoder.blocks.99"}).apply(model, 1)
    with pytest.raises(ValueError, match="1-based"):
        StagedUnfreezing("encoder", {0: "encoder"})
    with pytest.raises(ValueError, match="1-based"):
        StagedUnfreezing("encoder", {2: "encoder"}).apply(model, 0)
    with pytest.raises(ValueError, match="keep_frozen_blocks"):
        StagedUnfreezing.top_down(3, keep_frozen_blocks=4)


# ----------------------------------------------------------------------------
# Layer-wise learning rates
# ----------------------------------------------------------------------------
def test_default_layers_follow_the_model():
    model = make_model()
    assert default_layers(model) == (
        ["head", "encoder.epilogue"]
        + [f"encoder.blocks.{i}" for i in reversed(range(NUM_BLOCKS))]
        + ["encoder.prologue"]
    )


def test_layerwise_groups_ratios_and_coverage_with_staged_schedule():
    model = make_model()
    model["extra"] = torch.nn.Linear(2, 2)  # in no layer: base-lr group
    schedule = StagedUnfreezing(
        ["encoder"], {3: ["encoder.epilogue", "encoder.blocks.5-14"]}
    )  # prologue and blocks 0-4 frozen for the whole run
    schedule.apply(model, 1)
    always = schedule.always_frozen(model)
    lr, decay = 0.01, 0.8
    groups = layerwise_param_groups(model, lr, decay, exclude_frozen=always)

    layers = default_layers(model)
    names = [g["name"] for g in groups]
    assert names == layers[:12] + ["other"]  # head, epilogue, blocks 14..5, other
    assert layers[11] == "encoder.blocks.5"
    for group in groups[:-1]:
        assert group["lr"] == pytest.approx(lr * decay ** layers.index(group["name"]))
    assert groups[-1]["lr"] == lr
    # Coverage: every parameter not frozen for the whole run, exactly once,
    # including those frozen only until epoch 3.
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    expected = {id(p) for n, p in model.named_parameters() if n not in always}
    assert set(ids) == expected
    assert any(not p.requires_grad for g in groups for p in g["params"])

    # Parameters frozen until later hold no optimizer state and do not move.
    optimizer = torch.optim.AdamW(groups, weight_decay=0.1)
    before = snapshot(model)
    loss_on_random_batch(model).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert torch.equal(param, before[name]) and not optimizer.state[param]

    # Without the schedule, exclude_frozen=True drops what is frozen now.
    now = layerwise_param_groups(model, lr, decay)
    assert {id(p) for g in now for p in g["params"]} == {
        id(p) for p in model.parameters() if p.requires_grad
    }


def test_layerwise_ratios_survive_lambdalr_and_no_duplicates():
    model = make_model()
    groups = layerwise_param_groups(
        model, 1e-3, 0.5, layers=["head", "encoder.blocks.14", "encoder"]
    )
    assert [g["name"] for g in groups] == ["head", "encoder.blocks.14", "encoder"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert len(groups[1]["params"]) == len(names_under(model, "encoder.blocks.14"))

    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    warmup = 4
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.9**step
    )
    peaks = [g["lr"] for g in groups]
    seen = set()
    for _ in range(6):
        optimizer.zero_grad()
        loss_on_random_batch(model).backward()
        optimizer.step()
        scheduler.step()
        lrs = [g["lr"] for g in optimizer.param_groups]
        seen.add(round(lrs[0], 12))
        for lr_now, peak in zip(lrs, peaks, strict=True):
            assert lr_now / lrs[0] == pytest.approx(peak / peaks[0])
    assert len(seen) == 6  # the scheduler really changed the lr


def test_layerwise_bad_inputs():
    model = make_model()
    with pytest.raises(ValueError, match="'encoder.blokcs.3'"):
        layerwise_param_groups(model, 1e-3, layers=["head", "encoder.blokcs.3"])
    with pytest.raises(ValueError, match="not parameters of this model"):
        layerwise_param_groups(model, 1e-3, exclude_frozen={"encoder.module.x"})
    with pytest.raises(ValueError, match="decay"):
        layerwise_param_groups(model, 1e-3, decay=0)
    with pytest.raises(ValueError, match="Pass layers="):
        default_layers(torch.nn.ModuleDict({"enc": torch.nn.Linear(2, 2)}))


# ----------------------------------------------------------------------------
# YAML and summary
# ----------------------------------------------------------------------------
YAML = """
schedule: !new:xlt_plugin.freeze.StagedUnfreezing
    frozen: [encoder]
    unfreeze_at:
        3: [encoder.epilogue, encoder.blocks.10-14]
        5: [encoder]
    keep_batchnorm_trainable: False
top_down: !apply:xlt_plugin.freeze.StagedUnfreezing.top_down
    num_blocks: 15
    blocks_per_stage: 5
    every: 2
    start_epoch: 3
lowest: !apply:xlt_plugin.freeze.first_blocks [4]
fixed: !new:xlt_plugin.freeze.StagedUnfreezing
    frozen: [!ref <lowest>, encoder.prologue]
param_groups: !name:xlt_plugin.freeze.layerwise_param_groups
    lr: 0.0015
    decay: 0.9
"""


def test_yaml_builds_schedules_and_param_groups():
    hparams = load_hyperpyyaml(YAML)
    model = make_model()
    schedule = hparams["schedule"]
    assert isinstance(schedule, StagedUnfreezing)
    explicit = StagedUnfreezing(["encoder"], BRIEF_SCHEDULE)
    for epoch in range(1, 7):
        assert schedule.frozen_names(model, epoch) == explicit.frozen_names(
            model, epoch
        )
    assert hparams["top_down"].frozen_names(model, 4) == explicit.frozen_names(model, 4)
    assert hparams["fixed"].always_frozen(model) == set(
        names_under(
            model, "encoder.prologue", *[f"encoder.blocks.{i}" for i in range(4)]
        )
    )
    hparams["fixed"].apply(model, 1)
    groups = hparams["param_groups"](
        model, exclude_frozen=hparams["fixed"].always_frozen(model)
    )
    assert groups[0]["name"] == "head" and groups[0]["lr"] == 0.0015
    assert groups[1]["lr"] == pytest.approx(0.0015 * 0.9)


def test_trainable_summary_counts():
    model = make_model()
    freeze(model, "encoder.blocks")
    summary = trainable_summary(model)
    blocks = sum(p.numel() for p in model["encoder"].blocks.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert summary["frozen"] == blocks
    assert summary["trainable"] == total - blocks
    assert summary["children"]["head"] == {
        "trainable": model["head"].weight.numel() + VOCAB,
        "frozen": 0,
    }
    assert summary["children"]["encoder"]["frozen"] == blocks


def test_layerwise_optimizer_keeps_speechbrains_weight_decay_groups():
    from speechbrain.utils.optimizers import rm_vector_weight_decay

    from xlt_plugin.freeze import LayerwiseOptimizer

    model = make_model(num_blocks=2)
    schedule = StagedUnfreezing("encoder", {2: "encoder.blocks.1"})
    opt_class = LayerwiseOptimizer(
        torch.optim.AdamW, model, lr=1.0, decay=0.5, unfreezing=schedule
    )
    # What Brain.init_optimizers passes with --remove_vector_weight_decay.
    optimizer = opt_class(rm_vector_weight_decay(model))
    groups = [
        (g["name"], g["lr"], g.get("weight_decay"), len(g["params"]))
        for g in optimizer.param_groups
    ]
    assert groups == [  # SpeechBrain's order: vectors (no decay) first
        ("head", 1.0, 0.0, 1),  # the bias
        ("head", 1.0, 0.01, 1),  # the weight matrix: AdamW's default decay
        ("encoder.blocks.1", 0.25, 0.0, 3),  # layer 2, after encoder.epilogue
        ("encoder.blocks.1", 0.25, 0.01, 1),
    ]
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) not in held for p in model["encoder"].blocks[0].parameters())


def test_unfreezing_epoch_counter_resumes_and_keeps_frozen_batchnorm_eval(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    from xlt_plugin.freeze import UnfreezingEpochCounter

    model = make_model(num_blocks=2)
    schedule = StagedUnfreezing("encoder", {3: "encoder.blocks.1"})
    counter = UnfreezingEpochCounter(3, schedule, model, frozen_batchnorm_eval=True)
    checkpointer = Checkpointer(tmp_path, {"counter": counter})
    assert next(counter) == 1
    checkpointer.save_checkpoint()
    bn = model["encoder"].blocks[1].mconv[1]
    model.train()
    loss_on_random_batch(model)
    assert not bn.training and not bn.weight.requires_grad
    fresh = make_model(num_blocks=2)
    resumed = UnfreezingEpochCounter(3, schedule, fresh)
    Checkpointer(tmp_path, {"counter": resumed}).recover_if_possible()
    assert [e for e in resumed] == [2, 3]
    assert fresh["encoder"].blocks[1].mconv[0].weight.requires_grad
    assert not fresh["encoder"].blocks[0].mconv[0].weight.requires_grad
