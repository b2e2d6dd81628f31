"""``xlt export``: best checkpoint -> EncoderASR folder + HuggingFace model card,
and exported folders as the start of the next transfer (en -> es -> ca)."""

import json
import shutil

import pytest
import torch
import yaml
from conftest import REPO, run_recipe

from xlt_plugin.cli import main
from xlt_plugin.data.pipeline import load_audio
from xlt_plugin.decode.transcribe import transcribe_files
from xlt_plugin.export.hub import (
    ExportError,
    detect_synthetic,
    export_run,
    find_best_checkpoint,
)
from xlt_plugin.pretrained import load_pretrained
from xlt_plugin.runs import scored_tests

ES_XFER = REPO / "recipes" / "CommonVoice" / "hparams" / "es_xfer.yaml"
DEBUG = ["--debug", "--debug_batches=2", "--debug_epochs=1", "--noprogressbar"]


def _export(capsys, run, out, *extra):
    code = main(["export", "--checkpoint", str(run), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return out


def _card(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def _metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").open(encoding="utf-8")]


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_encoder_asr_loads_the_export_and_agrees(en_base, corpora, tmp_path, capsys):
    from speechbrain.inference.ASR import EncoderASR

    out = _export(capsys, en_base, tmp_path / "exported")
    # The weights are the best checkpoint's (the recipe's own model/ too).
    best = find_best_checkpoint(en_base)
    exported = _state(out / "model.ckpt")
    for key, value in _state(best.path / "encoder.ckpt").items():
        assert torch.equal(exported[key], value), key
    assert torch.equal(
        _state(out / "head.ckpt")["w.weight"],
        _state(en_base / "model" / "head.ckpt")["w.weight"],
    )

    asr = EncoderASR.from_hparams(source=str(out), savedir=str(tmp_path / "asr"))
    clips = sorted((corpora("en", 16) / "clips").glob("*.mp3"))[:3]
    ours = transcribe_files(out, clips)
    for clip, text in zip(clips, ours, strict=True):
        wav = load_audio(str(clip)).unsqueeze(0)
        words, _ = asr.transcribe_batch(wav, torch.ones(1))
        assert " ".join(words[0].split()) == text
    assert any(ours)


def test_the_lowest_cer_checkpoint_is_exported(en_base, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(en_base, run, ignore=shutil.ignore_patterns("asr"))
    original = find_best_checkpoint(run)
    # A second checkpoint: different head weights, CER meta set per case.
    other = run / "save" / "CKPT+2099-01-01+00-00-00+00"
    shutil.copytree(original.path, other)
    head = _state(other / "head.ckpt")
    head["w.bias"] = head["w.bias"] + 1.0
    torch.save(head, other / "head.ckpt")

    def set_cer(value):
        meta = yaml.safe_load((other / "CKPT.yaml").read_text())
        meta["CER"] = value
        (other / "CKPT.yaml").write_text(yaml.safe_dump(meta))

    set_cer(original.meta["CER"] - 1.0)
    out = _export(capsys, run, tmp_path / "a")
    assert torch.equal(_state(out / "head.ckpt")["w.bias"], head["w.bias"])
    assert (
        json.loads((out / "config.json").read_text())["metadata"]["checkpoint"]["name"]
        == other.name
    )

    set_cer(original.meta["CER"] + 1.0)
    out = _export(capsys, run, tmp_path / "b")
    expected = _state(original.path / "head.ckpt")["w.bias"]
    assert torch.equal(_state(out / "head.ckpt")["w.bias"], expected)

    # Without model/config.json (a run stopped early) the architecture comes
    # from hyperparams.yaml; same weights, same transcript-ready folder.
    shutil.rmtree(run / "model")
    out = _export(capsys, run, tmp_path / "c")
    assert torch.equal(_state(out / "head.ckpt")["w.bias"], expected)
    assert load_pretrained(out).tokens == load_pretrained(en_base / "model").tokens


def test_model_card_front_matter_and_results(en_base, tmp_path, capsys):
    out = _export(capsys, en_base, tmp_path / "card")
    front, body = _card(out)
    assert front["license"] == "apache-2.0"
    assert front["library_name"] == "speechbrain"
    assert front["language"] == ["en"]
    assert {"automatic-speech-recognition", "CTC"} <= set(front["tags"])
    assert "synthetic-speech" in front["tags"] and front["datasets"]
    assert "transfer-learning" not in front["tags"]  # trained from scratch

    tests = [r for r in _metrics(en_base) if r["stage"] == "test"]
    (entry,) = front["model-index"]
    assert entry["name"] and len(entry["results"]) == len(tests) == 1
    result = entry["results"][0]
    assert result["task"]["type"] == "automatic-speech-recognition"
    assert {"name", "type", "split"} <= set(result["dataset"])
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {
        "wer": round(tests[0]["WER"], 2),
        "cer": round(tests[0]["CER"], 2),
    }

    assert "synthetic speech" in body and "from scratch" in body
    report = json.loads((en_base / "save" / "prep_report.json").read_text())
    assert f"| train | {report['splits']['train']['rows']} |" in body
    assert "EncoderASR.from_hparams" in body and "transcribe_file" in body

    out = _export(capsys, en_base, tmp_path / "rec", "--data-origin", "recorded")
    front, body = _card(out)
    assert "synthetic-speech" not in front["tags"]
    assert "no sign of synthesis" in body


def test_synthetic_detection(corpora, tmp_path):
    data = corpora("en", 16)
    assert detect_synthetic(data) is True
    assert (data / "xlt_synth.json").is_file()
    # The synthesizer's marker is what tells: the same tsv files without it read
    # as recorded speech (no voice tables are re-derived from client ids).
    real_like = tmp_path / "cv"
    shutil.copytree(data, real_like, ignore=shutil.ignore_patterns("clips", "*.json"))
    assert detect_synthetic(real_like) is False
    assert detect_synthetic(tmp_path / "gone") is None


def test_chain_en_es_ca(en_base, corpora, tmp_path, capsys):
    """An exported folder is the pretrained_path of the next transfer."""
    es_run, ca_run = tmp_path / "es", tmp_path / "ca"
    run_recipe([ES_XFER, f"--data_folder={corpora('es', 16)}",
                f"--pretrained_path={en_base / 'model'}", f"--output_folder={es_run}",
                "--batch_size=4", *DEBUG])  # fmt: skip
    es_model = _export(capsys, es_run, tmp_path / "es_model")
    front, body = _card(es_model)
    assert "transfer-learning" in front["tags"] and front["language"] == ["es"]
    remap = json.loads((es_run / "remap_report.json").read_text())
    assert f"| {remap['n_target']} | 1 | {remap['copied']} |" in body
    assert str(en_base / "model") in body
    # Zero-shot and fine-tuned rows; the index holds the fine-tuned one only.
    rows = scored_tests(_metrics(es_run))
    zero = next(r for r in rows if r["zero_shot"])
    assert f"| {zero['test_set']} | zero-shot" in body
    assert f"{zero['CER']:.2f}" in body
    assert len(front["model-index"][0]["results"]) == 1

    brain, hparams, _ = run_recipe(
        [
            ES_XFER,
            "--language=ca",
            f"--data_folder={corpora('ca', 12)}",
            f"--pretrained_path={es_model}",
            f"--output_folder={ca_run}",
            "--batch_size=4",
            *DEBUG,
        ]  # fmt: skip
    )
    report = json.loads((ca_run / "remap_report.json").read_text())
    assert report["n_target"] == len(brain.tokenizer)
    assert report["copied"] >= 20  # Latin letters kept from Spanish
    ca_model = _export(capsys, ca_run, tmp_path / "ca_model")
    config = json.loads((ca_model / "config.json").read_text())
    assert config["metadata"]["language"] == "ca"
    assert config["metadata"]["pretrained_path"] == str(es_model)
    front, body = _card(ca_model)
    assert front["language"] == ["ca"]
    assert f"itself transferred from `{en_base / 'model'}`" in body
    # The Spanish export's encoder is where the Catalan run started.
    assert (
        load_pretrained(ca_model).config["encoder_config"]
        == (load_pretrained(es_model).config["encoder_config"])
    )


def test_bad_runs_fail_clearly(tmp_path, capsys):
    code = main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "nope does not exist" in err[0]
    assert "output folder of a recipe run" in err[0]
    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    with pytest.raises(ExportError, match="hyperparams.yaml is missing"):
        export_run(run, tmp_path / "out")
    (run / "hyperparams.yaml").write_text("language: en\n")
    with pytest.raises(ExportError, match="holds no checkpoint"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
