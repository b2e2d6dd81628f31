"""The GPU path, on the CPU: SpeechBrain's precision option through
CTCTransferBrain, loaders and live curves as YAML keys, and the ``gpu`` profile.

Mixed precision is SpeechBrain's (``--precision``: autocast in ``fit_batch``,
GradScaler for fp16 on CUDA); the Brain keeps the features and the CTC loss in
float32. bf16 autocast runs on CPUs too, so the same code path is tested here.
"""

import pytest
import speechbrain as sb
import torch
import yaml
from conftest import tiny_ctc_brain
from hyperpyyaml import resolve_references
from speechbrain.dataio.batch import PaddedBatch

from xlt_plugin.brain import tensorboard_logger_if
from xlt_plugin.lobes.nemo_features import NeMoFeaturizer
from xlt_plugin.recipe import RecipeError, check_device, load_recipe
from xlt_plugin.resources import recipes_folder
from xlt_plugin.study.profiles import PROFILES, gpu_profile
from xlt_plugin.synth.corpus import split_sizes

TEXTS = ["hola", "casa", "no", "sí"]
YAMLS = sorted(recipes_folder().glob("*/hparams/*.yaml"))
EN_BASE = recipes_folder() / "EnglishBase" / "hparams" / "quartznet_small.yaml"


def _brain(precision, featurizer=None, **hparams):
    return tiny_ctc_brain(
        TEXTS,
        run_opts={"precision": precision},
        n_mels=64,
        featurizer=featurizer,
        **hparams,
    )


def _dtypes(brain):
    """Output dtypes of the featurizer, the encoder and the head, per call."""
    seen = {"features": [], "encoder": [], "head": []}
    modules = {
        "features": brain.hparams.compute_features,
        "encoder": brain.modules.encoder,
        "head": brain.modules.head,
    }
    for name, module in modules.items():
        module.register_forward_hook(
            lambda _m, _i, out, name=name: seen[name].append(out.dtype)
        )
    return seen


@pytest.mark.skipif(
    not torch.amp.is_autocast_available("cpu"), reason="no CPU autocast in this torch"
)
def test_bf16_autocast_runs_the_model_in_bf16_and_the_loss_in_fp32():
    # NeMo's featurizer: a mel matmul that autocast would run in bf16 (SpeechBrain's
    # Fbank keeps float32 by itself).
    brain, dataset = _brain("bf16", NeMoFeaturizer())
    seen = _dtypes(brain)
    batch = PaddedBatch([dataset[i] for i in range(len(dataset))])
    with brain.training_ctx:  # what fit_batch enters (SpeechBrain's autocast)
        assert torch.is_autocast_enabled("cpu")
        log_probs, _ = brain.compute_forward(batch, sb.Stage.TRAIN)
        loss = brain.compute_objectives((log_probs, _), batch, sb.Stage.TRAIN)
    assert seen["encoder"] == [torch.bfloat16]
    assert seen["head"] == [torch.bfloat16]
    assert seen["features"] == [torch.float32]  # the Brain turns autocast off
    assert log_probs.dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bf16_training_steps_keep_fp32_weights_and_learn():
    brain, dataset = _brain("bf16")
    seen = _dtypes(brain)
    before = [p.detach().clone() for p in brain.modules.parameters()]
    brain.fit(
        brain.hparams.epoch_counter,
        dataset,
        train_loader_kwargs={"batch_size": 2},
        progressbar=False,
    )
    assert torch.bfloat16 in seen["encoder"]  # the training steps were autocast
    params = list(brain.modules.parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))
    assert not brain.scaler.is_enabled()  # no GradScaler for bf16


def test_fp32_default_enters_no_autocast():
    brain, dataset = _brain("fp32")
    seen = _dtypes(brain)
    batch = PaddedBatch([dataset[0], dataset[1]])
    with brain.training_ctx:
        assert not torch.is_autocast_enabled("cpu")
        brain.compute_forward(batch, sb.Stage.TRAIN)
    assert seen["encoder"] == [torch.float32]


def test_fp16_on_cpu_is_refused_before_any_work(tmp_path):
    argv = [str(EN_BASE), f"--data_folder={tmp_path}", "--device=cpu"]
    with pytest.raises(RecipeError, match="fp16 needs a CUDA device"):
        load_recipe([*argv, "--precision=fp16", f"--output_folder={tmp_path}/o"])
    with pytest.raises(RecipeError, match="--eval_precision=fp16"):
        check_device({"device": "cpu", "eval_precision": "fp16"})
    assert not (tmp_path / "o").exists()
    # SpeechBrain's own Brain refuses it too (the check above only comes first).
    with pytest.raises(ValueError, match="not yet supported on CPU"):
        _brain("fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RecipeError, match="torch sees no CUDA device"):
        check_device({"device": "cuda", "precision": "bf16"})


# ------------------------------------------------------------------ recipe YAMLs
def _top_level(path):
    """The YAML's top-level nodes after SpeechBrain's references are resolved."""
    text = resolve_references(
        path.read_text(encoding="utf-8"), {"data_folder": "x", "pretrained_path": "p"}
    ).getvalue()
    return {key.value: value for key, value in yaml.compose(text).value}


def test_every_training_yaml_has_the_loader_and_tensorboard_keys():
    assert len(YAMLS) == 15
    for path in YAMLS:
        nodes = _top_level(path)
        assert nodes["num_workers"].value == "0", path
        assert nodes["pin_memory"].value == "false", path
        assert nodes["tensorboard"].value == "false", path
        for stage in ("train", "valid", "test"):
            opts = nodes[f"{stage}_dataloader_opts"].value
            opts = {key.value: value.value for key, value in opts}
            assert (opts["num_workers"], opts["pin_memory"]) == ("0", "false"), path
        switch = nodes["tensorboard_logger"]
        assert switch.tag == "!apply:xlt_plugin.brain.tensorboard_logger_if", path
        folder = switch.value[1].value
        assert folder == nodes["output_folder"].value + "/tensorboard", path


def test_switches_load_off_and_on(tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    text = EN_BASE.read_text(encoding="utf-8")
    off = load_hyperpyyaml(text, {"data_folder": "x", "output_folder": str(tmp_path)})
    assert off["tensorboard_logger"] is None
    assert off["train_dataloader_opts"]["num_workers"] == 0
    assert not (tmp_path / "tensorboard").exists()
    pytest.importorskip("tensorboard")
    on = load_hyperpyyaml(
        text,
        {
            "data_folder": "x",
            "output_folder": str(tmp_path),
            "tensorboard": True,
            "num_workers": 4,
            "pin_memory": True,
        },
    )
    assert type(on["tensorboard_logger"]).__name__ == "TensorboardLogger"
    assert on["tensorboard_logger"].save_dir == str(tmp_path / "tensorboard")
    assert on["valid_dataloader_opts"] == {
        "batch_size": 8,
        "num_workers": 4,
        "pin_memory": True,
    }
    with pytest.raises(ValueError, match="True or False"):
        tensorboard_logger_if("yes", tmp_path)


def test_brain_logs_epochs_and_steps_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    board = tensorboard_logger_if(True, tmp_path / "tb")
    brain, dataset = _brain("fp32", tensorboard_logger=board)
    brain.fit(
        brain.hparams.epoch_counter,
        dataset,
        dataset,
        train_loader_kwargs={"batch_size": 2},
        valid_loader_kwargs={"batch_size": 2},
        progressbar=False,
    )
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/valid", "CER/valid", "WER/valid", "lr"} <= tags
    assert [e.step for e in events.Scalars("CER/valid")] == [1]  # step = epoch
    assert [e.step for e in events.Scalars("loss/train_step")] == [1, 2]


# ------------------------------------------------------------------ gpu profile
def test_gpu_profile_definition():
    profile = PROFILES["gpu"]()
    assert profile.name == "gpu" and PROFILES["gpu"] is gpu_profile
    corpora = {c.name: c for c in profile.corpora}
    assert set(corpora) == {
        "en", "zh-CN", "es", "de", "ru", "zh-HK", "en_accents", "en_medical",
        "en_atc",
    }  # fmt: skip
    assert all(c.conditions == "realistic" for c in profile.corpora)
    # At least 10 hours of English training audio (a realistic English clip
    # lasts ~4.0 s: 1,500 clips measured 100.8 minutes).
    assert split_sizes(corpora["en"].utterances)[0] * 4.0 / 3600 >= 10
    runs = {r.name: r for r in profile.runs}
    for run in profile.runs:
        over = run.overrides
        assert over["device"] == "cuda" and over["precision"] == "bf16", run.name
        assert over["tensorboard"] is True, run.name
        assert over["num_workers"] > 0 and over["pin_memory"] is True, run.name
        if run.variant == "scratch" or run.task == "base":
            assert over["encoder_preset"] == "quartznet15x5", run.name
        else:  # a transfer takes its architecture from its base
            assert "encoder_preset" not in over, run.name
            assert runs[run.base].overrides["encoder_preset"] == "quartznet15x5"
    assert runs["base_large"].data == "en" and runs["base_zh"].data == "zh-CN"
    languages = {r.language for r in profile.runs if r.task == "language"}
    assert languages == {"es", "de", "ru", "zh-HK"}
    for lang in languages:
        variants = {
            r.variant
            for r in profile.runs
            if r.task == "language" and r.language == lang
        }
        assert variants == {"scratch", "xfer_none", "xfer"}
    assert {r.data for r in profile.runs if r.task == "accent"} == {"en_accents"}
    assert {r.data for r in profile.runs if r.task == "domain"} == {
        "en_medical",
        "en_atc",
    }
    # Every run's data is a corpus of the profile, every base a run of it.
    assert all(r.data in corpora for r in profile.runs)
    assert all(r.base is None or r.base in runs for r in profile.runs)


def test_gpu_profile_command_lines_carry_the_run_options(tmp_path):
    from xlt_plugin.study.runner import command

    run = next(r for r in gpu_profile().runs if r.name == "language_es_xfer_s1")
    cmd = command(run, tmp_path / "es", tmp_path / "runs")
    for arg in ("--device=cuda", "--precision=bf16", "--tensorboard=True"):
        assert arg in cmd
    # SpeechBrain takes the first two as run options, the YAML the rest.
    _, run_opts, overrides = sb.parse_arguments(cmd[2:])
    assert (run_opts["device"], run_opts["precision"]) == ("cuda", "bf16")
    assert "tensorboard: True" in overrides and "device" not in overrides


def test_gpu_profile_overrides_name_keys_of_their_yamls(tmp_path):
    """Every override of every run is a SpeechBrain run option or a top-level key
    of the run's YAML (a recipe refuses any other: ``--x is not a key``)."""
    from xlt_plugin.study.runner import command

    for run in gpu_profile().runs:
        cmd = command(run, tmp_path / run.data, tmp_path / "runs")
        _, run_opts, overrides = sb.parse_arguments(cmd[2:])
        assert run_opts["device"] == "cuda", run.name
        keys = set(_top_level(recipes_folder() / run.recipe / "hparams" / run.hparams))
        given = set(yaml.safe_load(overrides))
        assert given <= keys, (run.name, given - keys)
