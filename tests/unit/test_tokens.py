"""Tests for xlt_plugin.tokens: normalisation, inventories, token files."""

import random
import shutil

import pytest
import sentencepiece as spm
from speechbrain.dataio.encoder import CTCTextEncoder

from xlt_plugin.tokens import (
    ALPHABETS,
    BLANK,
    alphabet,
    build_char_encoder,
    build_sentencepiece,
    foreign_characters,
    language_letters,
    load_tokens,
    normalize_text,
    save_tokens,
    tokens_of,
)

# --------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize(
    "language, raw, expected",
    [
        ("es", "¿Cómo está el niño? ¡Muy bien!", "cómo está el niño muy bien"),
        ("es", "ÁRBOL Ñandú", "árbol ñandú"),
        ("ru", "ЁЛКА, Щука и «ПЁС»!", "ёлка щука и пёс"),
        ("de", "Die STRASSE heißt „Große Straße“.", "die strasse heißt große straße"),
        ("de", "Ärger über Öl", "ärger über öl"),
        ("zh-CN", "我们 走吧。你好，世界！", "我们走吧你好世界"),
        ("zh-HK", "佢哋 去咗「邊度」？", "佢哋去咗邊度"),
        ("en", "Don’t stop — it's `fine`", "don't stop it's fine"),
        ("en", "well-known 'quoted' words", "well known quoted words"),
        ("fr", "L’homme d’aujourd’hui", "l'homme d'aujourd'hui"),
        ("de", "Wie geht’s?", "wie gehts"),
        ("en", "  many   spaces\there ", "many spaces here"),
        ("en", "ＦＵＬＬ　width", "full width"),
    ],
)
def test_normalize_text(language, raw, expected):
    assert normalize_text(raw, language) == expected


@pytest.mark.parametrize(
    "language, raw, word",
    [
        ("en", "I have 3 cats", "three"),
        ("en", "the 21st day", "twenty"),
        ("en", "1,000 people", "thousand"),
        ("de", "Es sind 21 Tage", "einundzwanzig"),
        ("es", "Tengo 7 años", "siete"),
        ("ru", "Мне 5 лет", "пять"),
    ],
)
def test_digits_spelled_out(language, raw, word):
    out = normalize_text(raw, language)
    assert word in out
    assert not any(c.isdigit() for c in out)
    assert foreign_characters(out, language) == set()


def test_digits_left_where_num2words_lacks_language():
    out = normalize_text("我有3个", "zh-CN")
    assert "3" in out
    assert foreign_characters(out, "zh-CN") == {"3"}


def test_normalize_keeps_letters_of_every_script():
    # Normalisation never drops letters, foreign or not: the prep decides.
    out = normalize_text("Привет Hello ñ 你好", "es")
    for ch in "приветhelloñ你好":
        assert ch in out


def test_spoken_symbols_are_kept_for_flagging():
    out = normalize_text("50% of A&B", "en")
    assert foreign_characters(out, "en") == {"%", "&"}


def test_foreign_characters():
    assert foreign_characters("привет мир hello", "ru") == set("helo")
    assert foreign_characters("ёжик", "ru") == set()
    assert foreign_characters("el niño да", "es") == {"д", "а"}
    assert foreign_characters("don't", "en") == set()
    assert foreign_characters("don't", "de") == {"'"}
    assert foreign_characters("我们好", "zh-HK") == set()
    assert foreign_characters("我们ok", "zh-CN") == {"o", "k"}
    # Generic fallback (no letter table): letters pass, digits/symbols do not.
    assert foreign_characters("tere ülo 3", "et") == {"3"}


def test_language_letters():
    assert "ñ" in language_letters("es")
    assert "ё" in language_letters("ru")
    assert "ß" in language_letters("de")
    assert "'" in language_letters("en") and "'" not in language_letters("es")
    assert language_letters("zh-CN") is None
    assert language_letters("en-US") == language_letters("en")
    with pytest.raises(ValueError, match="locale"):
        language_letters("")


def test_alphabet():
    assert alphabet("sv-SE") == ALPHABETS["sv"] and "å" in alphabet("sv")
    assert alphabet("zh-HK") == ALPHABETS["zh-hk"] and "们" in alphabet("zh-HK")
    # The checked languages' letters are their alphabets (plus the apostrophe).
    assert language_letters("de") == alphabet("de")
    assert language_letters("fr") == alphabet("fr") + "'"
    # Tables of other languages hold the common letters only: the prep checks
    # those with the generic letter test, so a loanword letter is not flagged.
    assert language_letters("nl") is None
    assert foreign_characters("façade", "nl") == set()
    with pytest.raises(ValueError, match="no alphabet for 'xx'"):
        alphabet("xx")


def test_every_letter_of_a_language_survives_normalisation():
    for lang in ("en", "de", "es", "fr", "it", "pt", "ru", "uk"):
        letters = language_letters(lang).replace("'", "")
        text = " ".join(letters[i : i + 3] for i in range(0, len(letters), 3))
        # Upper-case where that round-trips ("ß".upper() is "SS").
        shouted = "".join(c.upper() if c.upper().lower() == c else c for c in text)
        assert normalize_text(shouted, lang) == text, lang


# --------------------------------------------------------------------------
# Character inventories


def test_build_char_encoder_blank_first_sorted_and_stable():
    texts = ["hola niño", "adiós", "año"]
    enc = build_char_encoder(texts)
    tokens = load_tokens(enc)
    assert tokens[0] == BLANK
    assert enc.get_blank_index() == 0
    assert tokens[1:] == sorted(set("".join(texts)))
    assert " " in tokens
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    assert load_tokens(build_char_encoder(iter(shuffled))) == tokens


def test_build_char_encoder_zh_has_no_space_token():
    texts = [normalize_text(t, "zh-CN") for t in ["我们 走吧。", "你好，世界"]]
    tokens = load_tokens(build_char_encoder(texts))
    assert " " not in tokens and tokens[0] == BLANK


def test_build_char_encoder_save_and_reload(tmp_path):
    path = tmp_path / "sub" / "label_encoder.txt"
    first = build_char_encoder(["abc d"], path)
    assert path.is_file()
    # A resumed run loads the file: other texts do not change the indices.
    again = build_char_encoder(["zyx"], path)
    assert again.lab2ind == first.lab2ind
    assert again.get_blank_index() == 0
    assert load_tokens(path) == load_tokens(first)
    assert again.encode_sequence(list("cab")) == first.encode_sequence(list("cab"))


def test_build_char_encoder_rejects_unnormalised_text():
    with pytest.raises(ValueError, match="text #1"):
        build_char_encoder(["ok", "bad\nline"])


def test_build_char_encoder_bad_label_file(tmp_path):
    path = tmp_path / "labels.txt"
    enc = CTCTextEncoder()
    enc.update_from_iterable("ab", sequence_input=False)
    enc.save(path)  # a label file without a blank
    with pytest.raises(ValueError, match="labels.txt"):
        build_char_encoder(["ab"], path)


# --------------------------------------------------------------------------
# SentencePiece and token files


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sp")
    manifest = tmp / "train.csv"
    words = ["the", "cat", "sat", "on", "mat", "hat", "that", "then"]
    rng = random.Random(1)
    with open(manifest, "w", encoding="utf-8") as f:
        f.write("ID,duration,wrd\n")
        for i in range(80):
            f.write(f"u{i},1.0,{' '.join(rng.choices(words, k=5))}\n")
    return build_sentencepiece(manifest, tmp / "tok", 16, model_type="unigram")


def test_build_sentencepiece_and_tokens_of(sp_model):
    proc = sp_model.sp
    shared = tokens_of(sp_model)
    assert len(shared) == proc.GetPieceSize() == 16
    assert shared[0] == BLANK and proc.IdToPiece(0) == "<unk>"
    assert shared[1:] == [proc.IdToPiece(i) for i in range(1, 16)]
    last = tokens_of(proc, blank="last")
    assert last[:-1] == [proc.IdToPiece(i) for i in range(16)]
    assert last[-1] == BLANK
    with pytest.raises(ValueError, match="shared"):
        tokens_of(proc, blank="middle")


def test_tokens_of_needs_unk_at_zero_for_shared_blank(tmp_path):
    (tmp_path / "t.txt").write_text("abc cab bca\n" * 10, "utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "t.txt"),
        model_prefix=str(tmp_path / "m"),
        model_type="char",
        unk_id=2,
        bos_id=0,
        eos_id=1,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match="unk_id=2"):
        tokens_of(str(tmp_path / "m.model"))
    assert tokens_of(str(tmp_path / "m.model"), blank="last")[-1] == BLANK


def test_build_sentencepiece_bad_manifest(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("ID,text\n1,hello\n", "utf-8")
    with pytest.raises(ValueError, match=r"m\.csv.*'wrd'"):
        build_sentencepiece(manifest, tmp_path / "tok", 10)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        build_sentencepiece(tmp_path / "missing.csv", tmp_path / "tok", 10)


def test_load_tokens_round_trips(tmp_path, sp_model):
    enc = build_char_encoder(["añb c"])
    expected = load_tokens(enc)
    assert expected == [BLANK, " ", "a", "b", "c", "ñ"]

    # SpeechBrain label file (what CTCTextEncoder.save writes)
    enc.save(tmp_path / "label_encoder.txt")
    assert load_tokens(tmp_path / "label_encoder.txt") == expected
    assert load_tokens(str(tmp_path / "label_encoder.txt")) == expected

    # plain file, space written <space>; a bare " " line reads the same
    save_tokens(expected, tmp_path / "tokens.txt")
    assert "<space>" in (tmp_path / "tokens.txt").read_text("utf-8")
    assert load_tokens(tmp_path / "tokens.txt") == expected
    (tmp_path / "nemo.txt").write_text("a\n \nb\r\n<blank>", "utf-8")
    assert load_tokens(tmp_path / "nemo.txt") == ["a", " ", "b", BLANK]

    # SentencePiece: .model, a hub-style tokenizer.ckpt, processor, wrapper
    sp_tokens = tokens_of(sp_model)
    model_path = sp_model.prefix_model_file + ".model"
    shutil.copy(model_path, tmp_path / "tokenizer.ckpt")
    assert load_tokens(model_path) == sp_tokens
    assert load_tokens(tmp_path / "tokenizer.ckpt") == sp_tokens
    assert load_tokens(sp_model.sp) == sp_tokens
    assert load_tokens(sp_model) == sp_tokens

    # lists
    assert load_tokens(("x", "y")) == ["x", "y"]
    assert load_tokens(expected) == expected


def test_load_tokens_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_tokens(tmp_path / "nope.txt")

    bad_label = tmp_path / "broken_encoder.txt"
    bad_label.write_text("'a' => 0\nnot a literal\n================\n", "utf-8")
    with pytest.raises(ValueError, match="broken_encoder.txt"):
        load_tokens(bad_label)

    gap = tmp_path / "gap.txt"
    gap.write_text("'a' => 0\n'b' => 2\n================\n'starting_index' => 0\n")
    with pytest.raises(ValueError, match="gap.txt"):
        load_tokens(gap)

    binary = tmp_path / "garbage.ckpt"
    binary.write_bytes(b"\x00\xff\x13 not a model")
    with pytest.raises(ValueError, match="garbage.ckpt"):
        load_tokens(binary)

    holes = tmp_path / "holes.txt"
    holes.write_text("a\n\nb\n", "utf-8")
    with pytest.raises(ValueError, match="holes.txt, line 2"):
        load_tokens(holes)

    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n", "utf-8")
    with pytest.raises(ValueError, match="line 3 repeats line 1"):
        load_tokens(dup)

    with pytest.raises(TypeError, match="non-str"):
        load_tokens(["a", 3])
    with pytest.raises(TypeError):
        load_tokens(42)


def test_save_tokens_refuses_unwritable_tokens(tmp_path):
    with pytest.raises(ValueError, match="token #1"):
        save_tokens(["a", "b\nc"], tmp_path / "t.txt")
    with pytest.raises(ValueError, match="duplicates"):
        save_tokens(["a", "a"], tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()
