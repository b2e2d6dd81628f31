"""Bad input: every case stops with a clear error or becomes a counted, reported skip.

The big test damages a synthetic Spanish corpus row by row (missing, empty, corrupt,
cut-off, silent, too-short clips; empty, foreign and malformed sentences; a
duplicate; stereo/48 kHz/float and 8 kHz/FLAC clips that must be kept), preps it,
accounts for every row, and trains on exactly the good ones. The rest are small:
tsv column sets, pretrained models that do not fit, typo'd hparams, non-finite
losses and out-of-memory batches.
"""

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from conftest import REPO, run_recipe, tiny_ctc_brain
from speechbrain.nnet.linear import Linear

from xlt_plugin.brain import CTCTransferBrain
from xlt_plugin.data.commonvoice import prepare_common_voice, read_tsv
from xlt_plugin.data.pipeline import load_audio, make_datasets
from xlt_plugin.lobes.quartznet import QuartzNet
from xlt_plugin.tokens import build_char_encoder

ES_SCRATCH = REPO / "recipes" / "CommonVoice" / "hparams" / "es_scratch.yaml"
ES_XFER = REPO / "recipes" / "CommonVoice" / "hparams" / "es_xfer.yaml"


def _read(path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return reader.fieldnames, list(reader)


def _write(path, columns, rows, extra_lines=()):
    lines = ["\t".join(columns)]
    lines += ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")


def _tone(seconds, rate, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def damaged(corpora, tmp_path_factory):
    """A copy of corpora('es', 16) with bad rows; returns (folder, expected)."""
    folder = tmp_path_factory.mktemp("damaged") / "es"
    shutil.copytree(corpora("es", 16), folder)
    clips = folder / "clips"
    columns, train = _read(folder / "train.tsv")
    assert len(train) == 12
    rng = np.random.default_rng(0)
    expected = {}  # clip path -> reason (None: kept)

    def bad(i, reason):
        expected[train[i]["path"]] = reason
        return clips / train[i]["path"]

    bad(0, "missing_clip").unlink()
    bad(1, "empty_clip").write_bytes(b"")
    bad(2, "undecodable_clip").write_bytes(rng.bytes(20000))
    data = (clips / train[3]["path"]).read_bytes()
    bad(3, "truncated_clip").write_bytes(data[: len(data) // 3])  # cut download
    sf.write(bad(4, "silent_clip"), np.zeros(32000, np.float32), 16000, format="MP3")
    bad(5, "empty_sentence")
    train[5]["sentence"] = "  ¡ ! "
    bad(6, "foreign_characters")
    train[6]["sentence"] += " Привет"
    # A loud 0.1 s clip for a whole sentence: 5 encoder frames at stride 2.
    train[7]["path"] = "short.wav"
    sf.write(clips / "short.wav", _tone(0.1, 16000), 16000)
    bad(7, "too_short_for_transcript")
    bad(8, "malformed_row")
    train[8]["sentence"] = train[8]["sentence"].replace(" ", "\t", 1)  # stray tab
    # Kept, whatever their format: stereo 48 kHz float WAV and 8 kHz 24-bit FLAC.
    durations = {}
    for i, (rate, channels, ext, subtype) in {
        9: (48000, 2, "wav", "FLOAT"),
        10: (8000, 1, "flac", "PCM_24"),
    }.items():
        y, sr = sf.read(clips / train[i]["path"], dtype="float32")
        resampled = np.interp(
            np.arange(int(len(y) * rate / sr)) * sr / rate, np.arange(len(y)), y
        )
        name = train[i]["path"].replace(".mp3", f".{ext}")
        audio = np.stack([resampled] * channels, 1) if channels > 1 else resampled
        sf.write(clips / name, audio, rate, subtype=subtype)
        durations[name] = len(y) / sr
        train[i]["path"] = name
    for row in train[9:]:
        expected[row["path"]] = None
    duplicate = "\t".join(train[11].get(c, "") for c in columns)
    _write(folder / "train.tsv", columns, train, extra_lines=[duplicate])

    _, dev = _read(folder / "dev.tsv")
    (clips / dev[0]["path"]).unlink()
    dev_expected = {dev[0]["path"]: "missing_clip", dev[1]["path"]: None}
    return folder, expected, dev_expected, durations, train[11]["path"]


def test_every_row_is_kept_or_skipped_for_its_reason_and_good_rows_train(
    damaged, tmp_path, monkeypatch
):
    folder, expected, dev_expected, durations, duplicated = damaged
    out = tmp_path / "out"
    seen = []
    original = CTCTransferBrain.fit_batch

    def recording(self, batch):
        seen.extend(batch.id)
        return original(self, batch)

    monkeypatch.setattr(CTCTransferBrain, "fit_batch", recording)
    brain, _, results = run_recipe(
        [
            ES_SCRATCH,
            f"--data_folder={folder}",
            f"--output_folder={out}",
            "--encoder_preset=quartznet_tiny",
            "--batch_size=2",
            "--number_of_epochs=1",
            "--noprogressbar",
        ]
    )
    save = out / "save"
    report = json.loads((save / "prep_report.json").read_text())
    for split, rep in report["splits"].items():
        assert rep["rows"] == rep["kept"] + sum(rep["skipped"].values()), split
    train, dev = report["splits"]["train"], report["splits"]["dev"]
    assert train["rows"] == 13 and train["kept"] == 3
    assert dev["rows"] == 2 and dev["kept"] == 1

    _, skipped = _read(save / "prep_skipped.tsv")
    reasons = {(r["split"], r["path"]): r["reason"] for r in skipped}
    for path, reason in expected.items():
        if reason is not None:
            assert reasons.pop(("train", path)) == reason, path
    assert reasons.pop(("train", duplicated)) == "duplicate_row"
    for path, reason in dev_expected.items():
        if reason is not None:
            assert reasons.pop(("dev", path)) == reason, path
    assert reasons == {}, f"unexpected skips: {reasons}"
    assert "| train | 13 | 3 |" in (save / "prep_report.md").read_text()

    kept = {r["ID"]: r for r in csv.DictReader(open(save / "train.csv"))}
    good = {p.rsplit(".", 1)[0] for p, reason in expected.items() if reason is None}
    assert set(kept) == good
    for name, seconds in durations.items():  # decoded length, any rate/format
        assert float(kept[name.rsplit(".", 1)[0]]["duration"]) == pytest.approx(
            seconds, abs=0.002
        )
    assert sorted(seen) == sorted(good)  # every good row trained, once
    assert np.isfinite(results["test"]["CER"])
    assert brain.nonfinite_skipped == 0
    assert "kept 3 of 13 rows" in (out / "log.txt").read_text()


# ----------------------------------------------------------------- tsv columns
def _small_corpus(corpora, tmp_path, columns, rename=None):
    """train/dev/test tsvs with ``columns`` (values from the synthetic corpus)."""
    src = corpora("es", 16)
    folder = tmp_path / "cv"
    shutil.copytree(src / "clips", folder / "clips")
    for split in ("train", "dev", "test"):
        _, rows = _read(src / f"{split}.tsv")
        for row in rows:
            row["accent"] = row.get("accents", "")
        header = [rename.get(c, c) if rename else c for c in columns]
        for row in rows:
            for old, new in (rename or {}).items():
                row[new] = row[old]
        _write(folder / f"{split}.tsv", header, rows)
    return folder


def test_an_older_release_column_set_works(corpora, tmp_path):
    # Common Voice 5.1: no sentence_id, sentence_domain, variant; "accent".
    old = "client_id path sentence up_votes down_votes age gender accent locale"
    folder = _small_corpus(corpora, tmp_path, old.split() + ["segment"])
    report = prepare_common_voice(folder, tmp_path / "save", "es")
    assert report["splits"]["train"]["kept"] == 12
    assert report["splits"]["train"]["columns"][7] == "accent"
    rows = list(csv.DictReader(open(tmp_path / "save" / "train.csv")))
    assert {r["accents"] for r in rows} == {"España"}


@pytest.mark.parametrize(
    "rename, hint",
    [({"sentence": "text"}, None), ({"sentence": "Sentence"}, "rename column")],
)
def test_a_missing_or_renamed_column_names_file_and_fix(
    corpora, tmp_path, rename, hint
):
    columns = ["client_id", "path", "sentence", "accents", "locale"]
    folder = _small_corpus(corpora, tmp_path, columns, rename=rename)
    with pytest.raises(ValueError) as err:
        prepare_common_voice(folder, tmp_path / "save", "es")
    message = str(err.value)
    assert "train.tsv" in message and "['sentence']" in message
    assert repr(rename["sentence"]) in message  # the columns it found
    if hint:
        assert f"{hint} 'Sentence' to 'sentence'" in message
    assert not (tmp_path / "save" / "train.csv").exists()


def test_a_missing_split_or_comma_separated_tsv(corpora, tmp_path):
    columns = ["client_id", "path", "sentence"]
    folder = _small_corpus(corpora, tmp_path, columns)
    (folder / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="dev.tsv is missing"):
        prepare_common_voice(folder, tmp_path / "save", "es")
    assert not (tmp_path / "save" / "train.csv").exists()  # nothing half-done
    (folder / "dev.tsv").write_text("client_id,path,sentence\nc,a.mp3,hola\n")
    with pytest.raises(ValueError, match="comma-separated"):
        read_tsv(folder / "dev.tsv")


# ------------------------------------------------------------------ pipeline
def test_rows_too_short_at_the_models_stride_are_dropped_and_logged(tmp_path, caplog):
    clip = tmp_path / "a.wav"
    sf.write(clip, _tone(1.0, 16000), 16000)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "ID,duration,wav,spk_id,wrd\n"
        f"long,1.0,{clip},s,{'hola' * 2}\n"  # 8 labels: 12 frames at stride 8
        f"short,1.0,{clip},s,{'hola ' * 6}\n"  # 30 labels: 50 frames at stride 2
    )
    tokenizer = build_char_encoder(["hola "])
    hparams = {"train_csv": manifest, "valid_csv": manifest, "test_csv": manifest}
    for stride, kept in ((2, {"long", "short"}), (8, {"long"})):
        hparams["encoder"] = QuartzNet(
            input_size=40, preset="quartznet_tiny", prologue_stride=stride
        )
        with caplog.at_level("WARNING"):
            datasets = make_datasets(dict(hparams), tokenizer)
        assert {item["id"] for item in datasets["train"]} == kept
        assert len(datasets["test"]["m"]) == 2  # scored sets keep every row
    assert "1 training rows" in caplog.text and "time_stride 8" in caplog.text


def test_a_clip_that_breaks_after_the_prep_names_the_file(tmp_path):
    clip = tmp_path / "gone.mp3"
    clip.write_bytes(b"not audio at all" * 100)
    with pytest.raises(RuntimeError, match="Cannot read clip .*gone.mp3"):
        load_audio(str(clip))


# ---------------------------------------------------------------- pretrained
def _tiny_pretrained(folder, chars="ab "):
    from xlt_plugin.pretrained import save_pretrained

    encoder = QuartzNet(input_size=40, preset="quartznet_tiny")
    tokens = build_char_encoder([chars])
    head = Linear(input_size=encoder.output_size, n_neurons=len(tokens))
    return save_pretrained(
        folder, encoder=encoder, head=head, tokenizer=tokens, features={"n_mels": 40}
    )


def test_a_head_that_does_not_match_its_token_file(tmp_path):
    from xlt_plugin.pretrained import load_pretrained, transfer_weights

    model = _tiny_pretrained(tmp_path / "model")
    build_char_encoder(["abc "]).save(str(model / "tokenizer.ckpt"))  # 5 tokens
    encoder = QuartzNet(input_size=40, preset="quartznet_tiny")
    head = Linear(input_size=encoder.output_size, n_neurons=3)
    for load in (
        lambda: load_pretrained(model),
        lambda: transfer_weights(
            model, encoder=encoder, head=head, target_tokens=["<blank>", "a", "b"]
        ),
    ):
        with pytest.raises(ValueError) as err:
            load()
        assert "tokenizer.ckpt lists 5 tokens" in str(err.value)
        assert "4 rows" in str(err.value)


def test_pretrained_paths_that_are_missing_or_not_a_nemo_tar(tmp_path):
    from xlt_plugin.pretrained import transfer_weights

    not_tar = tmp_path / "base.nemo"
    not_tar.write_text("<html>404</html>")
    encoder = QuartzNet(input_size=40, preset="quartznet_tiny")
    head = Linear(input_size=encoder.output_size, n_neurons=3)
    for source, error, words in (
        (tmp_path / "nope", FileNotFoundError, ["does not exist", "EnglishBase"]),
        (not_tar, ValueError, [str(not_tar), "not a tar"]),
    ):
        with pytest.raises(error) as err:
            transfer_weights(source, encoder=encoder, head=head, target_tokens=["a"])
        assert all(w in str(err.value) for w in words), err.value


def test_a_base_whose_encoder_misses_keys_is_refused_by_the_pretrainer(tmp_path):
    """The xfer YAMLs' Pretrainer loads the encoder strictly (LoadSubmodule).

    SpeechBrain's default loader would only warn and train from the random
    weights of the missing keys.
    """
    from hyperpyyaml import load_hyperpyyaml

    from xlt_plugin.pretrained import ENCODER_FILE, run_pretrainer

    model = _tiny_pretrained(tmp_path / "model")
    weights = model / ENCODER_FILE
    state = torch.load(weights, weights_only=True)

    def pretrainer_of(language):
        yaml = REPO / "recipes" / "CommonVoice" / "hparams" / f"{language}_xfer.yaml"
        overrides = {
            "data_folder": str(tmp_path),
            "pretrained_path": str(model),
            "output_folder": str(tmp_path / language),
        }
        hparams = load_hyperpyyaml(yaml.read_text(encoding="utf-8"), overrides)
        return hparams["pretrainer"], hparams["encoder"]

    pretrainer, encoder = pretrainer_of("es")  # the whole checkpoint loads
    run_pretrainer(pretrainer, {})
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in state.items())

    dropped = sorted(state)[0]
    del state[dropped]
    torch.save(state, weights)
    for language in ("de", "es", "ru"):
        pretrainer, _ = pretrainer_of(language)
        with pytest.raises(RuntimeError) as err:
            run_pretrainer(pretrainer, {})
        message = str(err.value)
        assert str(weights) in message and "do not fit" in message, message
        assert "Missing key(s)" in message and dropped in message, message


# ------------------------------------------------------------------- hparams
def test_a_typod_hparams_key_on_the_command_line_is_refused(tmp_path):
    from xlt_plugin.recipe import RecipeError, load_recipe

    argv = [ES_SCRATCH, f"--data_folder={tmp_path}", f"--output_folder={tmp_path}"]
    with pytest.raises(RecipeError) as err:
        load_recipe([str(a) for a in [*argv, "--batch_sise=4"]])
    assert "batch_sise" in str(err.value)
    assert not (tmp_path / "hyperparams.yaml").exists()  # stopped before the run


# ----------------------------------------------- non-finite loss, out of memory
TEXTS = ["hola", "sí", "no", "casa", "mesa", "pan", "sol", "mar"]


def _tiny_brain(tmp_path, **run_opts):
    """A QuartzNet-tiny CTC Brain on 8 noise 'utterances' (fast, no files)."""
    return tiny_ctc_brain(
        TEXTS,
        lr=1e-3,
        first_samples=8000,
        run_opts=run_opts,
        output_folder=str(tmp_path),
        batch_size=2,
        max_duration=12.0,
        train_logger=sb.utils.train_logger.FileTrainLogger(tmp_path / "log.txt"),
    )


def _nan_features(brain, bad_calls):
    fbank, calls = brain.hparams.compute_features, [0]

    def features(wavs):
        calls[0] += 1
        feats = fbank(wavs)
        return feats * float("nan") if calls[0] in bad_calls else feats

    brain.hparams.compute_features = features


def test_a_nan_batch_is_skipped_without_touching_weights_or_batchnorm(tmp_path):
    brain, dataset = _tiny_brain(tmp_path)
    _nan_features(brain, bad_calls={2})  # the second training batch
    states, fit_batch = [], brain.fit_batch

    def state():
        return {k: v.clone() for k, v in brain.modules.state_dict().items()}

    def recording(batch):
        before = state()
        loss = fit_batch(batch)
        states.append((loss, before, state()))
        return loss

    brain.fit_batch = recording
    loader = {"batch_size": 2}
    brain.fit(
        brain.hparams.epoch_counter,
        dataset,
        dataset,
        train_loader_kwargs=loader,
        valid_loader_kwargs=loader,
    )
    assert [bool(torch.isfinite(s[0])) for s in states] == [True, False, True, True]
    for i, (_, before, after) in enumerate(states):
        same = all(torch.equal(before[k], after[k]) for k in before)
        assert same == (i == 1), i  # only the NaN batch left everything as it was
    assert brain.nonfinite_skipped == 1
    train = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert train["nonfinite_skipped"] == 1 and np.isfinite(train["loss"])
    assert "nonfinite_skipped: 1" in (tmp_path / "log.txt").read_text()


def test_many_nan_batches_in_a_row_stop_with_a_message(tmp_path):
    brain, dataset = _tiny_brain(tmp_path, nonfinite_patience=2)
    _nan_features(brain, bad_calls=set(range(1, 100)))
    with pytest.raises(RuntimeError) as err:
        brain.fit(
            brain.hparams.epoch_counter, dataset, train_loader_kwargs={"batch_size": 1}
        )
    assert "3 non-finite losses in a row" in str(err.value)
    assert "--nonfinite_patience" in str(err.value) and "lr" in str(err.value)
    assert brain.nonfinite_skipped == 3


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate"),
    ],
)
def test_out_of_memory_names_the_batch_and_the_settings_to_lower(
    tmp_path, monkeypatch, error
):
    brain, dataset = _tiny_brain(tmp_path)

    def no_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(brain.modules.encoder, "forward", no_memory)
    with pytest.raises(torch.OutOfMemoryError) as err:
        brain.fit(
            brain.hparams.epoch_counter, dataset, train_loader_kwargs={"batch_size": 2}
        )
    message = str(err.value)
    assert "training batch of 2 clips (u0, u1)" in message
    assert "batch_size=2" in message and "max_duration=12.0" in message
    assert "--batch_size" in message and "resumes" in message
    assert err.value.__cause__ is error
    with pytest.raises(torch.OutOfMemoryError, match="test batch of 2 clips"):
        brain.evaluate(dataset, test_loader_kwargs={"batch_size": 2})


def test_other_runtime_errors_pass_through_unchanged(tmp_path, monkeypatch):
    brain, dataset = _tiny_brain(tmp_path)
    error = RuntimeError("shapes cannot be multiplied")

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(brain.modules.encoder, "forward", broken)
    with pytest.raises(RuntimeError) as err:
        brain.fit(
            brain.hparams.epoch_counter, dataset, train_loader_kwargs={"batch_size": 2}
        )
    assert err.value is error
