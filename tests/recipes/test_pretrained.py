"""The hub layout: round trip, feature kinds, and clear errors."""

import shutil

import pytest
import torch

from xlt_plugin.pretrained import (
    build_encoder,
    build_features,
    load_pretrained,
    read_config,
)


def test_round_trip_gives_the_same_outputs(en_base):
    model = load_pretrained(en_base / "model")
    again = load_pretrained(en_base / "model")
    wavs = torch.randn(2, 16000) * 0.1
    lens = torch.tensor([1.0, 0.7])
    with torch.no_grad():
        torch.testing.assert_close(
            model.log_probs(wavs, lens), again.log_probs(wavs, lens)
        )
    assert read_config(en_base / "model", "features.kind") == "fbank"
    assert type(build_features(en_base / "model")).__name__ == "Fbank"
    fresh = build_encoder(en_base / "model")  # architecture only: random weights
    assert fresh.state_dict().keys() == model.encoder.state_dict().keys()


def test_token_file_that_does_not_match_the_head(en_base, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(en_base / "model", broken)
    lines = (broken / "tokenizer.ckpt").read_text().splitlines()
    # Drop the last label line (labels come before the "=====" separator).
    label_lines = range(lines.index("================"))
    del lines[label_lines[-1]]
    (broken / "tokenizer.ckpt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as err:
        load_pretrained(broken)
    message = str(err.value)
    assert "tokenizer.ckpt" in message and "head.ckpt" in message
    n_rows = read_config(broken, "n_tokens")
    assert f"{n_rows - 1} tokens" in message and f"{n_rows} rows" in message


def test_missing_paths_and_hub_ids_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_config(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_config(tmp_path / "model.nemo")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        read_config(incomplete)
    # A hub id is fetched through SpeechBrain; offline it fails with a clear message.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="Could not fetch"):
        read_config("someone/not-a-local-folder")


def test_nemo_checkpoint_loads_through_the_same_entry_point():
    from pathlib import Path

    nemo = Path(__file__).parents[1] / "fixtures" / "nemo" / "quartznet_tiny.nemo"
    model = load_pretrained(nemo)
    assert model.tokens[-1] == "<blank>" and model.blank_index == len(model.tokens) - 1
    assert type(model.compute_features).__name__ == "NeMoFeaturizer"
    with torch.no_grad():
        out = model.log_probs(torch.randn(1, 16000) * 0.1, torch.ones(1))
    assert out.shape[-1] == len(model.tokens)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(out.shape[:2]))
