"""Your own data: a CSV/TSV/JSONL manifest becomes a Common Voice folder."""

import csv
import json

import pytest
from conftest import REPO
from test_recipes import DEBUG, _assert_ok, _run

from xlt_plugin.data.commonvoice import prepare_common_voice
from xlt_plugin.data.manifest import manifest_to_common_voice, read_manifest


def _rows(corpus):
    with open(corpus / "validated.tsv", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_csv_manifest_with_relative_paths_and_speakers(corpora, tmp_path):
    corpus = corpora("en", 12, seed=6, domain="medical")
    manifest = corpus / "my_manifest.csv"  # beside clips/: relative paths
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["File", "Transcript", "Speaker"])
        for row in _rows(corpus):
            writer.writerow([f"clips/{row['path']}", row["sentence"], row["client_id"]])
    counts = manifest_to_common_voice(
        manifest, tmp_path / "cv", domain="legal", dev=0.2, test=0.2
    )
    assert sum(counts.values()) == 12 and all(counts.values())
    speakers = {}
    for split in ("train", "dev", "test"):
        with open(tmp_path / "cv" / f"{split}.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        speakers[split] = {r["client_id"] for r in rows}
        assert all(r["sentence_domain"] == "legal" for r in rows)
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    report = prepare_common_voice(tmp_path / "cv", tmp_path / "prep", "en")
    assert sum(s["kept"] for s in report["splits"].values()) == 12


def test_jsonl_manifest_with_split_column_trains_the_domain_recipe(
    en_base, corpora, tmp_path
):
    corpus = corpora("en", 12, seed=6, domain="medical")
    rows = _rows(corpus)
    manifest = tmp_path / "nemo_style.jsonl"
    with open(manifest, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            split = "train" if i < 8 else "validation" if i < 10 else "test"
            f.write(
                json.dumps(
                    {
                        "audio_filepath": str(corpus / "clips" / row["path"]),
                        "text": row["sentence"],
                        "split": split,
                    }
                )
                + "\n"
            )
    counts = manifest_to_common_voice(manifest, tmp_path / "cv", domain="medical")
    assert counts == {"train": 8, "dev": 2, "test": 2}
    folder = REPO / "recipes" / "Domain"
    proc = _run(
        [
            folder / "train.py",
            folder / "hparams" / "xfer.yaml",
            f"--data_folder={tmp_path / 'cv'}",
            f"--output_folder={tmp_path / 'out'}",
            f"--pretrained_path={en_base / 'model'}",
            "--batch_size=4",
            *DEBUG,
        ],
        REPO,
    )
    _assert_ok(proc)


def test_bad_manifests_name_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("audio,words\na.wav,hello\n")
    with pytest.raises(ValueError, match="no 'text' column"):
        read_manifest(bad)
    split = tmp_path / "split.csv"
    split.write_text("path,text,split\na.wav,hello,holdout\n")
    with pytest.raises(ValueError, match="row 2: split 'holdout'"):
        read_manifest(split)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "missing.csv")
    one = tmp_path / "one.csv"
    one.write_text("path,text\na.wav,hello\n")
    with pytest.raises(ValueError, match="would be empty"):
        manifest_to_common_voice(one, tmp_path / "cv")
