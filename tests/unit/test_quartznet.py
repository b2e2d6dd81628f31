"""Tests for the QuartzNet / Jasper encoder lobes."""

import math
import re

import pytest
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

from xlt_plugin.lobes.quartznet import (
    QUARTZNET_PRESETS,
    JasperBlock,
    MaskedConv1d,
    QuartzNet,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_on_meta(**kwargs) -> QuartzNet:
    """Builds without allocating or initialising weights (for the big presets)."""
    with torch.device("meta"):
        return QuartzNet(**kwargs)


# A dense-residual Jasper small enough to run, with a dilated block.
TINY_JASPER = dict(
    preset="jasper10x5",
    prologue_channels=24,
    channels=[24, 32],
    kernel_sizes=[5, 7],
    dilations=[1, 2],
    block_repeats=2,
    repeats=2,
    epilogue_channels=[32, 48],
    epilogue_kernels=[9, 1],
    dropout=0.1,
)


# ---------------------------------------------------------------- presets


def test_quartznet15x5_with_char_head_has_18_9m_parameters():
    enc = build_on_meta(input_size=64, preset="quartznet15x5")
    head = torch.nn.Linear(enc.output_size, 29)
    total = n_params(enc) + n_params(head)
    assert enc.output_size == 1024
    assert abs(total - 18.9e6) / 18.9e6 < 0.02, total


def test_jasper10x5_dr_matches_published_333m():
    enc = build_on_meta(input_size=64, preset="jasper10x5")
    total = n_params(enc) + n_params(torch.nn.Linear(enc.output_size, 29))
    assert abs(total - 333e6) / 333e6 < 0.02, total
    # The dense residual of block k draws on the prologue and k earlier blocks.
    assert [len(block.res) for block in enc.blocks] == list(range(1, 11))


def test_published_layouts():
    q15 = build_on_meta(input_size=64, preset="quartznet15x5")
    q5 = build_on_meta(input_size=64, preset="quartznet5x5")
    assert len(q15.blocks) == 15 and len(q5.blocks) == 5
    kernels = [b.mconv[0].conv.kernel_size[0] for b in q15.blocks]
    assert kernels == [k for k in (33, 39, 51, 63, 75) for _ in range(3)]
    widths = [b.mconv[-1].num_features for b in q15.blocks]
    assert widths == [c for c in (256, 256, 512, 512, 512) for _ in range(3)]
    # R=5 separable sub-blocks: 5 x (dw, pw, BN) + 4 x (ReLU, Dropout).
    assert all(len(b.mconv) == 5 * 3 + 4 * 2 for b in q15.blocks)
    c1 = q15.prologue.mconv[0].conv
    assert (c1.kernel_size[0], c1.stride[0]) == (33, 2)
    assert q15.prologue.mconv[-1].num_features == 256
    c2, c3 = q15.epilogue
    assert c2.mconv[0].conv.kernel_size[0] == 87
    assert c2.mconv[0].conv.dilation[0] == 2
    assert c2.mconv[-1].num_features == 512
    assert c3.mconv[0].conv.kernel_size[0] == 1 and c3.mconv[-1].num_features == 1024
    # Fewer blocks, same stack: 5x5 is 15x5 with S=1.
    assert n_params(q5) < n_params(q15)


def test_small_presets_sizes_and_ratios():
    sizes = {
        name: n_params(QuartzNet(input_size=80, preset=name))
        for name in ("quartznet_tiny", "quartznet_small", "quartznet_medium")
    }
    assert 0.05e6 <= sizes["quartznet_tiny"] <= 0.3e6
    assert 0.5e6 <= sizes["quartznet_small"] <= 1.0e6
    assert 2e6 <= sizes["quartznet_medium"] <= 3e6
    assert sizes["quartznet_medium"] >= 3 * sizes["quartznet_small"]
    assert sizes["quartznet_small"] >= 3 * sizes["quartznet_tiny"]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("frames", [1, 2, 7, 50, 51])
def test_output_shape_is_ceil_of_time_over_stride(stride, frames):
    enc = QuartzNet(input_size=20, preset="quartznet_tiny", prologue_stride=stride)
    enc.eval()
    out = enc(torch.rand(2, frames, 20))
    expected = math.ceil(frames / stride)
    assert out.shape == (2, expected, enc.output_size)
    assert enc.time_stride == stride
    assert enc.output_lengths(torch.tensor([frames])).item() == expected
    # Relative lengths stay valid: each utterance's valid output frames, read back
    # SpeechBrain's way from its relative length, are within one frame.
    rel = torch.tensor([1.0, 0.55])
    got = torch.round(rel * expected).long()
    want = enc.output_lengths(torch.round(rel * frames).long())
    assert (got - want).abs().max() <= 1


def test_output_lengths_matches_masked_convolution_lengths():
    conv = MaskedConv1d(3, 4, kernel_size=5, stride=2, dilation=3)
    frames = torch.tensor([0, 1, 2, 9, 10])
    out, lengths = conv(torch.rand(5, 3, 10), frames)
    enc = QuartzNet(input_size=3, preset="quartznet_tiny")
    assert out.shape[-1] == 5
    assert lengths.tolist() == enc.output_lengths(frames).tolist() == [0, 1, 1, 5, 5]


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize(
    "kwargs",
    [dict(preset="quartznet_tiny"), TINY_JASPER],
    ids=["quartznet_tiny", "jasper_dense_residual"],
)
def test_padded_batch_equals_each_utterance_alone(kwargs):
    torch.manual_seed(0)
    enc = QuartzNet(input_size=16, **kwargs)
    # Non-trivial BatchNorm statistics, so padding is not zero after a BN.
    with torch.no_grad():
        for module in enc.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
    enc.eval()
    frames = [37, 24, 11]
    longest = max(frames)
    batch = torch.randn(len(frames), longest, 16) * 3  # garbage in the padding
    utterances = [batch[i, :n].clone() for i, n in enumerate(frames)]
    lengths = torch.tensor(frames, dtype=torch.float) / longest
    with torch.no_grad():
        padded = enc(batch, lengths)
        unmasked = enc(batch)
        for i, utt in enumerate(utterances):
            alone = enc(utt.unsqueeze(0), torch.ones(1))
            valid = enc.output_lengths(torch.tensor(frames[i])).item()
            assert alone.shape[1] == valid
            torch.testing.assert_close(
                padded[i, :valid], alone[0], atol=1e-5, rtol=1e-5
            )
            assert torch.all(padded[i, valid:] == 0)
            if i > 0:
                # Without lengths the padding garbage leaks into valid frames.
                assert not torch.allclose(unmasked[i, :valid], alone[0], atol=1e-3)


def test_bad_lengths_and_features_give_clear_errors():
    enc = QuartzNet(input_size=16, preset="quartznet_tiny")
    x = torch.rand(2, 20, 16)
    with pytest.raises(ValueError, match=r"relative lengths in \[0, 1\]"):
        enc(x, torch.tensor([20.0, 12.0]))
    with pytest.raises(ValueError, match=r"lengths must have shape \[2\]"):
        enc(x, torch.ones(3))
    with pytest.raises(ValueError, match=r"\[batch, time, 16\].*input_size"):
        enc(torch.rand(2, 20, 80))


# ---------------------------------------------------------------- config


def assert_plain(value, where="config"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_plain(item, f"{where}[{index}]")
    else:
        assert type(value) in (int, float, str, bool), (where, value)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_size=80, preset="quartznet_tiny"),
        dict(input_size=80, preset="quartznet_small", dropout=0.15),
        dict(input_size=64, preset="quartznet15x5"),
        dict(input_size=16, **TINY_JASPER),
        dict(input_size=40, channels=(32, 48), kernel_sizes=(9, 11), repeats=1),
    ],
    ids=["tiny", "small+dropout", "15x5", "jasper_dr", "no_preset"],
)
def test_config_round_trip_rebuilds_identical_architecture(kwargs):
    enc = QuartzNet(**kwargs)
    assert_plain(enc.config)
    # The hub saver writes it to YAML: it must survive a safe dump/load.
    config = yaml.safe_load(yaml.safe_dump(enc.config))
    assert config == enc.config
    rebuilt = QuartzNet(**config)
    assert rebuilt.config == enc.config
    old, new = enc.state_dict(), rebuilt.state_dict()
    assert list(old) == list(new)
    assert all(old[k].shape == new[k].shape for k in old)
    rebuilt.load_state_dict(old, strict=True)
    if kwargs.get("preset") != "quartznet15x5":
        enc.eval(), rebuilt.eval()
        x = torch.rand(1, 30, enc.config["input_size"])
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x), enc(x))


def test_overrides_win_over_preset_and_config_is_a_copy():
    enc = QuartzNet(input_size=80, preset="quartznet_small", repeats=3, dropout=0.1)
    assert enc.config["repeats"] == 3 and enc.config["dropout"] == 0.1
    assert len(enc.blocks[0].mconv) == 3 * 3 + 2 * 2
    assert enc.config["channels"] == QUARTZNET_PRESETS["quartznet_small"]["channels"]
    enc.config["channels"].append(7)
    assert QUARTZNET_PRESETS["quartznet_small"]["channels"][-1] != 7
    # Fewer blocks than the preset's dilations: dilations default to 1.
    short = QuartzNet(
        input_size=8, preset="quartznet5x5", channels=[8], kernel_sizes=[3]
    )
    assert short.config["dilations"] == [1]


def test_hyperpyyaml_preset_and_fully_written_out():
    by_preset = load_hyperpyyaml(
        """
encoder: !new:xlt_plugin.lobes.quartznet.QuartzNet
    input_size: 80
    preset: quartznet_small
"""
    )["encoder"]
    expected = QuartzNet(input_size=80, preset="quartznet_small")
    assert by_preset.config == expected.config
    # Every field written out, as the hub-layout saver would write it.
    fields = yaml.safe_dump(
        {"encoder": dict(expected.config, dropout=0.05)}, sort_keys=False
    )
    written = fields.replace(
        "encoder:", "encoder: !new:xlt_plugin.lobes.quartznet.QuartzNet", 1
    )
    assert "kernel_sizes:" in written and "preset" not in written
    full = load_hyperpyyaml(written)["encoder"]
    assert full.config == dict(expected.config, dropout=0.05)
    assert full.blocks[0].mout[1].p == 0.05
    shapes = {k: v.shape for k, v in full.state_dict().items()}
    assert shapes == {k: v.shape for k, v in expected.state_dict().items()}


# ---------------------------------------------------------------- blocks


def test_dense_and_separable_block_parameter_shapes():
    separable = JasperBlock(16, 32, 7, repeat=2, residual_channels=[16])
    keys = {k: tuple(v.shape) for k, v in separable.state_dict().items()}
    assert keys["mconv.0.conv.weight"] == (16, 1, 7)  # depthwise
    assert keys["mconv.1.conv.weight"] == (32, 16, 1)  # pointwise
    assert keys["mconv.2.weight"] == (32,)  # BN
    assert isinstance(separable.mconv[3], torch.nn.ReLU)
    assert isinstance(separable.mconv[4], torch.nn.Dropout)
    assert keys["mconv.5.conv.weight"] == (32, 1, 7)
    assert keys["mconv.6.conv.weight"] == (32, 32, 1)
    assert keys["res.0.0.conv.weight"] == (32, 16, 1)
    assert keys["res.0.1.running_mean"] == (32,)

    dense = JasperBlock(16, 32, 7, repeat=2, separable=False, residual_channels=[8, 16])
    keys = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    assert keys["mconv.0.conv.weight"] == (32, 16, 7)
    assert keys["mconv.1.weight"] == (32,)
    assert keys["mconv.4.conv.weight"] == (32, 32, 7)
    assert keys["res.0.0.conv.weight"] == (32, 8, 1)
    assert keys["res.1.0.conv.weight"] == (32, 16, 1)
    assert not any(k.endswith("bias") and ".conv." in k for k in keys)
    for norm in (separable.mconv[2], dense.mconv[1], dense.res[1][1]):
        assert norm.eps == 1e-3 and norm.momentum == 0.1


def test_module_names_map_one_to_one_onto_nemo_layout():
    enc = build_on_meta(input_size=64, preset="quartznet15x5")
    tops = {k.split(".mconv")[0].split(".res")[0] for k in enc.state_dict()}
    assert tops == (
        {"prologue", "epilogue.0", "epilogue.1"} | {f"blocks.{i}" for i in range(15)}
    )
    pattern = re.compile(
        r"^(prologue|blocks\.\d+|epilogue\.\d+)\."
        r"(mconv\.\d+\.(conv\.weight|weight|bias|running_mean|running_var"
        r"|num_batches_tracked)|res\.\d+\.(0\.conv\.weight|1\.\w+))$"
    )
    assert all(pattern.match(k) for k in enc.state_dict())

    def to_nemo(key: str) -> str:
        head, rest = key.split(".", 1)
        if head == "prologue":
            return f"encoder.encoder.0.{rest}"
        index, rest = rest.split(".", 1)
        offset = 1 if head == "blocks" else 1 + len(enc.blocks)
        return f"encoder.encoder.{int(index) + offset}.{rest}"

    nemo_keys = [to_nemo(k) for k in enc.state_dict()]
    assert len(set(nemo_keys)) == len(nemo_keys)
    assert "encoder.encoder.15.res.0.0.conv.weight" in nemo_keys
    assert "encoder.encoder.17.mconv.0.conv.weight" in nemo_keys  # C3
    assert not any(k.startswith("encoder.encoder.18.") for k in nemo_keys)


@pytest.mark.parametrize(
    "kwargs",
    [dict(preset="quartznet_tiny", dropout=0.1), TINY_JASPER],
    ids=["quartznet_tiny", "jasper_dense_residual"],
)
def test_gradients_reach_every_parameter(kwargs):
    torch.manual_seed(0)
    enc = QuartzNet(input_size=12, **kwargs)
    enc.train()
    out = enc(torch.randn(3, 41, 12), torch.tensor([1.0, 0.7, 0.4]))
    out.pow(2).mean().backward()
    for name, param in enc.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_init_is_deterministic_and_nemo_like():
    torch.manual_seed(3)
    a = QuartzNet(input_size=20, preset="quartznet_tiny")
    torch.manual_seed(3)
    b = QuartzNet(input_size=20, preset="quartznet_tiny")
    torch.manual_seed(4)
    c = QuartzNet(input_size=20, preset="quartznet_tiny")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(
        sa["blocks.0.mconv.1.conv.weight"], sc["blocks.0.mconv.1.conv.weight"]
    )
    for module in a.modules():
        if isinstance(module, torch.nn.Conv1d):
            fan_in = module.weight.shape[1] * module.weight.shape[2]
            fan_out = module.weight.shape[0] * module.weight.shape[2]
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier uniform
            assert module.weight.abs().max() <= bound
            assert module.weight.abs().max() > 0.5 * bound
        if isinstance(module, torch.nn.BatchNorm1d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


# ---------------------------------------------------------------- errors


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError) as info:
        QuartzNet(input_size=80, preset="quartznet_huge")
    message = str(info.value)
    assert "quartznet_huge" in message
    assert all(name in message for name in QUARTZNET_PRESETS)


def test_even_kernel_is_rejected_with_field_name():
    with pytest.raises(ValueError, match=r"kernel_sizes\[1\]=14 is even.*13 or 15"):
        QuartzNet(input_size=80, preset="quartznet_tiny", kernel_sizes=[11, 14, 15])
    with pytest.raises(ValueError, match=r"prologue_kernel=32 is even"):
        QuartzNet(input_size=80, prologue_kernel=32)
    with pytest.raises(ValueError, match=r"epilogue_kernels\[0\]=86 is even"):
        QuartzNet(input_size=80, epilogue_kernels=[86, 1])


def test_other_bad_fields_are_named():
    with pytest.raises(TypeError, match=r"'kernels' \(did you mean 'kernel_sizes'\?\)"):
        QuartzNet(input_size=80, kernels=[11])
    with pytest.raises(ValueError, match=r"channels, kernel_sizes, dilations"):
        QuartzNet(input_size=80, preset="quartznet_tiny", channels=[64, 96])
    with pytest.raises(ValueError, match=r"repeats must be a positive int"):
        QuartzNet(input_size=80, repeats=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        QuartzNet(input_size=80, dropout=1.5)
    with pytest.raises(ValueError, match=r"init_mode"):
        QuartzNet(input_size=80, init_mode="orthogonal")
    with pytest.raises(ValueError, match=r"separable must be true or false"):
        QuartzNet(input_size=80, separable="yes")
