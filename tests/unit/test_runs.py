"""The run-folder contract (xlt_plugin.runs): metrics lines written, read, selected."""

import json

import pytest
from speechbrain.utils.checkpoints import Checkpointer

from xlt_plugin import runs


def _write(run, *records):
    for record in records:
        runs.append_metrics(runs.metrics_path(run), record)


def _test(test_set, cer, zero_shot=False, **extra):
    return {"epoch": 2, "stage": "test", "CER": cer, "WER": 2 * cer,
            "test_set": test_set, "zero_shot": zero_shot, **extra}  # fmt: skip


def test_lines_are_written_as_the_training_loop_always_wrote_them(tmp_path):
    run = tmp_path / "run"  # created on the first line
    record = {"epoch": 1, "stage": "train", "loss": 1.5, "CER": None}
    _write(run, record, {"epoch": 1, "stage": "valid", "CER": 50.0})
    text = (run / "metrics.jsonl").read_text(encoding="utf-8")
    assert text.splitlines()[0] == json.dumps(record)
    assert text.endswith("\n") and len(text.splitlines()) == 2
    assert runs.read_metrics(run)[1] == {"epoch": 1, "stage": "valid", "CER": 50.0}
    assert runs.read_metrics(tmp_path / "nothing-here") == []


def test_a_broken_line_names_its_number(tmp_path):
    _write(tmp_path, {"epoch": 1, "stage": "train"})
    with open(runs.metrics_path(tmp_path), "a", encoding="utf-8") as f:
        f.write("\n{not json\n")
    with pytest.raises(runs.MetricsError, match=r"metrics.jsonl:3 is not a JSON"):
        runs.read_metrics(tmp_path)


def test_trim_drops_train_and_valid_lines_past_the_checkpoint_only(tmp_path):
    _write(
        tmp_path,
        {"epoch": 1, "stage": "train"},
        {"epoch": 1, "stage": "valid", "CER": 60.0},
        _test("test", 70.0, zero_shot=True),
        {"epoch": 2, "stage": "train"},
        {"epoch": 2, "stage": "valid", "CER": 40.0},
    )
    runs.trim_metrics(runs.metrics_path(tmp_path), 1)
    kept = runs.read_metrics(tmp_path)
    assert [(r["stage"], r["epoch"]) for r in kept] == [
        ("train", 1), ("valid", 1), ("test", 2)
    ]  # fmt: skip
    runs.trim_metrics(tmp_path / "missing.jsonl", 0)  # nothing to trim: no error


def test_selectors(tmp_path):
    records = [
        {"epoch": 1, "stage": "train", "seconds": 3.0},
        {"epoch": 1, "stage": "valid", "CER": 80.0},
        _test("us", 90.0, zero_shot=True),
        {"epoch": 2, "stage": "train", "seconds": 3.0},
        {"epoch": 2, "stage": "valid", "CER": 50.0},
        {"epoch": 2, "stage": "valid", "CER": 45.0},  # a resumed epoch: last wins
        _test("us", 30.0),
        _test("scotland", 40.0),
        _test("us", 25.0, decoder="beam+lm", beam=16),
        _test("us", 28.0),  # scored again: the last line counts
    ]
    assert [(r["epoch"], r["CER"]) for r in runs.valid_curve(records)] == [
        (1, 80.0), (2, 45.0)
    ]  # fmt: skip
    assert runs.trained_epochs(records) == 2 and runs.trained_epochs([]) == 0
    assert len(runs.stage_lines(records, "train")) == 2
    final = runs.final_tests(records)
    assert list(final) == ["us", "scotland"]
    assert final["us"]["CER"] == 28.0 and final["scotland"]["CER"] == 40.0
    assert runs.final_tests(records, "beam+lm")["us"]["beam"] == 16
    assert {k: r["CER"] for k, r in runs.zero_shot_tests(records).items()} == {
        "us": 90.0
    }
    keys = [
        (r["test_set"], r["zero_shot"], r["decoder"])
        for r in runs.scored_tests(records)
    ]
    assert keys == [
        ("us", True, "greedy"), ("us", False, "greedy"),
        ("scotland", False, "greedy"), ("us", False, "beam+lm"),
    ]  # fmt: skip
    # A test line without test_set or decoder is the greedy "test" set.
    assert list(runs.final_tests([{"stage": "test", "CER": 1.0}])) == ["test"]


def test_finished_needs_the_model_and_a_final_test(tmp_path):
    _write(tmp_path, _test("test", 80.0, zero_shot=True))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert runs.has_zero_shot(tmp_path)
    assert not runs.is_finished(tmp_path)  # only the zero-shot line so far
    _write(tmp_path, _test("test", 30.0, decoder="beam"))
    assert runs.is_finished(tmp_path)
    (tmp_path / "model" / "config.json").unlink()
    assert not runs.is_finished(tmp_path)


def test_best_checkpoint_is_the_lowest_cer(tmp_path):
    saver = Checkpointer(tmp_path / "save")
    for name, cer in (("a", 30.0), ("b", 20.0), ("c", 25.0)):
        saver.save_checkpoint(meta={"CER": cer, "epoch": len(name)}, name=name)
    best = runs.find_best_checkpoint(tmp_path)
    assert best.path.name == "CKPT+b" and best.meta["CER"] == 20.0
    # One checkpoint folder given: that one, whatever its CER.
    assert runs.find_best_checkpoint(tmp_path / "save" / "CKPT+a").meta["CER"] == 30.0
    assert runs.run_folder_of(tmp_path / "save" / "CKPT+a") == tmp_path
    with pytest.raises(runs.RunFolderError, match="'WER' in its meta"):
        runs.find_best_checkpoint(tmp_path, min_key="WER")


def test_no_checkpoint_and_no_run_folder_say_so(tmp_path):
    with pytest.raises(runs.RunFolderError, match="not a run folder"):
        runs.find_best_checkpoint(tmp_path / "nope")
    (tmp_path / "save").mkdir()
    with pytest.raises(runs.NoCheckpointError, match="holds no checkpoint"):
        runs.find_best_checkpoint(tmp_path)


def test_remap_report(tmp_path):
    assert runs.read_remap_report(tmp_path) is None
    (tmp_path / runs.REMAP_REPORT).write_text('{"copied": 3}')
    assert runs.read_remap_report(tmp_path) == {"copied": 3}
