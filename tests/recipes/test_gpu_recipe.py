"""The GPU path of a recipe, run on the CPU with tiny sizes: SpeechBrain's
``--precision=bf16`` autocast, loader workers, and live curves in TensorBoard.

On a GPU the same command adds ``--device=cuda`` (``benchmarks/gpu_check.sh``).
"""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import EN_BASE_YAML

from xlt_plugin.recipe import (
    common_voice_data,
    fit_and_test,
    load_recipe,
    make_brain,
)

TINY = [
    "--encoder_preset=quartznet_tiny",
    "--batch_size=4",
    "--noprogressbar",
    "--debug",  # SpeechBrain's: 2 epochs of 2 batches
]


def test_bf16_recipe_with_tensorboard_and_workers(corpora, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    out = tmp_path / "out"
    hparams, run_opts, _ = load_recipe(
        [
            str(EN_BASE_YAML),
            f"--data_folder={corpora('en', 16)}",
            f"--output_folder={out}",
            "--device=cpu",
            "--precision=bf16",
            "--tensorboard=True",
            "--num_workers=1",
            *TINY,
        ]
    )
    tokenizer, datasets = common_voice_data(hparams)
    brain = make_brain(hparams, run_opts, tokenizer)
    dtypes = set()
    brain.modules.encoder.register_forward_hook(
        lambda _m, _i, output: dtypes.add((brain.modules.training, output.dtype))
    )
    fit_and_test(brain, datasets, hparams)

    assert brain.precision == "bf16"
    # Training ran under SpeechBrain's bf16 autocast; evaluation in fp32
    # (--eval_precision's default).
    assert dtypes == {(True, torch.bfloat16), (False, torch.float32)}
    assert brain.train_loader.num_workers == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    stages = [r["stage"] for r in records]
    assert stages.count("train") == 2 and stages.count("test") == 1
    assert all(math.isfinite(r["loss"]) for r in records)

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "lr",
        "loss/train",
        "loss/valid",
        "CER/valid",
        "WER/valid",
        "loss/test",
        "CER/test",
        "WER/test",
        "loss/train_step",
        "lr/train_step",
    }
    assert expected <= tags, expected - tags
    assert [e.step for e in events.Scalars("CER/valid")] == [1, 2]
    valid = [r for r in records if r["stage"] == "valid"]
    logged = [e.value for e in events.Scalars("CER/valid")]
    assert logged == pytest.approx([r["CER"] for r in valid])


def test_fp16_on_cpu_exits_with_a_message_not_a_traceback(tmp_path):
    train = EN_BASE_YAML.parents[1] / "train.py"
    done = subprocess.run(
        [
            sys.executable,
            str(train),
            str(EN_BASE_YAML),
            f"--data_folder={tmp_path}",
            f"--output_folder={tmp_path / 'out'}",
            "--device=cpu",
            "--precision=fp16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "--precision=fp16 needs a CUDA device" in done.stderr
    assert "Traceback" not in done.stderr
