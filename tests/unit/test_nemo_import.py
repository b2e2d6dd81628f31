"""Importing NeMo .nemo QuartzNet/Jasper checkpoints, checked against NeMo itself.

The fixtures in tests/fixtures/nemo were made with NeMo 3.0.0 by make_fixture.py
(its docstring says how): two untrained tiny models and a small German QuartzNet
that NeMo trained (peaky outputs), with NeMo's own outputs one clip at a time and
in padded batches. These tests run without NeMo. Only the test that re-runs
make_fixture needs NeMo and is skipped without it.
"""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from speechbrain.nnet.linear import Linear

from xlt_plugin.lobes.nemo_features import (
    FrameLengthsSequential,
    featurize,
    normalizes_itself,
)
from xlt_plugin.lobes.quartznet import QuartzNet
from xlt_plugin.nemo import (
    END_TO_END_TOLERANCE,
    NeMoFeaturizer,
    NeMoImportError,
    is_nemo,
    load_nemo_state,
    nemo_load_report,
    read_nemo_config,
    upgrade_config,
)
from xlt_plugin.pretrained import load_pretrained

FIXTURES = Path(__file__).parents[1] / "fixtures" / "nemo"
MODELS = ("quartznet_tiny", "jasper_tiny")
TRAINED = ("quartznet_de.nemo", "quartznet_de_cls_params.nemo")
LABELS = [" "] + list("abcdefghijklmnopqrstuvwxyz") + ["'"]
# Our log-mel vs NeMo's, before normalisation: measured 0.0 (bit-identical) with
# torch 2.14.1 on CPU; 1e-5 leaves room for another FFT/BLAS build.
LOGMEL_TOLERANCE = 1e-5
# The brief's bound for the imported encoder/head on NeMo's own features.
NETWORK_TOLERANCE = 1e-4
# NeMo's normalised features vs ours: same formula, same order of operations.
NORMALIZED_TOLERANCE = 1e-4


def _reference(name):
    return dict(np.load(FIXTURES / f"{name}.npz"))


@pytest.fixture(scope="module")
def wavs():
    return torch.from_numpy(np.load(FIXTURES / "wavs.npy"))


@pytest.fixture(scope="module", params=MODELS)
def imported(request):
    """(name, config, encoder, head, NeMo reference outputs) for one fixture."""
    path = FIXTURES / f"{request.param}.nemo"
    config = read_nemo_config(path)
    state = load_nemo_state(path)
    encoder = QuartzNet(**config["encoder_config"]).eval()
    encoder.load_state_dict(state["encoder"])
    head = Linear(
        input_size=config["encoder_output_size"], n_neurons=config["n_tokens"]
    ).eval()
    head.load_state_dict(state["head"])
    return request.param, config, encoder, head, _reference(request.param)


def _featurizer(config, **changes):
    kwargs = {k: v for k, v in config["features"].items() if k != "kind"}
    return NeMoFeaturizer(**dict(kwargs, **changes)).eval()


def _max_valid_diff(ours, theirs, lengths):
    """Max abs difference over each utterance's first ``lengths[i]`` frames."""
    return max(
        (ours[i, :n] - theirs[i, :n]).abs().max().item() for i, n in enumerate(lengths)
    )


# --------------------------------------------------------------------------- #
# Config
# --------------------------------------------------------------------------- #


def test_quartznet_config_maps_blocks_tokens_and_features():
    config = read_nemo_config(FIXTURES / "quartznet_tiny.nemo")
    enc = config["encoder_config"]
    assert enc == {
        "input_size": 64,
        "prologue_channels": 32,
        "prologue_kernel": 11,
        "prologue_stride": 2,
        "channels": [32, 48],
        "kernel_sizes": [13, 15],
        "dilations": [1, 1],
        "block_repeats": 2,
        "repeats": 2,
        "epilogue_channels": [64, 64],
        "epilogue_kernels": [17, 1],
        "epilogue_dilations": [2, 1],
        "separable": True,
        "residual": True,
        "dense_residual": False,
        "dropout": 0.0,
        "init_mode": "xavier_uniform",
    }
    assert config["encoder_class"] == "xlt_plugin.lobes.quartznet.QuartzNet"
    assert config["encoder_output_size"] == 64
    # NeMo's row order: labels (space is " "), then the blank.
    assert config["tokens"] == LABELS + ["<blank>"]
    assert config["blank_index"] == len(LABELS) == 28
    assert config["n_tokens"] == 29
    assert config["normalize"] == {"norm_type": "sentence"}
    feats = config["features"]
    assert feats["kind"] == "nemo"
    assert (feats["n_mels"], feats["n_fft"], feats["sample_rate"]) == (64, 512, 16000)
    assert (feats["win_length"], feats["hop_length"]) == (20.0, 10.0)
    assert feats["preemph"] == 0.97 and feats["mel_norm"] == "slaney"
    assert feats["log_zero_guard_value"] == 2**-24
    assert feats["pad_to"] == 0
    assert feats["normalize"] == "per_feature"
    assert config["metadata"]["nemo_preprocessor"]["normalize"] == "per_feature"
    assert any("pad_to=16" in note for note in config["metadata"]["notes"])
    json.dumps(config)  # config.json material: plain data only


def test_jasper_config_dense_residual_and_dropout_note():
    config = read_nemo_config(FIXTURES / "jasper_tiny.nemo")
    enc = config["encoder_config"]
    assert enc["separable"] is False and enc["dense_residual"] is True
    # Runs of 2 and 1 equal blocks: no common repeat, so block_repeats 1.
    assert (enc["channels"], enc["block_repeats"]) == ([24, 24, 32], 1)
    assert enc["epilogue_dilations"] == [2, 1]
    assert enc["dropout"] == 0.1
    assert any("dropouts" in note for note in config["metadata"]["notes"])


def test_quartznet15x5_layout_maps_to_the_preset(tmp_path):
    """NeMo's published QuartzNet 15x5 block list is the plugin's preset."""

    def block(filters, kernel, repeat=5, **kw):
        return (
            dict(
                filters=filters,
                repeat=repeat,
                kernel=[kernel],
                stride=[1],
                dilation=[1],
                dropout=0.0,
                residual=True,
                separable=True,
            )
            | kw
        )

    jasper = [block(256, 33, 1, stride=[2], residual=False)]
    for filters, kernel in ((256, 33), (256, 39), (512, 51), (512, 63), (512, 75)):
        jasper += [block(filters, kernel) for _ in range(3)]
    jasper += [
        block(512, 87, 1, dilation=[2], residual=False),
        block(1024, 1, 1, residual=False, separable=False),
    ]

    def edit(config):
        config["encoder"]["jasper"] = jasper
        config["decoder"]["feat_in"] = 1024

    config = read_nemo_config(_variant(tmp_path, edit))
    with torch.device("meta"):  # the config only, no 19M-parameter init
        preset = QuartzNet(input_size=64, preset="quartznet15x5").config
    assert config["encoder_config"] == preset
    assert config["encoder_output_size"] == 1024


def test_omegaconf_interpolations_are_resolved(tmp_path):
    def interpolate(config):
        config["decoder"]["vocabulary"] = "${model.labels}"
        config["preprocessor"]["sample_rate"] = "${sample_rate}"

    config = read_nemo_config(_variant(tmp_path, interpolate))
    assert config["tokens"] == LABELS + ["<blank>"]
    assert config["features"]["sample_rate"] == 16000


def test_gzip_compressed_archive_is_read(tmp_path):
    path = tmp_path / "compressed.nemo"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in _members(FIXTURES / "quartznet_tiny.nemo").items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert read_nemo_config(path)["n_tokens"] == 29
    assert set(load_nemo_state(path)) == {"encoder", "head"}


# --------------------------------------------------------------------------- #
# Weights and numerics against NeMo
# --------------------------------------------------------------------------- #


def test_weights_are_nemos_key_by_key():
    path = FIXTURES / "quartznet_tiny.nemo"
    with tarfile.open(path) as archive:
        member = next(m for m in archive if m.name.endswith("model_weights.ckpt"))
        nemo_state = torch.load(io.BytesIO(archive.extractfile(member).read()))
    state = load_nemo_state(path)
    encoder_keys = [k for k in nemo_state if k.startswith("encoder.")]
    assert len(state["encoder"]) == len(encoder_keys)
    assert torch.equal(
        state["encoder"]["blocks.3.mconv.5.conv.weight"],
        nemo_state["encoder.encoder.4.mconv.5.conv.weight"],
    )
    assert torch.equal(
        state["encoder"]["epilogue.1.mconv.0.conv.weight"],
        nemo_state["encoder.encoder.6.mconv.0.conv.weight"],
    )
    decoder = nemo_state["decoder.decoder_layers.0.weight"][..., 0]
    assert torch.equal(state["head"]["w.weight"], decoder)
    # Blank last, as NeMo: row 28 is NeMo's blank row.
    assert torch.equal(
        state["head"]["w.bias"], nemo_state["decoder.decoder_layers.0.bias"]
    )
    assert state["head"]["w.weight"].shape == (29, 64)


def test_encoder_and_head_match_nemo_on_nemo_features(imported):
    name, config, encoder, head, ref = imported
    feats = torch.from_numpy(ref["feats"]).transpose(1, 2)  # [B, T, 64]
    rel = torch.from_numpy(ref["feat_lens"] / feats.shape[1]).float()
    with torch.no_grad():
        enc = encoder(feats, rel)
        log_probs = torch.log_softmax(head(enc), dim=-1)
    enc_lens = ref["enc_lens"]
    assert enc.shape[1] == ref["enc"].shape[2]
    nemo_enc = torch.from_numpy(ref["enc"]).transpose(1, 2)
    assert _max_valid_diff(enc, nemo_enc, enc_lens) < NETWORK_TOLERANCE
    nemo_lp = torch.from_numpy(ref["log_probs"])
    assert _max_valid_diff(log_probs, nemo_lp, enc_lens) < NETWORK_TOLERANCE
    # Same greedy CTC path, blank = the last row.
    for i, n in enumerate(enc_lens):
        assert torch.equal(log_probs[i, :n].argmax(-1), nemo_lp[i, :n].argmax(-1))


@pytest.mark.parametrize("name", MODELS)
def test_featurizer_matches_nemo_logmel(wavs, name):
    # quartznet_tiny: 20 ms Hann window, n_fft 512; jasper_tiny: 25 ms Hamming,
    # default n_fft, and a last valid frame that reaches past utterance 2's end.
    config = read_nemo_config(FIXTURES / f"{name}.nemo")
    ref = _reference(name)
    rel = torch.from_numpy(ref["wav_lens"] / wavs.shape[1]).float()
    featurizer = _featurizer(config, normalize=None)
    with torch.no_grad():
        ours = featurizer(wavs, rel)
    # NeMo's frame count: samples // hop (one fewer than the STFT's frames).
    assert ours.shape == (2, int(ref["feat_lens"].max()), 64)
    assert featurizer.frame_counts(torch.from_numpy(ref["wav_lens"])).tolist() == (
        ref["feat_lens"].tolist()
    )
    nemo = torch.from_numpy(ref["logmel"]).transpose(1, 2)
    assert _max_valid_diff(ours, nemo, ref["feat_lens"]) <= LOGMEL_TOLERANCE
    # Unnormalised, past utterance 2's valid frames: its per-band mean.
    n = int(ref["feat_lens"][1])
    assert torch.allclose(ours[1, n:], ours[1, :n].mean(0).expand_as(ours[1, n:]))
    # With NeMo's pad_to=16 the full-length utterance equals NeMo's whole tensor.
    with torch.no_grad():
        padded = _featurizer(config, pad_to=16, normalize=None)(wavs, rel)
    assert padded.shape == nemo.shape
    assert (padded[0] - nemo[0]).abs().max() <= LOGMEL_TOLERANCE


@pytest.mark.parametrize("name", MODELS)
def test_featurizer_normalises_as_nemo_in_a_padded_batch(wavs, name):
    """NeMo's per_feature: unbiased std + 1e-5 over each utterance's valid frames."""
    config = read_nemo_config(FIXTURES / f"{name}.nemo")
    ref = _reference(name)
    rel = torch.from_numpy(ref["wav_lens"] / wavs.shape[1]).float()
    featurizer = _featurizer(config)
    assert normalizes_itself(featurizer)
    with torch.no_grad():
        ours, feat_rel = featurize(featurizer, wavs, rel)
    nemo = torch.from_numpy(ref["feats"]).transpose(1, 2)
    assert _max_valid_diff(ours, nemo, ref["feat_lens"]) <= NORMALIZED_TOLERANCE
    # Padding is 0 as NeMo's, and the relative lengths give NeMo's frame counts.
    n = int(ref["feat_lens"][1])
    assert torch.all(nemo[1, n : ours.shape[1]] == 0) and torch.all(ours[1, n:] == 0)
    frames = torch.round(feat_rel * ours.shape[1]).long()
    assert frames.tolist() == ref["feat_lens"].tolist()
    # Alone, the short utterance gets the same features as in the batch.
    with torch.no_grad():
        alone = featurizer(wavs[1:, : int(ref["wav_lens"][1])])
    assert alone.shape[1] == n
    assert (alone[0] - ours[1, :n]).abs().max() <= NORMALIZED_TOLERANCE


def test_all_features_normalisation_is_nemos(wavs):
    featurizer = NeMoFeaturizer(normalize="all_features").eval()
    raw = NeMoFeaturizer().eval()
    rel = torch.tensor([1.0, 17617 / 24000])
    with torch.no_grad():
        ours, x = featurizer(wavs, rel), raw(wavs, rel)
    for i, n in enumerate(featurizer.frame_counts(torch.tensor([24000, 17617]))):
        valid = x[i, :n]
        expected = (valid - valid.mean()) / (valid.std(unbiased=True) + 1e-5)
        assert (ours[i, :n] - expected).abs().max() < 1e-4
        assert torch.all(ours[i, n:] == 0)
    with pytest.raises(ValueError, match="normalize"):
        NeMoFeaturizer(normalize="sentence")


def test_waveform_to_log_probs_match_nemo_in_a_padded_batch(imported, wavs):
    name, config, encoder, head, ref = imported
    rel = torch.from_numpy(ref["wav_lens"] / wavs.shape[1]).float()
    with torch.no_grad():
        feats, feat_rel = featurize(_featurizer(config), wavs, rel)
        log_probs = torch.log_softmax(head(encoder(feats, feat_rel)), dim=-1)
    nemo_lp = torch.from_numpy(ref["log_probs"])
    diff = _max_valid_diff(log_probs, nemo_lp, ref["enc_lens"])
    assert diff < END_TO_END_TOLERANCE


def test_fbank_is_called_without_lengths():
    from speechbrain.lobes.features import Fbank

    fbank = Fbank(n_mels=40)
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    feats, feat_lens = featurize(fbank, wavs, lens)
    assert torch.equal(feats, fbank(wavs)) and feat_lens is lens
    assert not normalizes_itself(fbank)


# --------------------------------------------------------------------------- #
# A model NeMo trained: from the waveform, alone and in a padded batch
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def trained_reference():
    ref = dict(np.load(FIXTURES / "quartznet_de.npz"))
    ref["signal"] = torch.from_numpy(ref["wavs"].astype(np.float32) / 32768)
    return ref


@pytest.mark.parametrize("nemo_file", TRAINED)
def test_trained_model_matches_nemo_alone_and_in_a_batch(nemo_file, trained_reference):
    ref = trained_reference
    model = load_pretrained(FIXTURES / nemo_file)
    signal, lengths = ref["signal"], ref["wav_lens"]
    assert len(set(lengths.tolist())) == len(lengths) > 2  # different lengths
    with torch.no_grad():
        for i, n in enumerate(lengths):
            theirs = torch.from_numpy(ref[f"log_probs_alone_{i}"])
            # NeMo's outputs are peaky (a trained model), so errors would show.
            assert theirs.max(-1).values.exp().mean() > 0.6
            ours = model.log_probs(signal[i : i + 1, :n], torch.ones(1))[0]
            assert ours.shape == theirs.shape
            assert (ours - theirs).abs().max() < END_TO_END_TOLERANCE
            assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
        rel = torch.from_numpy(lengths / signal.shape[1]).float()
        batch = model.log_probs(signal, rel)
    nemo_batch = torch.from_numpy(ref["log_probs_batch"])
    assert _max_valid_diff(batch, nemo_batch, ref["enc_lens"]) < END_TO_END_TOLERANCE


def test_exported_nemo_model_transcribes_batches_as_nemo(tmp_path, trained_reference):
    """save_pretrained -> EncoderASR: lengths reach the featurizer there too."""
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.inference.ASR import EncoderASR

    from xlt_plugin.pretrained import read_config, save_pretrained

    ref = trained_reference
    nemo = FIXTURES / "quartznet_de.nemo"
    model = load_pretrained(nemo)
    tokenizer = CTCTextEncoder()
    tokenizer.insert_blank(index=model.blank_index)
    tokenizer.update_from_iterable(model.tokens[:-1], sequence_input=False)
    out = save_pretrained(
        tmp_path / "model",
        encoder=model.encoder,
        head=model.head,
        tokenizer=tokenizer,
        features=read_config(nemo, "features"),
    )
    hparams = (out / "hyperparams.yaml").read_text()
    assert "FrameLengthsSequential" in hparams
    assert "normalize: !ref <normalize>\n    model" not in hparams
    asr = EncoderASR.from_hparams(source=str(out), savedir=str(tmp_path / "sb"))
    assert isinstance(asr.mods.encoder, FrameLengthsSequential)
    rel = torch.from_numpy(ref["wav_lens"] / ref["signal"].shape[1]).float()
    with torch.no_grad():
        ours = asr.encode_batch(ref["signal"], rel)
    nemo_batch = torch.from_numpy(ref["log_probs_batch"])
    assert _max_valid_diff(ours, nemo_batch, ref["enc_lens"]) < END_TO_END_TOLERANCE


def test_cls_params_config_imports_as_the_new_layout():
    old = read_nemo_config(FIXTURES / "quartznet_de_cls_params.nemo")
    new = read_nemo_config(FIXTURES / "quartznet_de.nemo")
    for key in ("encoder_config", "features", "tokens", "blank_index", "n_tokens"):
        assert old[key] == new[key], key
    assert any("2020 layout" in note for note in old["metadata"]["notes"])
    assert not any("2020 layout" in note for note in new["metadata"]["notes"])
    with tarfile.open(FIXTURES / "quartznet_de_cls_params.nemo") as archive:
        member = next(m for m in archive if m.name.endswith("model_config.yaml"))
        raw = yaml.safe_load(archive.extractfile(member).read())
    assert "cls" in raw["encoder"] and "_target_" not in raw["encoder"]
    assert set(raw["encoder"]) == {"cls", "params"}
    for part in ("encoder", "head"):
        old_state = load_nemo_state(FIXTURES / "quartznet_de_cls_params.nemo")[part]
        new_state = load_nemo_state(FIXTURES / "quartznet_de.nemo")[part]
        assert all(torch.equal(old_state[k], new_state[k]) for k in new_state)


def test_upgrade_config_is_nemos_conversion():
    old = {
        "cls": "x.Model",
        "params": {"a": 1, "b": {"cls": "y.Sub", "params": {"c": 2}}},
        "a": 0,
        "keep": {"_target_": "z.Z", "cls": "ignored"},
        "blocks": [{"cls": "in.a.list"}],  # lists are not entered, as in NeMo
    }
    assert upgrade_config(old) == {
        "_target_": "x.Model",
        "a": 1,
        "keep": {"_target_": "z.Z", "cls": "ignored"},
        "blocks": [{"cls": "in.a.list"}],
        "b": {"_target_": "y.Sub", "c": 2},
    }
    assert old["params"]["b"]["cls"] == "y.Sub"  # the input is left alone
    new = read_nemo_config(FIXTURES / "quartznet_tiny.nemo")
    assert upgrade_config(new) == new


def test_old_layout_with_an_unsupported_encoder_names_it(tmp_path):
    def old_conformer(config):
        config["encoder"] = {
            "cls": "nemo.collections.asr.modules.ConformerEncoder",
            "params": {"feat_in": 64, "n_layers": 2},
        }

    with pytest.raises(NeMoImportError, match="the encoder is ConformerEncoder"):
        read_nemo_config(_variant(tmp_path, old_conformer))


def test_measured_json_is_within_the_stated_bound():
    measured = json.loads((FIXTURES / "measured.json").read_text())
    assert measured["nemo_version"] == "3.0.0"
    for name in MODELS:
        assert measured[name]["log_probs_end_to_end"] < END_TO_END_TOLERANCE
        assert measured[name]["normalized"] < NORMALIZED_TOLERANCE
    trained = measured["quartznet_de"]
    for key in ("alone", "batch", "cls_params"):
        assert trained[key] < END_TO_END_TOLERANCE, key
    assert trained["mean_max_prob"] > 0.6


def test_load_report_states_the_end_to_end_difference():
    report = nemo_load_report(FIXTURES / "jasper_tiny.nemo")
    assert report.startswith("NeMo import of jasper_tiny.nemo (NeMo 3.0.0")
    assert "blank_index=28" in report
    assert "NeMo's per_feature (unbiased std + 1e-5" in report
    assert f"from the waveform within {END_TO_END_TOLERANCE:g}" in report
    assert "in a padded batch" in report
    assert "note: NeMo's blocks use dropouts" in report
    old = nemo_load_report(FIXTURES / "quartznet_de_cls_params.nemo")
    assert "note: the config is in NeMo's 2020 layout" in old


def test_featurizer_dither_only_in_training():
    featurizer = NeMoFeaturizer()
    wav = torch.zeros(1, 8000)
    featurizer.eval()
    silent = featurizer(wav)
    assert torch.equal(silent, featurizer(wav))
    # log(0 + 2**-24) everywhere in eval: no dither.
    assert torch.allclose(silent, torch.full_like(silent, float(np.log(2.0**-24))))
    featurizer.train()
    torch.manual_seed(0)
    assert not torch.allclose(featurizer(wav), silent)
    with pytest.raises(ValueError, match="batch, samples"):
        featurizer(torch.zeros(8000))
    with pytest.raises(ValueError, match="no frame"):
        featurizer(torch.zeros(1, 100))


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #


def _members(path):
    with tarfile.open(path) as archive:
        return {
            Path(m.name).name: archive.extractfile(m).read()
            for m in archive
            if m.isfile()
        }


def _write_tar(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _variant(tmp_path, edit_config=None, edit_state=None, name="variant.nemo"):
    members = _members(FIXTURES / "quartznet_tiny.nemo")
    if edit_config:
        config = yaml.safe_load(members["model_config.yaml"])
        edit_config(config)
        members["model_config.yaml"] = yaml.safe_dump(config).encode()
    if edit_state:
        state = torch.load(io.BytesIO(members["model_weights.ckpt"]))
        edit_state(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        members["model_weights.ckpt"] = buffer.getvalue()
    return _write_tar(tmp_path / name, members)


def test_is_nemo(tmp_path):
    assert is_nemo(FIXTURES / "quartznet_tiny.nemo")
    assert is_nemo("missing/model.nemo")  # reaches the importer's clear error
    assert not is_nemo(tmp_path)
    renamed = tmp_path / "checkpoint.tar"
    renamed.write_bytes((FIXTURES / "quartznet_tiny.nemo").read_bytes())
    assert is_nemo(renamed)
    plain = tmp_path / "notes.txt"
    plain.write_text("hello")
    assert not is_nemo(plain)


def test_not_a_tar(tmp_path):
    path = tmp_path / "broken.nemo"
    path.write_bytes(b"this is not an archive" * 40)
    with pytest.raises(
        NeMoImportError, match=r"broken\.nemo is not a NeMo .*not a tar"
    ):
        read_nemo_config(path)
    with pytest.raises(FileNotFoundError, match="absent.nemo does not exist"):
        read_nemo_config(tmp_path / "absent.nemo")


def test_missing_members(tmp_path):
    members = _members(FIXTURES / "quartznet_tiny.nemo")
    path = _write_tar(
        tmp_path / "no_weights.nemo",
        {"model_config.yaml": members["model_config.yaml"]},
    )
    read_nemo_config(path)  # the config alone is readable
    with pytest.raises(
        NeMoImportError, match=r"no_weights\.nemo .*lacks model_weights"
    ):
        load_nemo_state(path)
    path = _write_tar(tmp_path / "empty.nemo", {"README": b"x"})
    with pytest.raises(NeMoImportError, match="lacks model_config.yaml"):
        read_nemo_config(path)


def test_conformer_is_refused_naming_supported_encoders(tmp_path):
    def conformer(config):
        config["encoder"] = {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 64,
            "n_layers": 2,
            "d_model": 64,
        }

    path = _variant(tmp_path, conformer, name="conformer.nemo")
    with pytest.raises(NeMoImportError) as err:
        read_nemo_config(path)
    message = str(err.value)
    assert "conformer.nemo" in message and "ConformerEncoder" in message
    assert "Supported encoders: ConvASREncoder" in message


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda c: c["encoder"]["jasper"][2].update(se=True), r"jasper\[2\]\.se"),
        (lambda c: c["encoder"].update(activation="swish"), "encoder.activation"),
        (lambda c: c["encoder"]["jasper"][3].update(repeat=3), r"jasper\[3\]\.repeat"),
        (lambda c: c["encoder"]["jasper"][2].update(residual=False), r"jasper\[2\]"),
        (lambda c: c["preprocessor"].update(normalize=None), "normalize"),
        (lambda c: c.update(tokenizer={"dir": "x"}), "BPE"),
    ],
)
def test_what_the_plugin_cannot_express_is_refused(tmp_path, edit, pattern):
    with pytest.raises(NeMoImportError, match=pattern):
        read_nemo_config(_variant(tmp_path, edit))


def test_leftover_and_missing_keys_are_named(tmp_path):
    def extra(state):
        state["encoder.encoder.1.adapter.weight"] = torch.zeros(3)

    with pytest.raises(NeMoImportError, match=r"encoder\.encoder\.1\.adapter\.weight"):
        load_nemo_state(_variant(tmp_path, edit_state=extra, name="extra.nemo"))

    def drop(state):
        del state["encoder.encoder.2.res.0.1.running_var"]

    with pytest.raises(
        NeMoImportError, match=r"lacks .*blocks\.1\.res\.0\.1\.running_var"
    ):
        load_nemo_state(_variant(tmp_path, edit_state=drop, name="drop.nemo"))

    def reshape(state):
        state["decoder.decoder_layers.0.bias"] = torch.zeros(30)

    with pytest.raises(NeMoImportError, match=r"decoder_layers\.0\.bias has shape"):
        load_nemo_state(_variant(tmp_path, edit_state=reshape, name="shape.nemo"))


def test_remade_fixture_matches_committed(tmp_path):
    """With NeMo installed, make_fixture reproduces the committed reference data."""
    pytest.importorskip("nemo")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_fixture", FIXTURES / "make_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(tmp_path, with_measurements=False)
    assert np.array_equal(
        np.load(tmp_path / "wavs.npy"), np.load(FIXTURES / "wavs.npy")
    )
    # The trained model's references are recomputed from the committed archive.
    for name in (*MODELS, "quartznet_de"):
        new, old = dict(np.load(tmp_path / f"{name}.npz")), _reference(name)
        assert set(new) == set(old)
        for key in old:
            np.testing.assert_allclose(new[key], old[key], atol=1e-6, err_msg=key)
