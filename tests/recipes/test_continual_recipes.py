"""Continual learning through the AccentedEnglish recipe, end to end (issue 14).

Tiny synthetic corpora, quartznet_tiny, batch 4, 1-2 epochs:

- rehearsal (``replay_ratio``) holds its per-batch ratio, and a run killed in
  the middle of an epoch resumes to exactly the uninterrupted run's metrics,
  weights and batches;
- weight averaging with the base (``average_alpha: auto`` / ``0``) exports the
  averaged model, and ``xlt average`` writes one from a finished run;
- adapters train alone (plus the head), and the exported adapted model is the
  trained Brain's model.
"""

import json
import subprocess
import sys

import faults
import pytest
import speechbrain as sb
import torch
from conftest import REPO, run_recipe

from xlt_plugin.averaging import average_head_state, interpolate_state, load_run_model
from xlt_plugin.pretrained import load_pretrained

RECIPE = REPO / "recipes" / "AccentedEnglish"
XFER = RECIPE / "hparams" / "xfer.yaml"
REPLAY_PREFIX = "replay_"


def _target(corpora):
    return corpora("en", 10, seed=5, accents="scotland")


def _args(corpora, en_base, out, *extra, epochs=1):
    return [
        XFER,
        f"--data_folder={_target(corpora)}",
        f"--pretrained_path={en_base / 'model'}",
        f"--output_folder={out}",
        "--batch_size=4",
        f"--number_of_epochs={epochs}",
        "--zero_shot_eval=False",
        "--noprogressbar",
        *extra,
    ]


def _state(path):
    return torch.load(path, weights_only=True)


def _assert_states_equal(left, right, keys=None):
    keys = left.keys() if keys is None else keys
    for key in keys:
        assert torch.equal(left[key], right[key]), key


# ----------------------------------------------------------------- rehearsal
# The recipe's train.py, with every training batch's ids logged (BATCH_LOG) and,
# with PAUSE_EPOCH set, a pause after the first intra-epoch checkpoint of that
# epoch (PAUSE_FLAG written): the test kills the run there (see test_resume.py).
DRIVER = faults.driver_source(
    """
import json

start = CTCTransferBrain.on_fit_batch_start

def logged(self, batch, should_step):
    with open(os.environ["BATCH_LOG"], "a") as log:
        log.write(json.dumps([self.hparams.epoch_counter.current, batch.id]) + "\\n")
    return start(self, batch, should_step)

CTCTransferBrain.on_fit_batch_start = logged
"""
)


def _batches(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def replay_runs(corpora, en_base, tmp_path_factory):
    """An uninterrupted rehearsal run, and one killed in epoch 2 then rerun."""
    root = tmp_path_factory.mktemp("replay")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    whole, killed, flag = root / "whole", root / "killed", root / "paused"

    def command(out):
        return [
            sys.executable,
            str(driver),
            str(RECIPE / "train.py"),
            *map(
                str,
                _args(
                    corpora,
                    en_base,
                    out,
                    f"--replay_data_folder={corpora('en', 16)}",
                    "--replay_ratio=0.5",
                    "--ckpt_interval_minutes=0",
                    "--ckpt_interval_steps=2",
                    epochs=2,
                ),
            ),
        ]

    def popen(out, log, **env):
        return subprocess.Popen(
            command(out),
            cwd=REPO,
            env=faults.env(BATCH_LOG=str(log), **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    uninterrupted = popen(whole, root / "whole.log")
    victim = popen(killed, root / "killed.log", PAUSE_EPOCH="2", PAUSE_FLAG=str(flag))
    faults.kill_when_paused(victim, flag, killed / "save")
    _, errors = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, errors[-3000:]
    before_kill = _batches(root / "killed.log")
    resumed = subprocess.run(
        command(killed),
        cwd=REPO,
        env=faults.env(BATCH_LOG=str(root / "resumed.log")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {
        "whole": whole,
        "killed": killed,
        "whole_batches": _batches(root / "whole.log"),
        "before_kill": before_kill,
        "after_resume": _batches(root / "resumed.log"),
    }


def test_replay_batches_hold_the_ratio(replay_runs):
    batches = replay_runs["whole_batches"]
    epochs = sorted({epoch for epoch, _ in batches})
    assert epochs == [1, 2]
    for epoch in epochs:
        ids = [b for e, b in batches if e == epoch]
        targets = [i for b in ids for i in b if not i.startswith(REPLAY_PREFIX)]
        assert len(targets) == len(set(targets)) > 0  # each target once an epoch
        for batch in ids:  # 4 utterances at ratio 0.5: 2 target, 2 source
            source = sum(i.startswith(REPLAY_PREFIX) for i in batch)
            assert (len(batch), source) == (4, 2) or len(batch) < 4, batch
    # Two epochs draw different source utterances (seed + epoch order).
    first, second = ([b for e, b in batches if e == k] for k in (1, 2))
    assert first != second


def test_replay_killed_mid_epoch_resumes_to_the_same_result(replay_runs):
    whole, killed = replay_runs["whole"], replay_runs["killed"]
    # The kill landed after step 2 of epoch 2: the rerun trained the rest only,
    # the same batches as the uninterrupted run.
    before, after = replay_runs["before_kill"], replay_runs["after_resume"]
    assert before[-1][0] == 2 and after[0][0] == 2
    assert before + after == replay_runs["whole_batches"]
    assert faults.metrics(killed) == faults.metrics(whole)
    for name in ("model.ckpt", "head.ckpt"):
        left, right = _state(whole / "model" / name), _state(killed / "model" / name)
        assert left.keys() == right.keys()
        _assert_states_equal(left, right)


# ----------------------------------------------------------------- averaging
def _run_main(argv):
    from xlt_plugin.recipe import main

    main([str(a) for a in argv])


@pytest.fixture(scope="module")
def auto_run(corpora, en_base, tmp_path_factory):
    """``average_alpha: auto`` over a 3-point grid (source dev: the base's corpus)."""
    out = tmp_path_factory.mktemp("average_auto") / "run"
    _run_main(
        _args(
            corpora,
            en_base,
            out,
            f"--replay_data_folder={corpora('en', 16)}",
            "--average_alpha=auto",
            "--average_grid=[0.0, 0.5, 1.0]",
        )
    )
    return out


def _expected_average(base, tuned, alpha):
    encoder = interpolate_state(
        base.encoder.state_dict(), tuned.encoder.state_dict(), alpha
    )
    head = average_head_state(
        base.head.state_dict(),
        base.tokens,
        tuned.head.state_dict(),
        tuned.tokens,
        alpha,
    )
    return encoder, head


def test_average_auto_picks_from_the_grid_and_exports_the_average(auto_run, en_base):
    model = load_pretrained(auto_run / "model")
    averaging = model.config["metadata"]["averaging"]
    cer = {float(a): v for a, v in averaging["union_dev_CER"].items()}
    assert sorted(cer) == [0.0, 0.5, 1.0]
    assert averaging["alpha"] == min(cer, key=cer.get)
    base = load_pretrained(en_base / "model")
    tuned, _, _ = load_run_model(auto_run)  # the best checkpoint: fine-tuned
    encoder, head = _expected_average(base, tuned, averaging["alpha"])
    _assert_states_equal(encoder, model.encoder.state_dict())
    _assert_states_equal(head, model.head.state_dict())
    tests = [r for r in faults.metrics(auto_run) if r["stage"] == "test"]
    assert any(r["test_set"].endswith("_averaged") for r in tests)
    assert any(not r["test_set"].endswith("_averaged") for r in tests)


def test_average_alpha_0_exports_the_base_encoder(corpora, en_base, tmp_path):
    out = tmp_path / "run"
    _run_main(_args(corpora, en_base, out, "--average_alpha=0"))
    model = load_pretrained(out / "model")
    assert model.config["metadata"]["averaging"]["alpha"] == 0.0
    base = load_pretrained(en_base / "model")
    _assert_states_equal(base.encoder.state_dict(), model.encoder.state_dict())
    assert model.encoder.state_dict().keys() == base.encoder.state_dict().keys()
    # Shared head rows are the base's.
    rows = {t: i for i, t in enumerate(base.tokens)}
    weight = model.head.state_dict()["w.weight"]
    for row, token in enumerate(model.tokens):
        if token in rows:
            assert torch.equal(
                weight[row], base.head.state_dict()["w.weight"][rows[token]]
            )


def test_xlt_average_writes_a_loadable_folder(auto_run, en_base, tmp_path):
    from xlt_plugin.cli import main

    out = tmp_path / "averaged"
    argv = ["average", "--base", str(en_base / "model"), "--finetuned", str(auto_run)]
    assert main([*argv, "--alpha", "0.5", "--out", str(out)]) == 0
    model = load_pretrained(out)
    assert model.config["metadata"]["averaged"]["alpha"] == 0.5
    base = load_pretrained(en_base / "model")
    tuned, _, _ = load_run_model(auto_run)
    encoder, head = _expected_average(base, tuned, 0.5)
    _assert_states_equal(encoder, model.encoder.state_dict())
    _assert_states_equal(head, model.head.state_dict())


# ------------------------------------------------------------------ adapters
def test_adapter_run_trains_only_adapters_and_head(corpora, en_base, tmp_path):
    out = tmp_path / "run"
    brain, hparams, _ = run_recipe(_args(corpora, en_base, out, "--adapter_dim=4"))
    base = load_pretrained(en_base / "model").encoder.state_dict()
    model = load_pretrained(out / "model")
    adapted = model.encoder.state_dict()
    adapter_keys = {k for k in adapted if ".adapter." in k}
    assert adapter_keys and set(adapted) - adapter_keys == set(base)
    _assert_states_equal(base, adapted)  # weights and BatchNorm statistics
    assert any(adapted[k].abs().sum() > 0 for k in adapter_keys if ".up." in k)
    # The exported model is the trained Brain's.
    test_set = next(iter(hparams["test_csv"].values()))
    from xlt_plugin.data.pipeline import make_datasets

    datasets = make_datasets(dict(hparams, test_csv=test_set), brain.tokenizer)
    loader = brain.make_dataloader(
        datasets["test"][next(iter(datasets["test"]))],
        sb.Stage.TEST,
        batch_size=4,
    )
    batch = next(iter(loader))
    brain.modules.eval()
    with torch.no_grad():
        trained, _ = brain.compute_forward(batch, sb.Stage.TEST)
        loaded = model.log_probs(*batch.sig)
    assert torch.allclose(trained, loaded, atol=1e-5)


def test_adapters_in_another_language_and_its_english_score(
    corpora, en_base, tmp_path, monkeypatch
):
    # Spanish from the English base with adapters: the base's encoder weights are
    # kept, and the study scores the adapted encoder's English under the base's
    # own head (study.evaluate.source_scores with encoder_only).
    from xlt_plugin.study import evaluate

    out = tmp_path / "es"
    run_recipe(
        [
            REPO / "recipes" / "CommonVoice" / "hparams" / "es_xfer.yaml",
            f"--data_folder={corpora('es', 10)}",
            f"--pretrained_path={en_base / 'model'}",
            f"--output_folder={out}",
            "--batch_size=4",
            "--number_of_epochs=1",
            "--zero_shot_eval=False",
            "--noprogressbar",
            "--adapter_dim=4",
        ]
    )
    base = load_pretrained(en_base / "model").encoder.state_dict()
    adapted = load_pretrained(out / "model").encoder.state_dict()
    _assert_states_equal(base, adapted)
    assert any(".adapter." in k for k in adapted)
    english = evaluate.source_scores(en_base, out, encoder_only=True)
    assert english["utterances"] == evaluate.source_scores(en_base)["utterances"] > 0
    # What was scored: the run's encoder, adapters included, under the base's
    # head and tokens (not the Spanish ones).
    scored = []
    monkeypatch.setattr(
        evaluate, "evaluate_manifest", lambda model, csv: scored.append(model)
    )
    evaluate.source_scores(en_base, out, encoder_only=True)
    english_model, spanish = (
        load_pretrained(en_base / "model"),
        load_pretrained(out / "model"),
    )
    assert scored[0].tokens == english_model.tokens != spanish.tokens
    _assert_states_equal(english_model.head.state_dict(), scored[0].head.state_dict())
    assert any(".adapter." in k for k in scored[0].encoder.state_dict())


# ------------------------------------------------- refused before any training
_REQUIRED = {"lr": 0.1, "number_of_epochs": 1, "blank_index": 0, "pretrained_path": "b"}


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"replay_ratio": 0.5}, "replay_data_folder is not given"),
        ({"replay_ratio": 1.0, "replay_data_folder": "x"}, "replay_ratio must be"),
        ({"average_alpha": "auto"}, "give replay_data_folder"),
        ({"average_alpha": "atuo"}, "average_alpha must be"),
        ({"average_alpha": 0.5, "adapter_dim": 4}, "do not combine"),
        ({"average_alpha": 0.5, "average_batchnorm": "x"}, "average_batchnorm"),
    ],
)
def test_continual_keys_are_checked_before_training(keys, message):
    from xlt_plugin.recipe import RecipeError, continual_settings

    with pytest.raises(RecipeError, match=message):
        continual_settings({**_REQUIRED, **keys})


def test_replay_under_ddp_is_refused(monkeypatch):
    from xlt_plugin.data.replay import ReplayBatchSampler
    from xlt_plugin.recipe import RecipeError, continual_settings

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    keys = {**_REQUIRED, "replay_ratio": 0.5, "replay_data_folder": "x"}
    with pytest.raises(RecipeError, match="replay under DDP is not supported yet"):
        continual_settings(keys)
    with pytest.raises(RuntimeError, match="replay under DDP is not supported yet"):
        ReplayBatchSampler(range(4), range(4, 8), batch_size=2, ratio=0.5)
    continual_settings({**keys, "replay_ratio": 0.0})  # a source dev set is fine
