"""Continuous learning: rehearsal batches, weight averaging, adapters (issue 14)."""

from __future__ import annotations

import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.nnet.linear import Linear

from xlt_plugin.averaging import average_head_state, average_run, interpolate_state
from xlt_plugin.data.replay import ReplayBatchSampler
from xlt_plugin.freeze import StagedUnfreezing, set_frozen_batchnorm_eval
from xlt_plugin.lobes.adapters import ADAPTER_PATTERN, add_adapters, remove_adapters
from xlt_plugin.lobes.quartznet import QuartzNet
from xlt_plugin.pretrained import load_pretrained, save_pretrained


class _Counter:
    current = 1


def _sampler(counter):
    """100 target and 60 source items, 30 % source in each batch of 8."""
    return ReplayBatchSampler(
        range(100), range(100, 160), batch_size=8, ratio=0.3, seed=7,
        epoch_counter=counter,
    )  # fmt: skip


def test_replay_ratio_over_an_epoch_and_exact_resume():
    counter = _Counter()
    sampler = _sampler(counter)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = [i for b in batches for i in b]
    targets = [i for i in flat if i < 100]
    assert targets == list(range(100))  # each target once, in order
    share = (len(flat) - len(targets)) / len(flat)
    assert abs(share - 0.3) < 1 / len(flat) + 1e-9
    # Resume: a fresh sampler (a restarted process) gives the same epoch.
    again = _sampler(counter)
    assert list(again) == batches
    counter.current = 2
    assert list(sampler) != batches  # another epoch, another draw


def _model(seed=0, tokens="ab "):
    torch.manual_seed(seed)
    enc = QuartzNet(input_size=20, preset="quartznet_tiny")
    tok = CTCTextEncoder()
    tok.update_from_iterable(tokens, sequence_input=False)
    tok.insert_blank(index=0)
    head = Linear(input_size=enc.output_size, n_neurons=len(tok))
    return enc, head, tok


def test_averaging_alpha_0_and_1_are_exact():
    base, _, _ = _model(0)
    tuned, _, _ = _model(1)
    b, t = base.state_dict(), tuned.state_dict()
    for alpha, want in ((0.0, b), (1.0, t)):
        got = interpolate_state(b, t, alpha)
        assert all(torch.equal(got[k], want[k]) for k in want)
    head_b = {"w.weight": torch.zeros(3, 2), "w.bias": torch.zeros(3)}
    head_t = {"w.weight": torch.ones(3, 2), "w.bias": torch.ones(3)}
    same = average_head_state(head_b, ["0", "a", "b"], head_t, ["0", "b", "a"], 0.0)
    assert torch.equal(same["w.bias"], head_b["w.bias"])


def test_zero_adapter_keeps_outputs_and_only_adapters_and_head_learn():
    enc, head, _ = _model(0)
    enc.eval()
    x = torch.rand(2, 40, 20)
    base_out = enc(x, torch.tensor([1.0, 0.7]))
    base_state = {k: v.clone() for k, v in enc.state_dict().items()}
    add_adapters(enc, dim=4)
    assert torch.equal(enc(x, torch.tensor([1.0, 0.7])), base_out)
    enc.load_state_dict(base_state)  # the base's keys still load (strict)
    modules = torch.nn.ModuleDict({"encoder": enc, "head": head})
    schedule = StagedUnfreezing(["encoder"], {1: [ADAPTER_PATTERN]})
    schedule.apply(modules, 1)
    enc.train()
    set_frozen_batchnorm_eval(modules)  # as the Brain does: frozen BN in eval
    head(enc(x)).logsumexp(-1).sum().backward()
    with_grad = {n for n, p in modules.named_parameters() if p.grad is not None}
    assert with_grad and all(
        ".adapter." in n or n.startswith("head.") for n in with_grad
    )
    assert any(".adapter.up." in n for n in with_grad)
    # Removing the (trained or not) adapters gives the base bit for bit.
    for p in enc.parameters():
        if p.requires_grad:
            p.data.add_(1.0)
    remove_adapters(enc)
    state = enc.state_dict()
    assert set(state) == set(base_state)
    assert all(torch.equal(state[k], base_state[k]) for k in state)


def test_adapted_encoder_rebuilds_from_its_config():
    enc, _, _ = _model(0)
    add_adapters(enc, dim=3)
    again = QuartzNet(**enc.config)
    again.load_state_dict(enc.state_dict())


def test_xlt_average_writes_a_loadable_folder(tmp_path):
    from xlt_plugin.cli import main

    enc, head, tok = _model(0)
    base = save_pretrained(
        tmp_path / "base",
        encoder=enc,
        head=head,
        tokenizer=tok,
        features={"n_mels": 20},
    )
    enc2, head2, _ = _model(1)
    tuned = save_pretrained(
        tmp_path / "tuned",
        encoder=enc2,
        head=head2,
        tokenizer=tok,
        features={"n_mels": 20},
    )
    assert (
        main(
            [
                "average",
                "--base",
                str(base),
                "--finetuned",
                str(tuned),
                "--alpha",
                "0.5",
                "--out",
                str(tmp_path / "avg"),
            ]
        )
        == 0
    )
    model = load_pretrained(tmp_path / "avg")
    assert model.config["metadata"]["averaged"]["alpha"] == 0.5
    out = average_run(base, tuned, 0.0, tmp_path / "zero")
    zero = load_pretrained(out).encoder.state_dict()
    assert all(torch.equal(zero[k], v) for k, v in enc.state_dict().items())
