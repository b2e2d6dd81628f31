"""Remedies for a remapped CTC head (issue 13): calibration, blend, blank row,
head learning rate and warmup, head-only warm start; and `opencc` on a
character written the same in both scripts."""

import pytest
import speechbrain as sb
import torch
from conftest import tiny_ctc_brain

from xlt_plugin.freeze import LayerwiseOptimizer, head_only_warm_start
from xlt_plugin.remap import (
    RemapHeadHook,
    RemapReport,
    adjust_rows,
    apply_temperature,
    fit_temperature,
    remap_ctc_head,
    token_map,
)

SRC = ["<blank>", " ", "a", "b", "c", "d", "e"]
TGT = ["<blank>", " ", "a", "á", "c", "x", "e", "y"]


def _source_head(scale=6.0):
    torch.manual_seed(1)
    head = torch.nn.Linear(16, len(SRC))
    with torch.no_grad():  # trained-like rows: much larger than a fresh init
        head.weight.mul_(scale)
        head.bias.add_(torch.linspace(-2, 2, len(SRC)))
    return head


def _remap(**kw):
    source = _source_head()
    torch.manual_seed(7)  # the same fresh rows for every call
    return remap_ctc_head(source, SRC, TGT, "exact,fold", **kw)


def test_defaults_are_the_plain_remap_bit_for_bit():
    plain, report = _remap()
    same, _ = _remap(calibrate="none", blend_alpha=1.0, copy_blank=True)
    assert torch.equal(plain.weight, same.weight)
    assert torch.equal(plain.bias, same.bias)
    assert report.remedies == {}
    assert report.mapped_rows == [0, 1, 2, 3, 4, 6]


def test_blend_one_is_the_remap_and_zero_the_fresh_head():
    plain, _ = _remap()
    one, _ = _remap(blend_alpha=1.0)
    zero, report = _remap(blend_alpha=0.0)
    torch.manual_seed(7)
    fresh = torch.nn.Linear(16, len(TGT))
    assert torch.equal(one.weight, plain.weight) and torch.equal(one.bias, plain.bias)
    assert torch.equal(zero.weight, fresh.weight) and torch.equal(zero.bias, fresh.bias)
    half, _ = _remap(blend_alpha=0.5)
    rows = report.mapped_rows
    expected = 0.5 * plain.weight[rows] + 0.5 * fresh.weight[rows]
    assert torch.allclose(half.weight[rows], expected)
    assert torch.equal(half.weight[5], fresh.weight[5])  # 'x': fresh anyway


def test_copy_blank_false_leaves_the_blank_row_fresh():
    plain, _ = _remap()
    fresh_blank, report = _remap(copy_blank=False)
    torch.manual_seed(7)
    fresh = torch.nn.Linear(16, len(TGT))
    assert torch.equal(fresh_blank.weight[0], fresh.weight[0])
    assert torch.equal(fresh_blank.bias[0], fresh.bias[0])
    assert torch.equal(fresh_blank.weight[1:], plain.weight[1:])
    assert 0 not in report.mapped_rows and report.remedies["copy_blank"] is False


def test_copy_blank_false_through_the_hook(tmp_path):
    src = _source_head()
    torch.save(src.state_dict(), tmp_path / "head.ckpt")
    torch.manual_seed(3)
    target = torch.nn.Linear(16, len(TGT))
    fresh_blank = target.weight[0].detach().clone()
    hook = RemapHeadHook(SRC, TGT, "exact,fold", copy_blank=False)
    hook(target, tmp_path / "head.ckpt")
    assert torch.equal(target.weight[0], fresh_blank)
    assert torch.equal(target.weight[2], src.weight[2])
    with pytest.raises(ValueError, match="calibration"):
        RemapHeadHook(SRC, TGT, calibrate="platt")
    with pytest.raises(ValueError, match="blend_alpha"):
        RemapHeadHook(SRC, TGT, blend_alpha=1.5)


def test_rescale_matches_a_fresh_layer_and_keeps_the_argmax():
    plain, _ = _remap()
    scaled, report = _remap(calibrate="rescale")
    torch.manual_seed(7)
    fresh = torch.nn.Linear(16, len(TGT))
    rows = report.mapped_rows
    rms = scaled.weight[rows].pow(2).mean().sqrt()
    assert torch.isclose(rms, fresh.weight.pow(2).mean().sqrt(), rtol=1e-5)
    assert report.remedies["scale"] < 1
    x = torch.randn(50, 16)
    assert torch.equal(scaled(x)[:, rows].argmax(-1), plain(x)[:, rows].argmax(-1))


def test_a_single_temperature_keeps_the_argmax_over_the_copied_rows():
    head, report = _remap()
    rows = report.mapped_rows
    torch.manual_seed(0)
    hidden = torch.randn(3, 20, 16)
    targets = torch.tensor([[2, 3, 4], [6, 2, 1], [4, 4, 6]])
    batch = (
        head(hidden).detach(),
        torch.tensor([20, 18, 15]),
        targets,
        torch.tensor([3, 3, 2]),
    )
    temperature = fit_temperature([batch], rows, blank=0)
    assert temperature != 1.0  # the over-confident copied rows are cooled
    before = head(hidden)[..., rows].argmax(-1)
    apply_temperature(head, rows, temperature)
    assert torch.equal(head(hidden)[..., rows].argmax(-1), before)
    # fresh rows untouched
    assert torch.equal(head.weight[5], _remap()[0].weight[5])


def test_adjust_rows_checks_its_input():
    with pytest.raises(ValueError, match="blend_alpha"):
        adjust_rows(
            torch.ones(2, 2), None, torch.ones(2, 2), None, [0], 0, blend_alpha=-0.1
        )


def test_opencc_alone_maps_a_character_written_the_same_in_both_scripts():
    pytest.importorskip("opencc")
    m = token_map(["<blank>", "家", "们"], ["<blank>", "家", "們"], "opencc")
    assert m.sources == [[0], [1], [2]]
    assert m.how == ["blank", "opencc", "opencc"]


def test_head_lr_multiplier_shows_in_the_optimizer_groups():
    model = torch.nn.ModuleDict(
        {"encoder": torch.nn.Linear(3, 3), "head": torch.nn.Linear(3, 4)}
    )
    opt = LayerwiseOptimizer(torch.optim.AdamW, model, lr=0.01, head_lr_multiplier=4)
    groups = {g["name"]: g["lr"] for g in opt(model.parameters()).param_groups}
    assert groups == {"head": pytest.approx(0.04), "other": pytest.approx(0.01)}
    default = LayerwiseOptimizer(torch.optim.AdamW, model, lr=0.01)
    assert [g["lr"] for g in default(model.parameters()).param_groups] == [0.01] * 2
    with pytest.raises(ValueError, match="positive"):
        LayerwiseOptimizer(torch.optim.AdamW, model, lr=0.01, head_lr_multiplier=0)


def test_head_only_schedule_refuses_a_second_schedule():
    from xlt_plugin.freeze import StagedUnfreezing

    assert head_only_warm_start(0, None) is None
    empty = StagedUnfreezing([], {})
    assert head_only_warm_start(2, empty).unfreeze_at == {3: ["encoder"]}
    with pytest.raises(ValueError, match="both set"):
        head_only_warm_start(2, StagedUnfreezing(["encoder.blocks.0"], {}))


# ------------------------------------------------------- a tiny CTCTransferBrain
TEXTS = ["hola", "sí", "no", "casa"]


def _tiny_brain(tmp_path, **settings):
    return tiny_ctc_brain(TEXTS, **settings)


def test_head_only_phase_leaves_the_encoder_bit_identical(tmp_path):
    brain, dataset = _tiny_brain(
        tmp_path,
        head_only_epochs=1,
        head_lr_multiplier=3.0,
        head_warmup_ratio=0.0,
        warmup_ratio=0.5,
    )
    encoder = {k: v.clone() for k, v in brain.modules.encoder.state_dict().items()}
    head = {k: v.clone() for k, v in brain.modules.head.state_dict().items()}
    brain.fit(
        brain.hparams.epoch_counter, dataset, train_loader_kwargs={"batch_size": 2}
    )
    after = brain.modules.encoder.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in encoder.items())  # BN stats too
    assert any(
        not torch.equal(v, brain.modules.head.state_dict()[k]) for k, v in head.items()
    )
    lrs = {g["name"]: g["initial_lr"] for g in brain.optimizer.param_groups}
    assert lrs["head"] == pytest.approx(3e-2)
    assert all(v == pytest.approx(1e-2) for k, v in lrs.items() if k != "head")
    head_index = [g["name"] for g in brain.optimizer.param_groups].index("head")
    warmups = [f.warmup_steps for f in brain.lr_scheduler.lr_lambdas]
    assert warmups[head_index] == 0 and max(warmups) > 0
    # the schedule frees the encoder at epoch 2
    assert brain.settings.unfreezing.unfreeze_at == {2: ["encoder"]}


def test_brain_temperature_calibration_keeps_the_argmax(tmp_path):
    brain, dataset = _tiny_brain(tmp_path, head_calibration="temperature")
    rows = [0, 1, 2, 3]
    with torch.no_grad():
        brain.modules.head.w.weight[rows] *= 20  # an over-confident "copied" part
    brain.remap_report = RemapReport(1, 1, "exact", 1, 3, 0, 0, mapped_rows=rows)
    brain.train_loader = brain.make_dataloader(dataset, sb.Stage.TRAIN, batch_size=2)
    x = torch.randn(2, 7, brain.modules.head.w.in_features)
    before = brain.modules.head(x)[..., rows].argmax(-1)
    rng = torch.get_rng_state()
    temperature = brain.calibrate_head_temperature()
    assert temperature > 1
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(brain.modules.head(x)[..., rows].argmax(-1), before)
    assert brain.remap_report.remedies["temperature"] == temperature
