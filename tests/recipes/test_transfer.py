"""End to end: a tiny English base, its hub layout, and a transfer to Spanish.

The base is trained on a few synthetic utterances; its head is remapped onto the
Spanish character inventory. Shared tokens must keep their logits exactly, and
fine-tuning must lower the loss.
"""

import json

import pytest
import torch
from conftest import REPO, run_recipe

from xlt_plugin.pretrained import load_pretrained

ES_XFER = REPO / "recipes" / "CommonVoice" / "hparams" / "es_xfer.yaml"


def _metrics(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_base_writes_metrics_and_a_loadable_model(en_base):
    records = _metrics(en_base)
    train = [r for r in records if r["stage"] == "train"]
    valid = [r for r in records if r["stage"] == "valid"]
    test = [r for r in records if r["stage"] == "test"]
    assert [r["epoch"] for r in train] == [1, 2, 3]
    assert len(valid) == 3 and len(test) == 1
    for r in valid + test:
        assert 0 <= r["CER"] and 0 <= r["WER"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert train[-1]["elapsed"] > train[0]["elapsed"] > 0
    assert all(r["trainable_params"] > 0 for r in records)

    model = load_pretrained(en_base / "model")
    assert model.tokens[0] == "<blank>" and " " in model.tokens
    assert model.config["metadata"]["language"] == "en"


def test_encoder_asr_loads_the_model_and_matches_our_greedy_decode(en_base, corpora):
    from speechbrain.inference.ASR import EncoderASR

    from xlt_plugin.data.pipeline import load_audio

    asr = EncoderASR.from_hparams(
        source=str(en_base / "model"), savedir=str(en_base / "asr")
    )
    clip = sorted((corpora("en", 16) / "clips").glob("*.mp3"))[0]
    wav = load_audio(str(clip)).unsqueeze(0)
    lens = torch.ones(1)
    words, _ = asr.transcribe_batch(wav, lens)

    ours = load_pretrained(en_base / "model")
    with torch.no_grad():
        log_probs = ours.log_probs(wav, lens)
    best = log_probs.argmax(-1)[0].tolist()
    collapsed = [t for i, t in enumerate(best) if i == 0 or t != best[i - 1]]
    text = "".join(ours.tokens[t] for t in collapsed if t != ours.blank_index)
    assert words[0] == text


@pytest.fixture(scope="module")
def es_transfer(en_base, corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("es_xfer")
    argv = [
        ES_XFER,
        f"--data_folder={corpora('es', 16)}",
        f"--pretrained_path={en_base / 'model'}",
        f"--output_folder={out}",
        "--number_of_epochs=3",
        "--batch_size=4",
        "--noprogressbar",
    ]
    brain, hparams, results = run_recipe(argv)
    return out, brain


def test_shared_tokens_keep_their_logits_after_remap(en_base, es_transfer, corpora):
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.nnet.linear import Linear

    from xlt_plugin.pretrained import build_encoder, transfer_weights
    from xlt_plugin.remap import token_map
    from xlt_plugin.tokens import load_tokens

    out, _ = es_transfer
    source = load_pretrained(en_base / "model")
    target_tokens = CTCTextEncoder()
    target_tokens.load(out / "save" / "tokenizer.ckpt")
    encoder = build_encoder(en_base / "model").eval()
    head = Linear(input_size=encoder.output_size, n_neurons=len(target_tokens))
    report = transfer_weights(
        en_base / "model",
        encoder=encoder,
        head=head,
        target_tokens=target_tokens,
        strategy="exact,fold",
    )
    assert report.copied > 10 and report.n_target == len(target_tokens)

    feats = torch.randn(2, 120, source.config["features"]["n_mels"])
    lens = torch.tensor([1.0, 0.8])
    with torch.no_grad():
        src = source.head(source.encoder(feats, lens))
        tgt = head(encoder(feats, lens))
    tmap = token_map(source.tokens, load_tokens(target_tokens), "exact,fold")
    checked = 0
    for t, sources in enumerate(tmap.sources):
        if len(sources) == 1:
            torch.testing.assert_close(tgt[..., t], src[..., sources[0]])
            checked += 1
    assert checked >= report.copied  # blank and every copied token
    # Spanish-only letters exist and were not copied from a same-string row.
    tokens = load_tokens(target_tokens)
    assert any(tmap.how[i] == "fold" for i, tok in enumerate(tokens) if tok in "ñáéíóú")


def test_transfer_run_lowers_the_loss_and_reports_the_remap(es_transfer):
    out, brain = es_transfer
    train = [r for r in _metrics(out) if r["stage"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    report = json.loads((out / "remap_report.json").read_text())
    assert report["n_target"] == len(brain.tokenizer)
    total = report["blank"] + report["copied"] + report["averaged"] + report["fresh"]
    assert total == report["n_target"]
    model = load_pretrained(out / "model")
    assert model.config["metadata"]["language"] == "es"


def test_frozen_encoder_with_trainable_batchnorm(en_base, corpora, tmp_path):
    """Frozen weights stay bit-identical through training; BatchNorm still learns."""
    out = tmp_path / "frozen"
    brain, _, _ = run_recipe(
        [
            ES_XFER,
            f"--data_folder={corpora('es', 16)}",
            f"--pretrained_path={en_base / 'model'}",
            f"--output_folder={out}",
            "--number_of_epochs=2",
            "--batch_size=4",
            "--freeze_patterns=[encoder]",
            "--keep_batchnorm_trainable=True",
            "--noprogressbar",
        ]
    )
    source = load_pretrained(en_base / "model")
    src_state = source.encoder.state_dict()
    tuned = brain.modules.encoder.state_dict()
    convs = [k for k in src_state if k.endswith("conv.weight")]
    norms = [k for k in src_state if k.endswith(".weight") and src_state[k].dim() == 1]
    assert convs and norms
    for key in convs:
        assert torch.equal(tuned[key], src_state[key]), key
    assert any(not torch.equal(tuned[k], src_state[k]) for k in norms)

    full = [r for r in _metrics(en_base) if r["stage"] == "train"][0]
    part = [r for r in _metrics(out) if r["stage"] == "train"][0]
    n_head = sum(p.numel() for p in brain.modules.head.parameters())
    n_norm = sum(src_state[k].numel() for k in norms) * 2  # weight and bias
    assert part["trainable_params"] == n_head + n_norm < full["trainable_params"]
