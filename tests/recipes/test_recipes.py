"""Recipes run as users type them, in SpeechBrain's debug mode, on tiny corpora."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

CV = REPO / "recipes" / "CommonVoice"
DEBUG = ["--debug", "--debug_batches=2", "--debug_epochs=1", "--noprogressbar"]


def _run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _assert_ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("where", ["root", "recipe_folder"])
def test_common_voice_xfer_from_both_paths(where, en_base, corpora, tmp_path):
    out = tmp_path / "out"
    args = [
        f"--data_folder={corpora('es', 16)}",
        f"--pretrained_path={en_base / 'model'}",
        f"--output_folder={out}",
        "--batch_size=4",
        *DEBUG,
    ]
    if where == "root":
        proc = _run([CV / "train.py", CV / "hparams" / "es_xfer.yaml", *args], REPO)
    else:
        proc = _run(["train.py", "hparams/es_xfer.yaml", *args], CV)
    _assert_ok(proc)
    records = [json.loads(x) for x in (out / "metrics.jsonl").open()]
    assert [r["stage"] for r in records] == ["test", "train", "valid", "test"]
    # The first test line is the remapped model before fine-tuning (zero-shot).
    assert records[0]["zero_shot"] and records[0]["epoch"] == 0
    assert not records[-1]["zero_shot"] and records[-1]["epoch"] == 1
    assert (out / "model" / "hyperparams.yaml").is_file()
    assert (out / "remap_report.json").is_file()


@pytest.mark.parametrize("lang", ["es", "de", "ru"])
def test_scratch_recipes_run(lang, corpora, tmp_path):
    out = tmp_path / "out"
    proc = _run(
        [
            CV / "train.py",
            CV / "hparams" / f"{lang}_scratch.yaml",
            f"--data_folder={corpora(lang, 12)}",
            f"--output_folder={out}",
            "--encoder_preset=quartznet_tiny",
            "--batch_size=4",
            f"--feature_cache={tmp_path / 'features'}",
            "--wav_augmentation=null",  # cached features take the feature masks only
            *DEBUG,
        ],
        REPO,
    )
    _assert_ok(proc)
    assert list((tmp_path / "features").glob("*/*.pt")), "features were not cached"
    report = json.loads((out / "save" / "prep_report.json").read_text())
    assert report["options"]["language"] == lang
    assert sum(s["kept"] for s in report["splits"].values()) > 0


@pytest.mark.parametrize("lang", ["de", "ru"])
def test_xfer_recipes_run(lang, en_base, corpora, tmp_path):
    out = tmp_path / "out"
    proc = _run(
        [
            CV / "train.py",
            CV / "hparams" / f"{lang}_xfer.yaml",
            f"--data_folder={corpora(lang, 12)}",
            f"--pretrained_path={en_base / 'model'}",
            f"--output_folder={out}",
            "--batch_size=4",
            *DEBUG,
        ],
        REPO,
    )
    _assert_ok(proc)
    report = json.loads((out / "remap_report.json").read_text())
    # Russian starts from transliterated English letters, German folds umlauts.
    assert report["by_strategy"].get("translit" if lang == "ru" else "fold", 0) > 0


def test_missing_paths_say_how_to_make_them(tmp_path):
    proc = _run([CV / "train.py", CV / "hparams" / "es_xfer.yaml"], REPO)
    assert proc.returncode != 0
    assert "--data_folder" in proc.stderr and "xlt synth" in proc.stderr
    assert "--pretrained_path" in proc.stderr and "EnglishBase" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pretrained_path_that_does_not_exist(corpora, tmp_path):
    proc = _run(
        [
            CV / "train.py",
            CV / "hparams" / "es_xfer.yaml",
            f"--data_folder={corpora('es', 16)}",
            f"--pretrained_path={tmp_path / 'nope'}",
            f"--output_folder={tmp_path / 'out'}",
        ],
        REPO,
    )
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr and "EnglishBase" in proc.stderr
    assert "Traceback" not in proc.stderr


def _run_recipe_debug(recipe, yaml, data, tmp_path, *extra):
    out = tmp_path / "out"
    folder = REPO / "recipes" / recipe
    proc = _run(
        [
            folder / "train.py",
            folder / "hparams" / yaml,
            f"--data_folder={data}",
            f"--output_folder={out}",
            "--batch_size=4",
            *extra,
            *DEBUG,
        ],
        REPO,
    )
    _assert_ok(proc)
    return [json.loads(x) for x in (out / "metrics.jsonl").open()], out


def test_accented_english_scores_each_accent(en_base, corpora, tmp_path):
    data = corpora("en", 16, seed=5, accents="scotland,caribbean")
    records, _ = _run_recipe_debug(
        "AccentedEnglish",
        "xfer.yaml",
        data,
        tmp_path,
        f"--pretrained_path={en_base / 'model'}",
    )
    tests = [r for r in records if r["stage"] == "test"]
    zero = {r["test_set"] for r in tests if r["zero_shot"]}
    tuned = {r["test_set"] for r in tests if not r["zero_shot"]}
    assert zero == tuned and len(zero) >= 1
    assert zero <= {
        "Scottish English",
        "West Indies and Bermuda (Bahamas, Bermuda, Jamaica, Trinidad)",
    }


def test_domain_recipe_scores_the_domain(en_base, corpora, tmp_path):
    data = corpora("en", 12, seed=6, domain="medical")
    records, _ = _run_recipe_debug(
        "Domain", "xfer.yaml", data, tmp_path, f"--pretrained_path={en_base / 'model'}"
    )
    tests = [r for r in records if r["stage"] == "test"]
    assert {r["test_set"] for r in tests} == {"medical"}
    # zero-shot, fine-tuned (greedy), fine-tuned with beam search + domain LM
    assert [r["zero_shot"] for r in tests] == [True, False, False]
    assert [r.get("decoder", "greedy") for r in tests][-1] == "beam+lm"


def test_mandarin_base_then_cantonese_transfer(corpora, tmp_path):
    _, base = _run_recipe_debug(
        "MandarinBase",
        "quartznet_small.yaml",
        corpora("zh-CN", 12),
        tmp_path / "base",
        "--encoder_preset=quartznet_tiny",
    )
    _, out = _run_recipe_debug(
        "Cantonese",
        "xfer.yaml",
        corpora("zh-HK", 12),
        tmp_path / "xfer",
        f"--pretrained_path={base / 'model'}",
    )
    report = json.loads((out / "remap_report.json").read_text())
    assert report["by_strategy"].get("opencc", 0) > 0  # Simplified rows reused
    assert " " not in json.loads((base / "model" / "config.json").read_text())["tokens"]


def test_transfer_from_a_nemo_checkpoint(corpora, tmp_path):
    """A NeMo QuartzNet .nemo (made by NeMo itself) is a valid pretrained_path."""
    from speechbrain.inference.ASR import EncoderASR

    nemo = REPO / "tests" / "fixtures" / "nemo" / "quartznet_tiny.nemo"
    records, out = _run_recipe_debug(
        "CommonVoice",
        "es_xfer.yaml",
        corpora("es", 16),
        tmp_path,
        f"--pretrained_path={nemo}",
    )
    report = json.loads((out / "remap_report.json").read_text())
    assert report["n_source"] == 29 and report["copied"] >= 20
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["features"]["kind"] == "nemo"
    asr = EncoderASR.from_hparams(
        source=str(out / "model"), savedir=str(tmp_path / "a")
    )
    clip = sorted((corpora("es", 16) / "clips").glob("*.mp3"))[0]
    assert isinstance(asr.transcribe_file(str(clip)), str)


def test_typo_in_an_override_names_the_key(corpora, tmp_path):
    proc = _run(
        [
            CV / "train.py",
            CV / "hparams" / "es_scratch.yaml",
            f"--data_folder={corpora('es', 16)}",
            f"--output_folder={tmp_path / 'out'}",
            "--number_of_epoch=2",
        ],
        REPO,
    )
    assert proc.returncode != 0
    assert "--number_of_epoch is not a key" in proc.stderr
    assert "--number_of_epochs" in proc.stderr  # the suggestion
    assert "Traceback" not in proc.stderr
