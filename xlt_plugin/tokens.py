"""Token inventories and per-language text normalisation.

A CTC model's token inventory is the list of its output rows in order: index
``i`` is head row ``i``, blank included. This module builds inventories
(characters through SpeechBrain's ``CTCTextEncoder``, subwords through
SpeechBrain's ``SentencePiece`` wrapper), reads and writes them, and
normalises transcripts so that the characters of a language survive (accented
Latin, Cyrillic, Han), which SpeechBrain's own Common Voice prep does not
guarantee.

Conventions
-----------
* Character inventories: blank ``"<blank>"`` at index 0, then every character
  seen, sorted by code point (stable across runs). The space ``" "`` is the
  word-boundary token of alphabetic languages.
* Chinese (zh-CN, zh-HK, zh-TW, yue): normalised text has no spaces (Common
  Voice zh text has none between Han characters), so a character inventory
  built from it has NO space token; score these languages by CER.
* SentencePiece inventories: the blank shares id 0 with ``<unk>``, as
  SpeechBrain's CTC recipes do (``blank_index: 0`` with ``unk_id=0``);
  ``tokens_of`` labels that row ``"<blank>"``. ``blank="last"`` instead
  appends ``"<blank>"`` as an extra last row (a head one row larger than the
  SentencePiece vocabulary).
* Plain token files: one token per line, line ``i`` = head row ``i``; the
  space token is written ``<space>`` (a line holding one blank space is read as
  the space token too).

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sentencepiece as spm

if TYPE_CHECKING:
    from speechbrain.dataio.encoder import CategoricalEncoder, CTCTextEncoder
# SpeechBrain (and with it torch) is imported where an encoder is built or read:
# text normalisation and the letter tables (used by the Common Voice prep and the
# embedded corpus) load in a fraction of a second.

logger = logging.getLogger(__name__)

BLANK = "<blank>"
SPACE_WORD = "<space>"

# Languages written in Han characters (Common Voice locales, lower-cased).
HAN_LANGUAGES = frozenset({"zh-cn", "zh-hk", "zh-tw", "yue"})
# Languages whose in-word apostrophe is part of the spelling ("don't",
# "l'homme", "dell'anno", "п'ять").
APOSTROPHE_LANGUAGES = frozenset({"en", "fr", "it", "uk"})

_LATIN = "abcdefghijklmnopqrstuvwxyz"


def _block(start: int, end: int) -> str:
    """Letters and combining marks of a Unicode block (digits and signs left out)."""
    return "".join(
        chr(c) for c in range(start, end + 1) if unicodedata.category(chr(c))[0] in "LM"
    )


def _vietnamese() -> str:
    bases = ["a", "a\u0306", "a\u0302", "e", "e\u0302", "i", "o", "o\u0302"]
    bases += ["o\u031b", "u", "u\u031b", "y"]
    tones = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]
    vowels = {unicodedata.normalize("NFC", b + t) for b in bases for t in tones}
    return _LATIN + "đ" + "".join(sorted(vowels))


_CYRILLIC_RU = "абвгдежзийклмнопрстуфхцчшщъыьэюяё"
_ARABIC = _block(0x0620, 0x064A)
_HAN = _block(0x4E00, 0x9FFF)

#: Lower-case letters (and combining marks) of each language, by base locale
#: (:func:`alphabet` looks one up): the one table of which letters a language
#: writes with. The prep checks transcripts against those of ``_CHECKED``; the
#: others hold the common letters only (enough for the embedded corpus to pick
#: words, not every loanword of a real transcript).
ALPHABETS: dict[str, str] = {
    "en": _LATIN,
    "de": _LATIN + "äöüß",
    "es": _LATIN + "áéíñóúü",
    "fr": _LATIN + "àâæçèéêëîïôùûüÿœ",
    "it": _LATIN + "àèéìíîòóùú",
    "pt": _LATIN + "àáâãçéêíóôõú",
    "nl": _LATIN + "éëïóöüèáíú",
    "pl": _LATIN + "ąćęłńóśźż",
    "ca": _LATIN + "àçéèíïòóúü",
    "cs": _LATIN + "áčďéěíňóřšťúůýž",
    "sk": _LATIN + "áäčďéíĺľňóôŕšťúýž",
    "sl": _LATIN + "čšž",
    "hu": _LATIN + "áéíóöőúüű",
    "fi": _LATIN + "åäöšž",
    "sv": _LATIN + "åäöé",
    "da": _LATIN + "æøåé",
    "ro": _LATIN + "ăâîșț",
    "lv": _LATIN + "āčēģīķļņšūž",
    "lt": _LATIN + "ąčęėįšųūž",
    "tr": _LATIN + "çğıöşü",
    "id": _LATIN,
    "is": _LATIN + "áðéíóúýþæö",
    "vi": _vietnamese(),
    "ru": _CYRILLIC_RU,
    "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя",
    "bg": "абвгдежзийклмнопрстуфхцчшщъьюя",
    "mk": "абвгдѓежзѕијклљмнњопрстќуфхцчџш",
    "el": "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰς",
    "ar": _ARABIC,
    "fa": _ARABIC + "پچژگکی",
    "ur": _ARABIC + "ٹڈڑںھہۂۓیےپچژگکٰ",
    "he": _block(0x05B0, 0x05EA),
    "hi": _block(0x0900, 0x094F) + _block(0x0955, 0x0963),
    "bn": _block(0x0980, 0x09E3),
    "ta": _block(0x0B80, 0x0BD7),
    "ko": _block(0xAC00, 0xD7A3),
    # The CJK Unified Ideographs block; the prep checks Han text with is_han.
    "zh-cn": _HAN,
    "zh-tw": _HAN,
    "zh-hk": _HAN,
    "yue": _HAN,
}
# Languages whose table is complete: the prep flags any other character.
_CHECKED = frozenset({"en", "de", "es", "fr", "it", "pt", "ru", "uk"})

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018`\u00b4\u02bc\u02b9"})
_HYPHENS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
# Punctuation that stands for spoken words: kept, so that foreign_characters
# flags the row instead of the transcript silently losing a word.
_SPOKEN_PUNCTUATION = frozenset("%&@#§‰")
_CONTROL = re.compile(r"[\n\r\t\x00-\x1f\x7f]")


def _lang(language: str) -> str:
    """Lower-cased Common Voice locale, e.g. 'zh-CN' -> 'zh-cn'."""
    if not isinstance(language, str) or not language.strip():
        raise ValueError(f"language must be a locale such as 'en', got {language!r}")
    return language.strip().lower().replace("_", "-")


def _base(language: str) -> str:
    """Base language of a locale: 'en-us' -> 'en'; Han locales kept whole."""
    lang = _lang(language)
    return lang if lang in HAN_LANGUAGES else lang.split("-")[0]


def is_han(char: str) -> bool:
    """Whether ``char`` is a CJK unified (or compatibility) ideograph.

    Arguments
    ---------
    char : str
        One character.

    Returns
    -------
    bool
        True for Han characters (all CJK ideograph blocks, and U+3007 〇).

    Example
    -------
    >>> is_han("们"), is_han("a"), is_han("。")
    (True, False, False)
    """
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x3134F
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
        or cp == 0x3007
    )


def _fold_width(text: str) -> str:
    """Full-width ASCII forms and the ideographic space to plain ASCII."""
    out = []
    for char in text:
        cp = ord(char)
        if 0xFF01 <= cp <= 0xFF5E:
            out.append(chr(cp - 0xFEE0))
        elif cp == 0x3000:
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


@functools.cache
def _num2words_language(language: str) -> str | None:
    """The num2words converter name for a locale, or None if unsupported."""
    from num2words import CONVERTER_CLASSES

    lang = _lang(language)
    for name in (lang.replace("-", "_"), _base(language)):
        if name in CONVERTER_CLASSES:
            return name
    return None


def _spell_digits(text: str, language: str) -> str:
    """Spell out integers (and English ordinals '21st') with num2words."""
    lang = _num2words_language(language)
    if lang is None:
        return text
    from num2words import num2words

    def spell(digits: str, fallback: str, **kwargs) -> str:
        # num2words stops somewhere for every language (Spanish below 10**27,
        # Russian at 10**36, any at 4300 digits, each with its own exception):
        # such a number stays digits, for foreign_characters to flag.
        try:
            return f" {num2words(int(digits), lang=lang, **kwargs)} "
        except Exception:
            return fallback

    def ordinal(match: re.Match) -> str:
        return spell(match.group(1), match.group(0), to="ordinal")

    def cardinal(match: re.Match) -> str:
        return spell(match.group(0), match.group(0))

    if lang.startswith("en"):
        # "1,000" is one number; "21st" an ordinal.
        text = re.sub(r"\d{1,3}(?:,\d{3})+\b", lambda m: m[0].replace(",", ""), text)
        text = re.sub(r"(\d+)(?:st|nd|rd|th)\b", ordinal, text, flags=re.IGNORECASE)
    return re.sub(r"\d+", cardinal, text)


def normalize_text(text: str, language: str) -> str:
    """Normalise a transcript for character-level CTC in one language.

    Steps: Unicode NFC; full-width ASCII to ASCII; apostrophes unified
    (’ ‘ ` ´ ʼ -> '); digits spelled out with num2words where it supports the
    language (else left for :func:`foreign_characters` to flag); lower case
    (Cyrillic included); hyphens and dashes to spaces; in-word apostrophes kept
    for en/fr/it/uk and removed elsewhere; other punctuation (Unicode category
    P*, e.g. ¿¡«»„“ and 。，！？、) dropped, except % & @ # § which stand for
    words and are kept so the row gets flagged; whitespace collapsed. For
    Chinese locales every space touching a Han character is removed, so pure
    Han text has no spaces (and its inventory no space token). Letters of any
    script are kept: this function never drops a letter.

    Arguments
    ---------
    text : str
        Raw transcript.
    language : str
        Common Voice locale: en, de, es, fr, it, pt, ru, uk, zh-CN, zh-HK, ...;
        other locales get the same generic treatment without a letter table.

    Returns
    -------
    str
        The normalised transcript (may be empty).

    Example
    -------
    >>> normalize_text("¿Qué tal, Señor?", "es")
    'qué tal señor'
    >>> normalize_text("Don’t stop — it's 2 o'clock!", "en")
    "don't stop it's two o'clock"
    >>> normalize_text("Ёлка, «Щука»!", "ru")
    'ёлка щука'
    >>> normalize_text("我们 走吧。你好，世界！", "zh-CN")
    '我们走吧你好世界'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r}")
    lang = _base(language)
    text = unicodedata.normalize("NFC", text)
    text = _fold_width(text).translate(_APOSTROPHES)
    text = _spell_digits(text, language)
    text = text.lower()
    for hyphen in _HYPHENS:
        text = text.replace(hyphen, " ")

    out = []
    for i, char in enumerate(text):
        if char == "'":
            prev = text[i - 1] if i > 0 else ""
            nxt = text[i + 1] if i + 1 < len(text) else ""
            in_word = prev.isalpha() and nxt.isalpha()
            if in_word and lang in APOSTROPHE_LANGUAGES:
                out.append(char)
            elif in_word:
                continue  # "geht's" -> "gehts": the letters stay one word
            else:
                out.append(" ")  # a quote mark
        elif unicodedata.category(char).startswith("P"):
            out.append(char if char in _SPOKEN_PUNCTUATION else " ")
        elif char.isspace():
            out.append(" ")
        else:
            out.append(char)
    text = " ".join("".join(out).split())

    if lang in HAN_LANGUAGES:
        chars = text
        text = "".join(
            c
            for i, c in enumerate(chars)
            if not (
                c == " "
                and (
                    (i > 0 and is_han(chars[i - 1]))
                    or (i + 1 < len(chars) and is_han(chars[i + 1]))
                )
            )
        )
    return text


def language_letters(language: str) -> str | None:
    """The characters a normalised transcript of ``language`` may contain.

    Arguments
    ---------
    language : str
        Common Voice locale.

    Returns
    -------
    str or None
        The allowed letters (lower case, plus the apostrophe for languages that
        keep it), or None where there is no table: Han languages (checked by
        Unicode block) and locales without a table (generic check).

    Example
    -------
    >>> language_letters("de")[-4:]
    'äöüß'
    >>> language_letters("zh-HK") is None
    True
    """
    lang = _base(language)
    if lang not in _CHECKED:
        return None
    return ALPHABETS[lang] + ("'" if lang in APOSTROPHE_LANGUAGES else "")


def alphabet(language: str) -> str:
    """The lower-case letters (and combining marks) of ``language``.

    Arguments
    ---------
    language : str
        Common Voice locale (``"es"``, ``"sv-SE"``, ``"zh-HK"``).

    Returns
    -------
    str
        The letters, from :data:`ALPHABETS`.

    Raises
    ------
    ValueError
        No table for the language.

    Example
    -------
    >>> alphabet("sv-SE")[-4:]
    'åäöé'
    """
    lang = _base(language)
    if lang not in ALPHABETS:
        raise ValueError(
            f"no alphabet for {language!r}; known: {', '.join(sorted(ALPHABETS))}"
        )
    return ALPHABETS[lang]


def foreign_characters(text: str, language: str) -> set[str]:
    """Characters of a (normalised) transcript that are outside ``language``.

    Whitespace is ignored. Alphabetic languages with a letter table
    (:func:`language_letters`): anything not in the table, digits included.
    Han languages: anything that is not a CJK ideograph (Latin letters,
    digits, kana, ...). Other locales: anything that is not a letter or a
    combining mark. Pass the text through :func:`normalize_text` first; this
    function does not normalise.

    Arguments
    ---------
    text : str
        Normalised transcript.
    language : str
        Common Voice locale.

    Returns
    -------
    set of str
        The offending characters (empty if the text is clean).

    Example
    -------
    >>> sorted(foreign_characters("привет hello", "ru"))
    ['e', 'h', 'l', 'o']
    >>> sorted(foreign_characters("niño да", "es"))
    ['а', 'д']
    >>> sorted(foreign_characters("我们用iphone", "zh-CN"))
    ['e', 'h', 'i', 'n', 'o', 'p']
    """
    lang = _base(language)
    letters = language_letters(language)
    chars = {c for c in text if not c.isspace()}
    if letters is not None:
        allowed = set(letters)
        return {c for c in chars if c not in allowed}
    if lang in HAN_LANGUAGES:
        return {c for c in chars if not is_han(c)}
    return {c for c in chars if unicodedata.category(c)[0] not in "LM"}


def _sorted_characters(texts: Iterable[str]) -> Iterator[str]:
    """Distinct characters of ``texts`` in code-point order (lazy)."""
    seen: set[str] = set()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is not a str: {text!r}")
        bad = _CONTROL.search(text)
        if bad:
            raise ValueError(
                f"text #{i} {text!r} contains the control character "
                f"{bad.group(0)!r}; pass it through normalize_text first"
            )
        seen.update(text)
    yield from sorted(seen)


def build_char_encoder(
    texts: Iterable[str], save_path: str | os.PathLike | None = None
) -> CTCTextEncoder:
    """Character inventory as a SpeechBrain ``CTCTextEncoder``.

    Blank ``"<blank>"`` is index 0, the characters of ``texts`` follow in
    code-point order, so the same texts always give the same indices. With
    ``save_path``, SpeechBrain's ``load_or_create`` pattern applies: an
    existing file is loaded (``texts`` is then not read) so a resumed run keeps
    its indices; otherwise the encoder is built and saved there with
    ``CTCTextEncoder.save`` (DDP-safe: built on the main process only).

    Arguments
    ---------
    texts : iterable of str
        Normalised transcripts.
    save_path : str or path-like, optional
        Label file to load from if it exists, else to save to.

    Returns
    -------
    CTCTextEncoder
        The encoder; ``len(encoder)`` is the head size.

    Example
    -------
    >>> enc = build_char_encoder(["ab a", "ca"])
    >>> [enc.ind2lab[i] for i in range(len(enc))]
    ['<blank>', ' ', 'a', 'b', 'c']
    >>> path = str(getfixture("tmpdir") / "label_encoder.txt")
    >>> _ = build_char_encoder(["ab a", "ca"], path)
    >>> build_char_encoder(["zzz"], path).lab2ind["c"]  # loaded, not rebuilt
    4
    """
    from speechbrain.dataio.encoder import CTCTextEncoder

    encoder = CTCTextEncoder()
    encoder.insert_blank(BLANK, index=0)
    if save_path is None:
        encoder.update_from_iterable(_sorted_characters(texts), sequence_input=False)
    else:
        save_path = Path(save_path)
        save_path.parent.mkdir(parents=True, exist_ok=True)
        # load_or_create writes in place: a kill mid-write would leave a truncated
        # label file that the rerun loads. Write beside it, then rename.
        encoder.save = functools.partial(_save_atomically, encoder)
        try:
            encoder.load_or_create(
                save_path, from_iterables=[_sorted_characters(texts)]
            )
        except (ValueError, SyntaxError) as err:
            raise ValueError(
                f"cannot read the label file {save_path}: {err}; delete it to "
                "rebuild the inventory from the data"
            ) from err
        if BLANK not in encoder.lab2ind:
            raise ValueError(
                f"label file {save_path} has no {BLANK!r} label; it was not "
                "written by build_char_encoder (delete it to rebuild)"
            )
    encoder.expect_len(len(encoder))
    return encoder


def _save_atomically(encoder: CTCTextEncoder, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    type(encoder).save(encoder, tmp)
    os.replace(tmp, path)


def build_sentencepiece(
    manifest: str | os.PathLike,
    model_dir: str | os.PathLike,
    vocab_size: int,
    text_column: str = "wrd",
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    **kwargs,
):
    """Train (or load, if already trained) a SentencePiece model.

    A thin wrapper of ``speechbrain.tokenizers.SentencePiece.SentencePiece``
    that checks the manifest first. SpeechBrain's defaults are kept:
    ``unk_id=0``, no bos/eos, so id 0 doubles as the CTC blank (see
    :func:`tokens_of`).

    Arguments
    ---------
    manifest : str or path-like
        SpeechBrain CSV manifest with a text column.
    model_dir : str or path-like
        Where the model ``<vocab_size>_<model_type>.model`` is written (or
        found, in which case it is loaded without training).
    vocab_size : int
        Number of pieces.
    text_column : str
        Name of the text column of ``manifest``.
    model_type : str
        "unigram", "bpe" or "char".
    character_coverage : float
        1.0 for alphabetic languages; ~0.9995 for Chinese.
    **kwargs
        Passed to SpeechBrain's ``SentencePiece``.

    Returns
    -------
    speechbrain.tokenizers.SentencePiece.SentencePiece
        The wrapper; ``.sp`` is the ``SentencePieceProcessor``.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> with open(tmp / "train.csv", "w") as f:
    ...     _ = f.write("ID,wrd\\n")
    ...     for i in range(50):
    ...         _ = f.write(f"{i},the cat sat on the mat {i % 7}\\n")
    >>> tok = build_sentencepiece(tmp / "train.csv", tmp / "sp", 20, model_type="bpe")
    >>> tokens = tokens_of(tok)
    >>> tokens[0], len(tokens)
    ('<blank>', 20)
    """
    from speechbrain.tokenizers.SentencePiece import SentencePiece

    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"SentencePiece manifest {manifest} does not exist")
    with open(manifest, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    if text_column not in header:
        raise ValueError(
            f"manifest {manifest} has no column {text_column!r} (columns: "
            f"{header}); pass text_column= the transcript column"
        )
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    return SentencePiece(
        model_dir=str(model_dir),
        vocab_size=vocab_size,
        annotation_train=str(manifest),
        annotation_read=text_column,
        model_type=model_type,
        character_coverage=character_coverage,
        **kwargs,
    )


def _processor(sp) -> spm.SentencePieceProcessor:
    """A SentencePieceProcessor from a processor, SB wrapper or model path."""
    if isinstance(sp, spm.SentencePieceProcessor):
        return sp
    if isinstance(getattr(sp, "sp", None), spm.SentencePieceProcessor):
        return sp.sp
    if isinstance(sp, (str, os.PathLike)):
        path = Path(sp)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model {path} does not exist")
        proc = spm.SentencePieceProcessor()
        try:
            proc.Load(str(path))
        except (OSError, RuntimeError) as err:
            raise ValueError(
                f"cannot read {path} as a SentencePiece model: {err}"
            ) from err
        return proc
    raise TypeError(
        "expected a SentencePieceProcessor, a speechbrain SentencePiece or a "
        f".model path, got {type(sp).__name__}"
    )


def tokens_of(sp, blank: str = "shared") -> list[str]:
    """Token list (head rows in order) of a SentencePiece model.

    Arguments
    ---------
    sp : SentencePieceProcessor, speechbrain SentencePiece, or path
        The model.
    blank : str
        "shared" (default, SpeechBrain's CTC recipes): the blank is row 0,
        shared with ``<unk>`` (the model must have ``unk_id == 0``), and is
        labelled ``"<blank>"``. "last": all pieces, then ``"<blank>"`` as an
        extra last row.

    Returns
    -------
    list of str
        Piece (or ``"<blank>"``) per head row.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = (tmp / "t.txt").write_text("ab ba abc\\n" * 20, "utf-8")
    >>> spm.SentencePieceTrainer.train(
    ...     input=str(tmp / "t.txt"), model_prefix=str(tmp / "m"),
    ...     vocab_size=8, model_type="char", minloglevel=2)
    >>> tokens_of(str(tmp / "m.model"), blank="last")[-1]
    '<blank>'
    """
    proc = _processor(sp)
    pieces = [proc.IdToPiece(i) for i in range(proc.GetPieceSize())]
    if blank == "shared":
        if proc.unk_id() != 0:
            raise ValueError(
                f"blank='shared' needs <unk> at id 0, but this model has "
                f"unk_id={proc.unk_id()}; use blank='last' or retrain with unk_id=0"
            )
        return [BLANK] + pieces[1:]
    if blank == "last":
        return pieces + [BLANK]
    raise ValueError(f"blank must be 'shared' or 'last', got {blank!r}")


def _encoder_tokens(encoder: CategoricalEncoder, origin: str) -> list[str]:
    """Labels of an encoder by index, checking indices are 0..n-1."""
    n = len(encoder.ind2lab)
    if sorted(encoder.ind2lab) != list(range(n)):
        raise ValueError(
            f"label encoder {origin} has indices {sorted(encoder.ind2lab)[:10]}..., "
            f"not 0..{n - 1}: its labels cannot be head rows"
        )
    return [encoder.ind2lab[i] for i in range(n)]


def _read_plain(path: Path, text: str) -> list[str]:
    """Parse the plain one-token-per-line format."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    tokens = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        token = " " if line in (" ", SPACE_WORD) else line
        if token == "":
            raise ValueError(
                f"token file {path}, line {number} is empty; write the space "
                f"token as {SPACE_WORD!r} and remove blank lines"
            )
        if token in seen:
            raise ValueError(
                f"token file {path}: token {token!r} on line {number} repeats "
                f"line {seen[token]}"
            )
        seen[token] = number
        tokens.append(token)
    if not tokens:
        raise ValueError(f"token file {path} is empty")
    return tokens


def load_tokens(source) -> list[str]:
    """Token list (head rows in order) from any supported source.

    Supported: a SpeechBrain label file (what ``CTCTextEncoder.save`` writes,
    e.g. a hub's ``label_encoder.txt``), a SentencePiece model (``.model`` or
    any binary file, e.g. a hub's ``tokenizer.ckpt``; blank shared with id 0,
    see :func:`tokens_of`), a plain text file with one token per line (the
    space token written ``<space>``), a ``CTCTextEncoder`` (or any SpeechBrain
    ``CategoricalEncoder``), a ``SentencePieceProcessor`` or SpeechBrain
    ``SentencePiece``, or a list/tuple of str (returned as a list).

    Arguments
    ---------
    source : str, path-like, encoder, SentencePiece model, or sequence of str
        Where the tokens are.

    Returns
    -------
    list of str
        Token per head row.

    Example
    -------
    >>> load_tokens(build_char_encoder(["ba"]))
    ['<blank>', 'a', 'b']
    >>> path = getfixture("tmpdir") / "tokens.txt"
    >>> save_tokens(["<blank>", " ", "a"], path)
    >>> load_tokens(path)
    ['<blank>', ' ', 'a']
    """
    if isinstance(source, (list, tuple)):
        bad = [t for t in source if not isinstance(t, str)]
        if bad:
            raise TypeError(f"token list holds non-str items, e.g. {bad[0]!r}")
        return list(source)
    from speechbrain.dataio.encoder import CategoricalEncoder, CTCTextEncoder

    if isinstance(source, CategoricalEncoder):
        return _encoder_tokens(source, type(source).__name__)
    if isinstance(source, spm.SentencePieceProcessor) or isinstance(
        getattr(source, "sp", None), spm.SentencePieceProcessor
    ):
        return tokens_of(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "tokens must come from a path, a CTCTextEncoder, a SentencePiece "
            f"model or a list of str, got {type(source).__name__}"
        )

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if path.suffix == ".model" or text is None or "\x00" in text:
        return tokens_of(path)
    if CategoricalEncoder.EXTRAS_SEPARATOR in text:
        encoder = CTCTextEncoder()
        try:
            encoder.load(path)
        except (ValueError, SyntaxError) as err:
            raise ValueError(
                f"token file {path} looks like a SpeechBrain label file but "
                f"cannot be parsed: {err}"
            ) from err
        return _encoder_tokens(encoder, str(path))
    return _read_plain(path, text)


def save_tokens(tokens: Sequence[str], path: str | os.PathLike) -> None:
    """Write tokens in the plain format, one per line (space as ``<space>``).

    Arguments
    ---------
    tokens : sequence of str
        Token per head row.
    path : str or path-like
        File to write (parent folders are created).

    Example
    -------
    >>> path = getfixture("tmpdir") / "tokens.txt"
    >>> save_tokens(["<blank>", " ", "é"], path)
    >>> path.read_text("utf-8").splitlines()
    ['<blank>', '<space>', 'é']
    """
    lines = []
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or token == "" or _CONTROL.search(token):
            raise ValueError(
                f"token #{i} {token!r} cannot be written to {path}: tokens must "
                "be non-empty str without newlines or control characters"
            )
        lines.append(SPACE_WORD if token == " " else token)
    if len(set(lines)) != len(lines):
        raise ValueError(f"tokens for {path} hold duplicates")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
