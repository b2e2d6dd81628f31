"""Tests of the ``xlt`` command line (``xlt synth``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlt_plugin.cli import build_parser, main


def run_main(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synth_args(out, lang="es", utterances="5"):
    return ["synth", "--lang", lang, "--out", str(out), "--utterances", utterances]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--lang", "xx"], ["unknown locale 'xx'", "de", "es", "ru", "zh-HK"]),
        (["--utterances", "2"], ["at least 3"]),
        (["--lang", "en", "--domain", "legal"], ["unknown domain", "atc, medical"]),
        (["--lang", "en", "--accents", "us,mars"], ["mars", "scotland"]),
        (["--lang", "de", "--accents", "us"], ["no accent table"]),
        (["--text", "no-such-file.txt"], ["no-such-file.txt", "does not exist"]),
        (["--voice", "klingon"], ["no voice 'klingon'"]),
        (["--jobs", "0"], ["--jobs"]),
    ],
)
def test_bad_arguments_fail_with_one_line(capsys, tmp_path, extra, expected):
    out = tmp_path / "corpus"
    argv = synth_args(out) + extra  # later options override earlier ones
    code, stdout, stderr = run_main(capsys, *argv)
    assert code == 1
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt synth: error: ")
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_empty_text_file_is_an_error(capsys, tmp_path):
    text = tmp_path / "empty.txt"
    text.write_text("\n  \n", encoding="utf-8")
    code, _, stderr = run_main(capsys, *synth_args(tmp_path / "c"), "--text", str(text))
    assert code == 1 and "holds no sentence" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


def test_unwritable_output_path(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "sub" / "corpus"
    code, _, stderr = run_main(capsys, *synth_args(out))
    assert code == 1
    assert "cannot create output directory" in stderr and str(out) in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == "not a directory"


def test_non_empty_output_needs_overwrite(capsys, tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "train.tsv").write_text("old")
    code, _, stderr = run_main(capsys, *synth_args(out))
    assert code == 1 and "--overwrite" in stderr
    assert (out / "train.tsv").read_text() == "old"


def test_usage_errors_exit_2(capsys, tmp_path):
    code, _, stderr = run_main(capsys, "synth", "--lang", "es", "--out", "x")
    assert code == 2 and "--utterances" in stderr
    code, _, stderr = run_main(capsys, *synth_args(tmp_path / "c", utterances="many"))
    assert code == 2 and "invalid int value" in stderr
    code, _, _ = run_main(capsys, "no-such-command")
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_help_lists_synth(capsys):
    code, stdout, _ = run_main(capsys, "--help")
    assert code == 0 and "synth" in stdout
    args = build_parser().parse_args(
        synth_args("out") + ["--accents", "all", "--jobs", "2", "--overwrite"]
    )
    assert (args.accents, args.jobs, args.overwrite, args.seed) == ("all", 2, True, 0)


def test_synth_through_main_writes_a_corpus(capsys, tmp_path):
    out = tmp_path / "en"
    argv = synth_args(out, lang="en", utterances="4")
    code, stdout, stderr = run_main(
        capsys, *argv, "--accents", "scotland", "--domain", "atc", "--quiet"
    )
    assert code == 0, stderr
    assert "wrote 4 clips" in stdout and "train 2 clips" in stdout
    assert stderr == ""  # --quiet: no progress bar
    rows = (out / "validated.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 5
    assert all("\tatc\t" in row and "Scottish English" in row for row in rows[1:])
    assert len(list((out / "clips").glob("*.mp3"))) == 4


def console_script():
    script = Path(sys.executable).parent / "xlt"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "xlt_plugin.cli"]


def test_console_script_runs_synth_and_shows_progress(tmp_path):
    out = tmp_path / "ru"
    command = console_script() + synth_args(out, lang="ru", utterances="3")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        command + ["--jobs", "2", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 3 clips" in done.stdout
    assert "xlt synth" in done.stderr and "3/3" in done.stderr  # tqdm bar
    header = (out / "train.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t")[:4] == ["client_id", "path", "sentence_id", "sentence"]
    failed = subprocess.run(
        console_script() + synth_args(out, lang="ru", utterances="3"),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"xlt synth: error: output directory {out} is not empty; "
        "pass --overwrite to replace it"
    ]


def test_report_out_on_a_study_folder_is_refused(capsys, tmp_path):
    """A study folder's report goes into the folder; an --out that would be
    ignored is an error that says where the report goes."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}")
    out = tmp_path / "x"
    code, stdout, stderr = run_main(capsys, "report", str(study), "--out", str(out))
    assert code == 1 and stdout == ""
    assert "is a study folder: its report is written into it" in stderr
    assert not out.exists() and not (study / "REPORT.md").exists()


def test_pack_and_unpack_refuse_what_they_cannot_read(capsys, tmp_path):
    """Not a study folder, not a pack: one line naming the folder and what to give."""
    code, stdout, stderr = run_main(capsys, "pack", str(tmp_path), "--out", "p")
    assert code == 1 and stdout == ""
    assert f"{tmp_path} is not a study folder (no study.json)" in stderr
    code, _, stderr = run_main(capsys, "unpack", str(tmp_path), "--out", "s")
    assert code == 1 and "is not a pack (no PACK.json)" in stderr
    assert "xlt pack STUDY --out DIR" in stderr
    assert list(tmp_path.iterdir()) == []


def test_pack_then_unpack_through_main(capsys, tmp_path):
    study = tmp_path / "study"
    (study / "runs" / "a" / "model").mkdir(parents=True)
    (study / "runs" / "b").mkdir()  # unfinished: left out, and said so
    (study / "data" / "es" / "clips").mkdir(parents=True)
    (study / "data" / "es" / "clips" / "1.mp3").write_bytes(b"1")
    corpora = {"es": {"folder": str(study / "data" / "es")}}
    (study / "study.json").write_text(
        json.dumps({"runs": [{"name": "a"}], "corpora": corpora})
    )
    (study / "runs" / "a" / "model" / "config.json").write_text("{}")
    (study / "runs" / "a" / "metrics.jsonl").write_text(
        '{"stage": "test", "zero_shot": false}\n'
    )
    code, stdout, _ = run_main(capsys, "pack", str(study), "--out", str(tmp_path / "p"))
    assert (
        code == 0 and "packed 1 finished runs" in stdout and "unfinished: b" in stdout
    )
    code, stdout, _ = run_main(
        capsys, "unpack", str(tmp_path / "p"), "--out", str(tmp_path / "s2")
    )
    assert code == 0 and "unpacked 1 runs" in stdout
    assert (tmp_path / "s2" / "runs" / "a" / "metrics.jsonl").exists()
    # The corpus made again, other bytes: packing again warns.
    (study / "data" / "es" / "clips" / "1.mp3").write_bytes(b"2")
    code, stdout, _ = run_main(capsys, "pack", str(study), "--out", str(tmp_path / "p"))
    assert code == 0 and "warning: corpus es is not the bytes" in stdout
