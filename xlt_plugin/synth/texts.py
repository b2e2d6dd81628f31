"""Sentences for the embedded corpus, in the style of Common Voice.

Three sources of text, all deterministic given a numpy random generator:

* ``SentenceGenerator``: sentences of real words of a language, drawn from the
  ``wordfreq`` frequency lists, filtered to the language's own letters, with
  numbers spelled out in words (``num2words``, or Chinese numerals);
* ``DOMAINS``: English sentences of an application domain (``medical``
  prescriptions, ``atc`` air-traffic control), from templates with random
  fillers, numbers and codes spelled out;
* ``read_text_file``: one sentence per line, for any language espeak-ng reads.

``LANGUAGES`` is the table from a Common Voice locale to its espeak-ng voice,
its wordfreq language and its letters (:data:`xlt_plugin.tokens.ALPHABETS`,
their one owner); every locale in it goes through the same code.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import functools
import re
import statistics
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlt_plugin.extras import require
from xlt_plugin.tokens import alphabet

__all__ = [
    "LanguageSpec",
    "LANGUAGES",
    "DOMAINS",
    "supported_locales",
    "get_language",
    "chinese_numeral",
    "spell_number",
    "build_vocabulary",
    "SentenceGenerator",
    "domain_sentence",
    "read_text_file",
]


@dataclass(frozen=True)
class LanguageSpec:
    """How to make and speak sentences of one Common Voice locale.

    Arguments
    ---------
    locale : str
        Common Voice locale code (``"es"``, ``"zh-HK"``).
    name : str
        English name of the language.
    voice : str
        espeak-ng voice name (``"es"``, ``"yue"``).
    wordfreq : str
        wordfreq language code of the word list.
    letters : str
        Every lowercase letter (and combining mark) a word may contain.
    inner : str
        Characters allowed inside a word but not at its ends (apostrophe,
        Catalan middle dot).
    numbers : str or None
        ``num2words`` language code, ``"zh"`` for Chinese numerals, or None
        where no speller exists (then sentences hold no numbers).
    opencc : str or None
        OpenCC conversion applied to words (``"s2hk"``: Simplified to Hong
        Kong Traditional).
    spaces : bool
        Whether words are separated by spaces (False for Chinese).
    punctuation : tuple of str
        Full stop, question mark, exclamation mark, comma.
    """

    locale: str
    name: str
    voice: str
    wordfreq: str
    letters: str
    inner: str = ""
    numbers: str | None = None
    opencc: str | None = None
    spaces: bool = True
    punctuation: tuple[str, str, str, str] = (".", "?", "!", ",")

    @property
    def latin(self) -> bool:
        """Whether the language is written in the Latin alphabet."""
        return "a" in self.letters and "z" in self.letters


_ZH_PUNCT = ("。", "？", "！", "，")
_AR_PUNCT = (".", "؟", "!", "،")
_IN_PUNCT = ("।", "?", "!", ",")


def _spec(locale: str, name: str, voice: str, wordfreq: str, *rest, **kw):
    """A LanguageSpec with the language's letters from :mod:`xlt_plugin.tokens`."""
    return LanguageSpec(locale, name, voice, wordfreq, alphabet(locale), *rest, **kw)


_SPECS = [
    _spec("en", "English", "en-us", "en", "'", "en"),
    _spec("de", "German", "de", "de", "", "de"),
    _spec("es", "Spanish", "es", "es", "", "es"),
    _spec("fr", "French", "fr", "fr", "'", "fr"),
    _spec("it", "Italian", "it", "it", "'", "it"),
    _spec("pt", "Portuguese", "pt-br", "pt", "", "pt"),
    _spec("nl", "Dutch", "nl", "nl", "'", "nl"),
    _spec("pl", "Polish", "pl", "pl", "", "pl"),
    _spec("ca", "Catalan", "ca", "ca", "'·", "ca"),
    _spec("cs", "Czech", "cs", "cs", "", "cs"),
    _spec("sk", "Slovak", "sk", "sk", "", "sk"),
    _spec("sl", "Slovenian", "sl", "sl", "", "sl"),
    _spec("hu", "Hungarian", "hu", "hu", "", "hu"),
    _spec("fi", "Finnish", "fi", "fi", "", "fi"),
    _spec("sv-SE", "Swedish", "sv", "sv", "", "sv"),
    _spec("da", "Danish", "da", "da", "", "da"),
    _spec("ro", "Romanian", "ro", "ro", "", "ro"),
    _spec("lv", "Latvian", "lv", "lv", "", "lv"),
    _spec("lt", "Lithuanian", "lt", "lt", "", "lt"),
    _spec("tr", "Turkish", "tr", "tr", "'", "tr"),
    _spec("id", "Indonesian", "id", "id", "", "id"),
    _spec("is", "Icelandic", "is", "is", "", "is"),
    _spec("vi", "Vietnamese", "vi", "vi", "", "vi"),
    _spec("ru", "Russian", "ru", "ru", "", "ru"),
    _spec("uk", "Ukrainian", "uk", "uk", "'", "uk"),
    _spec("bg", "Bulgarian", "bg", "bg"),
    _spec("mk", "Macedonian", "mk", "mk"),
    _spec("el", "Greek", "el", "el"),
    _spec("ar", "Arabic", "ar", "ar", "", "ar", punctuation=_AR_PUNCT),
    _spec("fa", "Persian", "fa", "fa", "", "fa", punctuation=_AR_PUNCT),
    _spec("ur", "Urdu", "ur", "ur", punctuation=_AR_PUNCT),
    _spec("he", "Hebrew", "he", "he", "", "he"),
    _spec("hi", "Hindi", "hi", "hi", punctuation=_IN_PUNCT),
    _spec("bn", "Bengali", "bn", "bn", "", "bn", punctuation=_IN_PUNCT),
    _spec("ta", "Tamil", "ta", "ta"),
    _spec("ko", "Korean", "ko", "ko", "", "ko"),
    _spec("zh-CN", "Chinese (China)", "cmn", "zh", "", "zh", None, False, _ZH_PUNCT),
    _spec("zh-TW", "Chinese (Taiwan)", "cmn", "zh", "", "zh", "s2tw", False, _ZH_PUNCT),
    _spec(
        "zh-HK", "Chinese (Hong Kong)", "yue", "zh", "", "zh", "s2hk", False, _ZH_PUNCT
    ),
    _spec("yue", "Cantonese", "yue", "zh", "", "zh", "s2hk", False, _ZH_PUNCT),
]

#: Common Voice locale -> LanguageSpec, for every locale that both espeak-ng
#: and wordfreq cover (Japanese is left out: espeak-ng reads kana only).
LANGUAGES: dict[str, LanguageSpec] = {spec.locale: spec for spec in _SPECS}


def supported_locales() -> list[str]:
    """Return the Common Voice locales sentences can be generated for.

    Returns
    -------
    list of str
        Locale codes, sorted.

    Example
    -------
    >>> {"en", "de", "es", "ru", "zh-CN", "zh-HK"} <= set(supported_locales())
    True
    """
    return sorted(LANGUAGES)


def get_language(locale: str) -> LanguageSpec:
    """Return the spec of a Common Voice locale.

    Arguments
    ---------
    locale : str
        Common Voice locale code.

    Returns
    -------
    LanguageSpec
        Its voice, word list and letters.

    Raises
    ------
    ValueError
        For an unknown locale; the message lists the supported ones.

    Example
    -------
    >>> get_language("zh-HK").voice
    'yue'
    """
    if locale not in LANGUAGES:
        raise ValueError(
            f"unknown locale {locale!r}; supported locales: "
            f"{', '.join(supported_locales())} (or pass --text FILE with "
            "--voice VOICE for any other espeak-ng language)"
        )
    return LANGUAGES[locale]


_ZH_DIGITS = "零一二三四五六七八九"


def _chinese_below_10000(n: int) -> str:
    out, gap = "", False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            # An inner run of zeros is read as one 零 (一千零五).
            out += ("零" if gap else "") + _ZH_DIGITS[digit] + unit
            gap = False
        elif out:
            gap = True
    return out


def chinese_numeral(n: int) -> str:
    """Write a non-negative integer below 10^8 in Chinese numerals.

    Arguments
    ---------
    n : int
        The number.

    Returns
    -------
    str
        Its reading, e.g. ``一千零五`` for 1005.

    Example
    -------
    >>> [chinese_numeral(n) for n in (0, 10, 15, 105, 1005, 20300)]
    ['零', '十', '十五', '一百零五', '一千零五', '二万零三百']
    """
    if not 0 <= n < 10**8:
        raise ValueError(f"chinese_numeral supports 0 <= n < 10**8, got {n}")
    if n == 0:
        return _ZH_DIGITS[0]
    high, low = divmod(n, 10000)
    out = _chinese_below_10000(high) + "万" if high else ""
    if low:
        out += ("零" if high and low < 1000 else "") + _chinese_below_10000(low)
    # 十五, not 一十五, at the start of a number.
    return out[1:] if out.startswith("一十") else out


def _allowed(word: str, spec: LanguageSpec) -> bool:
    if not word:
        return False
    if word[0] not in spec.letters or word[-1] not in spec.letters:
        return False
    return all(ch in spec.letters or ch in spec.inner for ch in word)


def spell_number(n: int, spec: LanguageSpec) -> str | None:
    """Spell a number in words of a language, as Common Voice sentences do.

    Arguments
    ---------
    n : int
        A non-negative integer.
    spec : LanguageSpec
        The language.

    Returns
    -------
    str or None
        The words (lowercase, hyphens and commas turned into spaces), or
        None when the language has no speller or the speller used letters
        outside the language's set.

    Example
    -------
    >>> spell_number(1234, get_language("en"))
    'one thousand two hundred and thirty four'
    >>> spell_number(25, get_language("zh-HK"))
    '二十五'
    """
    if spec.numbers is None:
        return None
    if spec.numbers == "zh":
        text = chinese_numeral(n)
    else:
        from num2words import num2words

        text = num2words(n, lang=spec.numbers)
    text = unicodedata.normalize("NFC", text.lower())
    words = text.replace("-", " ").replace(",", " ").split()
    if not words or not all(_allowed(w, spec) for w in words):
        return None
    return (" " if spec.spaces else "").join(words)


# Roman numerals (ii, xiv) are read as letters; Common Voice spells them out.
_ROMAN = re.compile(r"^(x{0,3})(ix|iv|v?i{0,3})$")

_RO_COMMA = str.maketrans("şţ", "șț")

# Pure English words, used to measure how much English a word list holds.
_ENGLISH_PROBES = ("the", "and", "of", "you", "with", "this", "that", "what")


@functools.cache
def build_vocabulary(locale: str, size: int = 3000) -> tuple[str, ...]:
    """The ``size`` most frequent clean words of a language, most frequent first.

    Words are kept when made of the language's letters only (wordfreq lists
    hold stray symbols, digits and abbreviations). Single letters are kept
    only among the top 60 words (``y``, ``в``: real words; ``f``: a stray
    letter), and not when they are elided consonants (French ``l``); Roman
    numerals go too. For non-English Latin languages, English words are dropped:
    a word list holds English in proportion to English frequencies, so a
    word whose frequency is less than 5 times that English share (``the``
    in German) is English, while ``die`` in German is far above it.

    Arguments
    ---------
    locale : str
        Common Voice locale.
    size : int
        Number of words.

    Returns
    -------
    tuple of str
        The words, in the language's script (converted by OpenCC if set).

    Example
    -------
    >>> words = build_vocabulary("de", 500)
    >>> len(words), "die" in words, "the" in words
    (500, True, False)
    """
    wordfreq = require("wordfreq", "the word lists of the embedded corpus")
    spec = get_language(locale)
    converter = None
    if spec.opencc:
        opencc = require("opencc", f"{spec.name} text (Traditional characters)")
        converter = opencc.OpenCC(spec.opencc)
    english_share = None
    if spec.latin and spec.wordfreq != "en":
        english_share = statistics.median(
            wordfreq.word_frequency(w, spec.wordfreq) / wordfreq.word_frequency(w, "en")
            for w in _ENGLISH_PROBES
        )
    english_top = set(wordfreq.top_n_list("en", 5000)) if english_share else set()
    words: list[str] = []
    seen: set[str] = set()
    candidates = wordfreq.top_n_list(spec.wordfreq, max(4 * size, 2000))
    for rank, word in enumerate(candidates):
        word = unicodedata.normalize("NFC", word)
        if spec.locale == "el" and word.endswith("σ"):
            # wordfreq case-folds Greek final sigma to σ.
            word = word[:-1] + "ς"
        if spec.locale == "ro":
            # Romanian s and t take a comma below; old texts use a cedilla.
            word = word.translate(_RO_COMMA)
        if converter is not None:
            word = converter.convert(word)
        if word in seen or not _allowed(word, spec):
            continue
        if spec.spaces and len(word) == 1 and rank >= 60:
            continue
        if "'" in spec.inner and len(word) == 1 and word not in "aàeèéiìoòuùy":
            # A consonant alone is the rest of an elision (l' in l'homme).
            continue
        if spec.latin and len(word) > 1 and _ROMAN.match(word) and rank >= 100:
            continue
        if english_share and word.isascii() and word in english_top:
            share = wordfreq.word_frequency(word, spec.wordfreq)
            if share < 5 * english_share * wordfreq.word_frequency(word, "en"):
                continue
        seen.add(word)
        words.append(word)
        if len(words) == size:
            break
    if len(words) < min(size, 200):
        raise ValueError(
            f"wordfreq has only {len(words)} clean words for {locale!r}; "
            "check its letter set in xlt_plugin.synth.texts.LANGUAGES"
        )
    return tuple(words)


def _capitalize(text: str, locale: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            upper = "İ" if (ch == "i" and locale == "tr") else ch.upper()
            # Some letters (ß) have no single-letter capital: leave them.
            return text[:i] + upper + text[i + 1 :] if len(upper) == 1 else text
    return text


class SentenceGenerator:
    """Random Common Voice-like sentences of real words of one language.

    Words are drawn with Zipf-like weights over the vocabulary (common words
    often, rare words sometimes); one sentence in five holds a number spelled
    out in words. Sentences have 4-10 words (Chinese: 4-12 characters), a
    capital letter where the script has case, maybe a comma, and final
    punctuation.

    Arguments
    ---------
    locale : str
        Common Voice locale (see ``supported_locales()``).
    vocab_size : int
        How many of the most frequent words to use.

    Example
    -------
    >>> gen = SentenceGenerator("es", vocab_size=500)
    >>> text = gen.sentence(np.random.default_rng(0))
    >>> text[0].isupper() or text[0] in "¿¡", text[-1] in ".?!"
    (True, True)
    >>> text == gen.sentence(np.random.default_rng(0))
    True
    """

    def __init__(self, locale: str, vocab_size: int = 3000):
        self.spec = get_language(locale)
        self.words = build_vocabulary(locale, vocab_size)
        weights = 1.0 / (np.arange(len(self.words)) + 10.0) ** 0.7
        self.probs = weights / weights.sum()

    def _number(self, rng: np.random.Generator) -> str | None:
        kind = rng.random()
        if kind < 0.6:
            n = int(rng.integers(0, 100))
        elif kind < 0.9:
            n = int(rng.integers(100, 2000))
        else:
            n = int(rng.integers(1900, 2031))
        return spell_number(n, self.spec)

    def _words(self, rng: np.random.Generator) -> list[str]:
        picks = rng.choice(len(self.words), size=40, p=self.probs)
        pool = [self.words[i] for i in picks]
        number = self._number(rng) if rng.random() < 0.2 else None
        if self.spec.spaces:
            # 4-10 words, those of the number included.
            count = int(rng.integers(4, 11))
            size = len(number.split()) if number else 0
            if not 0 < size <= count - 2:
                return pool[:count]
            words = pool[: count - size]
            words.insert(int(rng.integers(0, len(words) + 1)), number)
            return words
        # Chinese: 4-12 characters, whole words only, the number included.
        target = int(rng.integers(4, 13))
        words = [number] if number is not None and len(number) <= 8 else []
        length = sum(len(w) for w in words)
        for word in pool:
            if length >= target:
                break
            if length + len(word) <= 12:
                words.append(word)
                length += len(word)
        if length < 4:
            words.append(min(pool, key=len))
        if words and words[0] == number:
            words.insert(int(rng.integers(0, len(words))), words.pop(0))
        return words

    def sentence(self, rng: np.random.Generator) -> str:
        """Return one sentence.

        Arguments
        ---------
        rng : numpy.random.Generator
            Source of every random choice.

        Returns
        -------
        str
            The sentence.
        """
        spec = self.spec
        stop, question, exclaim, comma = spec.punctuation
        words = self._words(rng)
        if len(words) >= 5 and rng.random() < 0.3:
            at = int(rng.integers(1, len(words) - 2))
            words[at] += comma
        text = (" " if spec.spaces else "").join(words)
        kind = rng.random()
        if kind < 0.1:
            text = ("¿" if spec.locale == "es" else "") + text + question
        elif kind < 0.15:
            text = ("¡" if spec.locale == "es" else "") + text + exclaim
        else:
            text += stop
        if spec.locale == "en":
            text = " ".join(
                "I" + w[1:] if w == "i" or w.startswith("i'") else w
                for w in text.split(" ")
            )
        return _capitalize(text, spec.locale)


# ---------------------------------------------------------------- domains

_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
# Air-traffic control reads 9 as "niner" so it is not mistaken for "nein".
_ATC_DIGITS = _DIGIT_WORDS[:9] + ["niner"]
_PHONETIC = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "x-ray yankee zulu"
).split()


def _cardinal(n: int) -> str:
    return spell_number(n, LANGUAGES["en"]) or ""


def _digits(value: int, width: int, atc: bool = True) -> str:
    table = _ATC_DIGITS if atc else _DIGIT_WORDS
    return " ".join(table[int(d)] for d in str(value).zfill(width))


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(0, len(options)))]


_DRUGS = (
    "amoxicillin ibuprofen paracetamol metformin lisinopril atorvastatin "
    "omeprazole amlodipine prednisone azithromycin warfarin morphine ceftriaxone "
    "furosemide heparin salbutamol levothyroxine simvastatin clopidogrel "
    "doxycycline ondansetron gabapentin sertraline tramadol"
).split()
_FORMS = ["tablet", "capsule", "drop", "puff", "sachet"]
_FREQUENCY = [
    "once daily",
    "twice daily",
    "three times daily",
    "four times daily",
    "every eight hours",
    "every twelve hours",
    "at bedtime",
    "before meals",
    "after meals",
    "as needed for pain",
]
_ROUTES = ["orally", "intravenously", "intramuscularly", "subcutaneously"]
_SYMPTOMS = [
    "chest pain",
    "shortness of breath",
    "a persistent cough",
    "nausea and vomiting",
    "dizziness",
    "a mild fever",
    "abdominal pain",
    "a severe headache",
    "joint swelling",
    "blurred vision",
]
_LAB_TESTS = [
    "potassium level",
    "blood glucose",
    "hemoglobin",
    "creatinine",
    "white cell count",
    "liver enzymes",
    "troponin",
    "sodium level",
]


def _units(rng: np.random.Generator) -> str:
    count, form = int(rng.integers(1, 4)), _pick(rng, _FORMS)
    return f"{_cardinal(count)} {form}{'s' if count > 1 else ''}"


def _medical(rng: np.random.Generator) -> str:
    drug = _pick(rng, _DRUGS)
    dose = _cardinal(int(rng.choice([5, 10, 20, 25, 40, 50, 100, 250, 500, 875])))
    templates = [
        lambda: (
            f"take {_units(rng)} of {drug} {dose} milligrams {_pick(rng, _FREQUENCY)}"
        ),
        lambda: (
            f"prescribe {drug} {dose} milligrams {_pick(rng, _ROUTES)} "
            f"{_pick(rng, _FREQUENCY)} for {_cardinal(int(rng.integers(3, 15)))} days"
        ),
        lambda: (
            "the patient has a blood pressure of "
            f"{_cardinal(int(rng.integers(90, 181)))} over "
            f"{_cardinal(int(rng.integers(50, 111)))}"
        ),
        lambda: (
            f"heart rate is {_cardinal(int(rng.integers(45, 141)))} beats per "
            f"minute, oxygen saturation {_cardinal(int(rng.integers(85, 101)))} percent"
        ),
        lambda: (
            f"the patient reports {_pick(rng, _SYMPTOMS)} for the last "
            f"{_cardinal(int(rng.integers(2, 15)))} days"
        ),
        lambda: (
            f"check the {_pick(rng, _LAB_TESTS)} again in "
            f"{_cardinal(int(rng.choice([2, 4, 6, 12, 24])))} hours"
        ),
        lambda: f"administer {dose} micrograms of {drug} {_pick(rng, _ROUTES)}",
        lambda: (
            f"stop {drug} and start {_pick(rng, _DRUGS)} {dose} milligrams "
            f"{_pick(rng, _FREQUENCY)}"
        ),
        lambda: (
            f"temperature is {_cardinal(int(rng.integers(35, 41)))} point "
            f"{_DIGIT_WORDS[int(rng.integers(0, 10))]} degrees"
        ),
    ]
    return templates[int(rng.integers(0, len(templates)))]()


_AIRLINES = [
    "Speedbird",
    "Lufthansa",
    "Ryanair",
    "Shamrock",
    "Easy",
    "Delta",
    "United",
    "American",
    "Cactus",
    "Air France",
    "Swiss",
    "Iberia",
    "Qantas",
    "Emirates",
    "Cathay",
    "Finnair",
    "Scandinavian",
]
_FACILITIES = ["approach", "tower", "ground", "departure", "center", "radar"]


def _callsign(rng: np.random.Generator) -> str:
    if rng.random() < 0.75:
        number = int(rng.integers(1, 10000))
        return f"{_pick(rng, _AIRLINES)} {_digits(number, 1)}"
    # A registration read in the phonetic alphabet, e.g. November one two alpha.
    letters = " ".join(_pick(rng, _PHONETIC) for _ in range(2))
    return f"November {_digits(int(rng.integers(1, 1000)), 1)} {letters}"


def _runway(rng: np.random.Generator) -> str:
    side = _pick(rng, ["", " left", " right", " center"])
    return _digits(int(rng.integers(1, 37)), 2) + side


def _frequency(rng: np.random.Generator) -> str:
    mhz = int(rng.integers(118, 137))
    khz = int(rng.choice([0, 5, 1, 2, 25, 3, 35, 4, 45, 5, 6, 65, 7, 75, 8, 9]))
    return f"{_digits(mhz, 3)} decimal {_digits(khz, 1)}"


def _atc(rng: np.random.Generator) -> str:
    cs = _callsign(rng)
    flight_level = _digits(int(rng.integers(10, 42)) * 10, 3)
    templates = [
        lambda: (
            f"{cs}, descend flight level {flight_level}, contact "
            f"{_pick(rng, _FACILITIES)} {_frequency(rng)}"
        ),
        lambda: f"{cs}, climb flight level {flight_level}",
        lambda: (
            f"{cs}, climb and maintain {_cardinal(int(rng.integers(2, 13)))} "
            "thousand feet"
        ),
        lambda: (
            f"{cs}, turn {_pick(rng, ['left', 'right'])} heading "
            f"{_digits(int(rng.integers(1, 37)) * 10, 3)}, reduce speed "
            f"{_digits(int(rng.integers(16, 26)) * 10, 3)} knots"
        ),
        lambda: (
            f"{cs}, wind {_digits(int(rng.integers(1, 37)) * 10, 3)} degrees "
            f"{_cardinal(int(rng.integers(2, 30)))} knots, runway {_runway(rng)}, "
            "cleared to land"
        ),
        lambda: f"{cs}, runway {_runway(rng)}, cleared for takeoff",
        lambda: (
            f"{cs}, squawk "
            + " ".join(_ATC_DIGITS[int(d)] for d in rng.integers(0, 8, size=4))
        ),
        lambda: (
            f"{cs}, hold short of runway {_runway(rng)}, taxi via "
            f"{_pick(rng, _PHONETIC)} {_digits(int(rng.integers(1, 10)), 1)}"
        ),
        lambda: f"{cs}, contact {_pick(rng, _FACILITIES)} {_frequency(rng)}, good day",
        lambda: (
            f"{cs}, QNH one zero {_digits(int(rng.integers(0, 30)), 2)}, "
            f"descend altitude {_cardinal(int(rng.integers(2, 9)))} thousand feet"
        ),
    ]
    return templates[int(rng.integers(0, len(templates)))]()


#: Application domains (English): name -> sentence maker taking a numpy RNG.
DOMAINS: dict[str, Callable[[np.random.Generator], str]] = {
    "medical": _medical,
    "atc": _atc,
}


def domain_sentence(domain: str, rng: np.random.Generator) -> str:
    """Return one English sentence of an application domain.

    Arguments
    ---------
    domain : str
        A key of ``DOMAINS``.
    rng : numpy.random.Generator
        Source of every random choice.

    Returns
    -------
    str
        The sentence, capitalised, with final punctuation and no digits.

    Example
    -------
    >>> text = domain_sentence("atc", np.random.default_rng(3))
    >>> text[0].isupper(), text.endswith("."), any(c.isdigit() for c in text)
    (True, True, False)
    """
    if domain not in DOMAINS:
        raise ValueError(
            f"unknown domain {domain!r}; known domains: {', '.join(sorted(DOMAINS))}"
        )
    text = DOMAINS[domain](rng).replace("x-ray", "x ray")
    return _capitalize(text, "en") + "."


def read_text_file(path: str | Path) -> list[str]:
    """Read sentences from a UTF-8 file, one per line, blank lines skipped.

    Arguments
    ---------
    path : str or Path
        The file.

    Returns
    -------
    list of str
        The sentences, stripped, in file order.

    Raises
    ------
    ValueError
        If the file is missing, unreadable, not UTF-8 or holds no sentence.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = os.path.join(tmp, "s.txt")
    ...     _ = open(p, "w", encoding="utf-8").write("Hola.\\n\\n  Adiós. \\n")
    ...     read_text_file(p)
    ['Hola.', 'Adiós.']
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"text file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"text file {path} is not UTF-8 (byte {err.start}); re-save it as UTF-8"
        ) from None
    except OSError as err:
        raise ValueError(f"cannot read text file {path}: {err.strerror}") from None
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    sentences = [line for line in lines if line]
    if not sentences:
        raise ValueError(f"text file {path} holds no sentence (one per line)")
    return sentences
