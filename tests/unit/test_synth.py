"""Tests of the embedded corpus: espeak-ng speech in Common Voice layout."""

import csv
import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlt_plugin.data.commonvoice import CV_AGES, CV_COLUMNS, CV_GENDERS, CV_SPLITS
from xlt_plugin.synth import corpus as synth_module
from xlt_plugin.synth.corpus import (
    ENGLISH_ACCENTS,
    PolyphaseResampler,
    SynthError,
    synthesize_corpus,
)
from xlt_plugin.synth.espeak import ESPEAK_SAMPLE_RATE, Espeak, EspeakError
from xlt_plugin.synth.texts import (
    LANGUAGES,
    SentenceGenerator,
    domain_sentence,
    supported_locales,
)
from xlt_plugin.tokens import alphabet, language_letters

SPLITS = CV_SPLITS
ENGLISH_FUNCTION_WORDS = {"the", "and", "of", "you", "with", "this", "that", "is"}


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    return header, [dict(zip(header, row, strict=True)) for row in body]


def words_of(text):
    return re.findall(r"[^\W\d_]+(?:['·][^\W\d_]+)*", text)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One small corpus per language (and per English variant), made once."""
    root = tmp_path_factory.mktemp("synth")
    made = {}

    def make(name, locale, utterances=12, **kwargs):
        if name not in made:
            out = root / name
            info = synthesize_corpus(
                out, locale, utterances, seed=1, jobs=2, progress=False, **kwargs
            )
            made[name] = (out, info)
        return made[name]

    return make


@pytest.mark.parametrize("locale", ["es", "ru", "zh-HK"])
def test_layout_matches_common_voice(corpus, locale):
    out, info = corpus(locale, locale)
    splits = {}
    for split in SPLITS:
        header, rows = read_tsv(out / f"{split}.tsv")
        assert tuple(header) == CV_COLUMNS
        assert rows, split
        splits[split] = rows
    assert [len(splits[s]) for s in SPLITS] == [10, 1, 1]
    assert info["utterances"] == {"train": 10, "dev": 1, "test": 1}
    header, validated = read_tsv(out / "validated.tsv")
    assert tuple(header) == CV_COLUMNS
    union = [row for s in SPLITS for row in splits[s]]
    assert sorted(map(str, validated)) == sorted(map(str, union))
    clips = sorted(p.name for p in (out / "clips").iterdir())
    assert clips == sorted(row["path"] for row in union)
    for row in union:
        assert re.fullmatch(rf"common_voice_{locale}_\d+\.mp3", row["path"])
        assert re.fullmatch(r"[0-9a-f]{128}", row["client_id"])
        digest = hashlib.sha256(row["sentence"].encode("utf-8")).hexdigest()
        assert row["sentence_id"] == digest
        assert row["locale"] == locale
        assert not any(ch.isdigit() for ch in row["sentence"])
        assert row["gender"] in {"male_masculine", "female_feminine"}
        assert row["age"] in {"twenties", "thirties", "fourties", "fifties", "sixties"}
        assert row["sentence_domain"] == row["variant"] == row["segment"] == ""
        assert int(row["up_votes"]) > int(row["down_votes"])
    # Speakers are disjoint across splits, as in Common Voice.
    speakers = [{row["client_id"] for row in splits[s]} for s in SPLITS]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2])
    assert not speakers[1] & speakers[2]
    assert info["speakers"] == {
        s: len(v) for s, v in zip(SPLITS, speakers, strict=True)
    }


@pytest.mark.parametrize("locale", ["es", "ru", "zh-HK"])
def test_clips_decode_as_16k_mono_speech(corpus, locale):
    from speechbrain.dataio.dataio import read_audio

    out, info = corpus(locale, locale)
    _, rows = read_tsv(out / "validated.tsv")
    _, durations = read_tsv(out / "clip_durations.tsv")
    duration_ms = {r["clip"]: int(r["duration[ms]"]) for r in durations}
    total = 0.0
    for row in rows:
        path = out / "clips" / row["path"]
        meta = sf.info(str(path))
        assert (meta.samplerate, meta.channels) == (16000, 1)
        assert meta.format == "MP3"
        audio = read_audio(str(path)).numpy()
        assert audio.ndim == 1
        seconds = len(audio) / 16000
        total += seconds
        assert abs(1000 * seconds - duration_ms[row["path"]]) < 30
        chars = len(row["sentence"].replace(" ", ""))
        assert 0.03 < seconds / chars < 0.5, (row["sentence"], seconds)
        # Speech, not silence or clipping: a reasonable level in the middle.
        peak = np.abs(audio).max()
        assert 0.1 < peak <= 1.0
        middle = audio[len(audio) // 4 : 3 * len(audio) // 4]
        assert np.sqrt(np.mean(middle**2)) > 0.01
    assert total == pytest.approx(info["total_seconds"], abs=0.1)


def test_russian_is_cyrillic(corpus):
    out, _ = corpus("ru", "ru")
    _, rows = read_tsv(out / "validated.tsv")
    for row in rows:
        for word in words_of(row["sentence"]):
            assert all("а" <= ch.lower() <= "я" or ch.lower() == "ё" for ch in word)


def test_cantonese_is_traditional_han(corpus):
    import opencc

    out, _ = corpus("zh-HK", "zh-HK")
    _, rows = read_tsv(out / "validated.tsv")
    text = "".join(row["sentence"] for row in rows)
    han = [ch for ch in text if ch not in "。？！，"]
    assert han and all("\u4e00" <= ch <= "\u9fff" for ch in han)
    # Traditional characters appear: converting to Simplified changes the text.
    assert opencc.OpenCC("hk2s").convert(text) != text
    for row in rows:
        body = row["sentence"].rstrip("。？！")
        assert 4 <= len(body.replace("，", "")) <= 12, row["sentence"]


@pytest.mark.parametrize("locale", ["es", "de"])
def test_latin_languages_keep_their_letters_and_drop_english(corpus, locale):
    out, _ = corpus(locale, locale)
    _, rows = read_tsv(out / "validated.tsv")
    letters = set(LANGUAGES[locale].letters)
    for row in rows:
        sentence = row["sentence"]
        assert sentence[0].isupper() or sentence[0] in "¿¡"
        assert sentence[-1] in ".?!"
        words = [w.lower() for w in words_of(sentence)]
        assert 4 <= len(words)
        assert not ENGLISH_FUNCTION_WORDS & set(words)
        assert set("".join(words)) <= letters


@pytest.mark.parametrize("locale", supported_locales())
def test_every_locale_writes_and_speaks_sentences(locale):
    spec = LANGUAGES[locale]
    generator = SentenceGenerator(locale, vocab_size=400)
    allowed = set(spec.letters) | set(spec.inner) | set(spec.punctuation)
    allowed |= {" ", "¿", "¡"}
    sentences = [generator.sentence(np.random.default_rng([5, i])) for i in range(20)]
    for sentence in sentences:
        assert not any(unicodedata.category(ch) == "Nd" for ch in sentence)
        assert set(sentence.lower()) <= allowed, sentence
    assert len(set(sentences)) == len(sentences)
    # Numbers are spelled out where a speller exists.
    if spec.numbers:
        numbered = [generator._number(np.random.default_rng(i)) for i in range(5)]
        assert all(numbered)
    tts = Espeak()
    tts.set_voice(spec.voice)
    tts.set_parameters(rate=175, pitch=50, range=50, wordgap=0)
    audio = tts.synthesize(sentences[0])
    assert 0.03 < len(audio) / ESPEAK_SAMPLE_RATE / len(sentences[0]) < 0.5


def test_numbers_are_spelled_out_in_the_corpus_text():
    generator = SentenceGenerator("es", vocab_size=400)
    sentences = [generator.sentence(np.random.default_rng([9, i])) for i in range(60)]
    number_words = {"uno", "dos", "tres", "cuatro", "cinco", "seis", "siete"}
    number_words |= {"ocho", "nueve", "diez", "veinte", "treinta", "cien", "mil"}
    number_words |= {"cuarenta", "cincuenta", "sesenta", "setenta", "ochenta"}
    with_numbers = [
        s for s in sentences if number_words & {w.lower() for w in words_of(s)}
    ]
    assert with_numbers
    assert not any(ch.isdigit() for s in sentences for ch in s)


def test_same_seed_same_corpus_whatever_the_jobs(corpus, tmp_path):
    out, _ = corpus("es", "es")
    again = tmp_path / "again"
    synthesize_corpus(again, "es", 12, seed=1, jobs=1, progress=False)
    for name in ("train.tsv", "dev.tsv", "test.tsv", "validated.tsv"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    # libsndfile's MP3 encoder is deterministic: the clips are byte-identical.
    for clip in (out / "clips").iterdir():
        assert (again / "clips" / clip.name).read_bytes() == clip.read_bytes()
    other = tmp_path / "other"
    synthesize_corpus(other, "es", 12, seed=2, jobs=2, progress=False)
    _, first = read_tsv(out / "validated.tsv")
    _, second = read_tsv(other / "validated.tsv")
    assert {r["sentence"] for r in first}.isdisjoint({r["sentence"] for r in second})
    assert {r["client_id"] for r in first} != {r["client_id"] for r in second}
    clip = first[0]["path"]
    assert (other / "clips" / clip).read_bytes() != (out / "clips" / clip).read_bytes()


def test_english_accents_fill_the_accents_column(corpus):
    out, info = corpus("en-all", "en", 12, accents="all")
    labels = {accent.label for accent in ENGLISH_ACCENTS.values()}
    assert len(labels) == len(ENGLISH_ACCENTS)  # every accent keeps its own label
    _, train = read_tsv(out / "train.tsv")
    assert {row["accents"] for row in train} == labels
    _, held_out = read_tsv(out / "test.tsv")
    assert {row["accents"] for row in held_out} <= labels
    assert sorted(info["accents"]) == sorted(labels)
    # Each speaker has one accent.
    accent_of = {}
    for row in train:
        assert accent_of.setdefault(row["client_id"], row["accents"]) == row["accents"]


def test_english_default_accent_and_accent_subset(corpus):
    out, _ = corpus("en", "en", 5)
    _, rows = read_tsv(out / "validated.tsv")
    assert {row["accents"] for row in rows} == {"United States English"}
    out, _ = corpus("en-two", "en", 5, accents="scotland, lancashire")
    _, rows = read_tsv(out / "train.tsv")
    assert {row["accents"] for row in rows} == {
        "Scottish English",
        "England English (Lancashire)",
    }


def test_domains_have_their_own_vocabulary(corpus):
    vocab = {}
    for domain in ("medical", "atc"):
        out, info = corpus(domain, "en", 5, domain=domain)
        assert info["domain"] == domain
        _, rows = read_tsv(out / "validated.tsv")
        assert {row["sentence_domain"] for row in rows} == {domain}
        for row in rows:
            assert not any(ch.isdigit() for ch in row["sentence"])
        sentences = [
            domain_sentence(domain, np.random.default_rng(i)) for i in range(60)
        ]
        vocab[domain] = {w.lower() for s in sentences for w in words_of(s)}
    assert {"milligrams", "daily"} <= vocab["medical"]
    assert {"runway", "niner"} <= vocab["atc"]
    shared = vocab["medical"] & vocab["atc"]
    assert len(shared) < 0.25 * min(len(vocab["medical"]), len(vocab["atc"]))


def test_text_file_with_any_espeak_voice(tmp_path):
    text = tmp_path / "sw.txt"
    lines = ["Habari ya asubuhi.", "Ninapenda kusoma vitabu.", "Leo ni siku nzuri."]
    text.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    out = tmp_path / "sw"
    info = synthesize_corpus(
        out, "sw", 3, text_file=text, voice="sw", jobs=1, progress=False
    )
    assert info["utterances"] == {"train": 1, "dev": 1, "test": 1}
    _, rows = read_tsv(out / "validated.tsv")
    assert sorted(row["sentence"] for row in rows) == sorted(lines)
    assert {row["locale"] for row in rows} == {"sw"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"locale": "xx"}, "zh-HK"),
        ({"utterances": 2}, "at least 3"),
        ({"domain": "legal", "locale": "en"}, "atc, medical"),
        ({"accents": "us,mars", "locale": "en"}, "scotland"),
        ({"voice": "es+zz"}, "no voice"),
        ({"text_file": "missing.txt"}, "does not exist"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, message):
    args = {"locale": "es", "utterances": 5, "jobs": 1, "progress": False}
    args.update(kwargs)
    out = tmp_path / "new" / "corpus"
    with pytest.raises(SynthError, match=message):
        synthesize_corpus(out, **args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("jobs, error", [(1, KeyboardInterrupt), (2, RuntimeError)])
def test_failure_midway_leaves_nothing(tmp_path, monkeypatch, jobs, error):
    real_render = synth_module._render

    def failing_render(job):
        if job.index == 9:
            raise error("stop")
        return real_render(job)

    # Forked workers inherit the patched module.
    monkeypatch.setattr(synth_module, "_render", failing_render)
    out = tmp_path / "deep" / "corpus"
    with pytest.raises(error):
        synthesize_corpus(out, "es", 20, jobs=jobs, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_only_replaces_a_corpus(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="--overwrite"):
        synthesize_corpus(out, "es", 3, jobs=1, progress=False)
    with pytest.raises(SynthError, match="notes.txt"):
        synthesize_corpus(out, "es", 3, jobs=1, progress=False, overwrite=True)
    (out / "notes.txt").unlink()
    synthesize_corpus(out, "es", 3, seed=0, jobs=1, progress=False)
    before = (out / "train.tsv").read_bytes()
    synthesize_corpus(out, "es", 3, seed=4, jobs=1, progress=False, overwrite=True)
    assert (out / "train.tsv").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    assert len(list((out / "clips").iterdir())) == 3


def test_resampler_agrees_with_torchaudio():
    import torch
    import torchaudio

    tts = Espeak()
    tts.set_voice("en-us+f2")
    speech = tts.synthesize("The quick brown fox jumps over the lazy dog.")
    ours = PolyphaseResampler(ESPEAK_SAMPLE_RATE, 16000)(speech)
    theirs = torchaudio.functional.resample(
        torch.from_numpy(speech), ESPEAK_SAMPLE_RATE, 16000
    ).numpy()
    assert len(ours) == len(theirs)
    error = np.sqrt(np.mean((ours - theirs) ** 2)) / np.sqrt(np.mean(theirs**2))
    assert error < 0.02


def test_espeak_rejects_unknown_voice_and_bad_parameters():
    tts = Espeak()
    assert tts is Espeak()  # one engine per process
    with pytest.raises(EspeakError, match="no voice"):
        tts.set_voice("klingon")
    with pytest.raises(EspeakError, match="outside"):
        tts.set_parameters(rate=1000)
    with pytest.raises(EspeakError, match="unknown espeak parameter"):
        tts.set_parameters(speed=100)


def test_split_sizes_cover_the_total():
    for total in (3, 4, 10, 12, 37, 100, 2001):
        sizes = synth_module.split_sizes(total)
        assert sum(sizes) == total and min(sizes) >= 1
        assert sizes[0] >= sizes[1] == sizes[2]


def test_clip_paths_are_relative(corpus):
    out, _ = corpus("es", "es")
    _, rows = read_tsv(out / "train.tsv")
    assert all(not Path(row["path"]).is_absolute() for row in rows)
    assert all("/" not in row["path"] for row in rows)


def test_espeak_reset_and_seed_make_breathy_voices_repeatable():
    tts = Espeak()

    def say(seed):
        tts.reset(seed=seed)
        tts.set_voice("es+f2")  # f2 is breathy: it draws on the noise generator
        tts.synthesize("Buenos días.")  # state carried into the next call
        return tts.synthesize("Hola, ¿qué tal?")

    first, other, again = say(1), say(2), say(1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_letters_and_columns_come_from_their_owners():
    # tokens owns each language's letters; data.commonvoice the Common Voice columns.
    for locale, spec in LANGUAGES.items():
        assert spec.letters == alphabet(locale), locale
        checked = language_letters(locale)
        if checked is not None:
            assert set(checked) - {"'"} == set(spec.letters), locale
    assert synth_module.CV_COLUMNS is CV_COLUMNS
    assert not any(name.startswith("CV_") for name in synth_module.__all__)
    speaker = synth_module.Speaker("en", "en-us", "f2", 150, 50, 50, 5)
    assert speaker.gender in CV_GENDERS and speaker.age in CV_AGES
