"""Shallow fusion of a word n-gram LM (and hotwords) into CTC beam search.

:class:`FusionScorer` scores finished and unfinished words for SpeechBrain's
``CTCPrefixBeamSearcher`` (the pure-Python decoder) and, wrapped as a
flashlight LM, for the compiled decoder in :mod:`xlt_plugin.decode.flashlight`:
one formula for both. The LM is an ARPA file read in pure Python, or through
``kenlm`` (ARPA or binary) when it is installed.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["FusionScorer", "lm_words"]

#: SentencePiece's word-start mark; it becomes a space in text.
_SPM_SPACE = "\u2581"
_LOG10_E = math.log10(math.e)


def _tokens_to_text(pieces: Iterable[str]) -> str:
    text = "".join(pieces).replace(_SPM_SPACE, " ")
    return " ".join(text.split())


class _ArpaBackend:
    """Word scores from an :class:`xlt_plugin.decode.lm.ArpaLM` (pure Python)."""

    def __init__(self, lm):
        self.lm = lm
        self.order = lm.order
        self.words = {w for w in lm.vocabulary if w not in ("</s>", "<unk>")}

    def start(self, boundary: bool):
        return ("<s>",) if boundary else ()

    def __contains__(self, word: str) -> bool:
        return word in self.lm

    def score(self, state, word: str):
        log10 = self.lm.log10_prob(word, state)
        keep = self.order - 1
        return log10, ((*state, word)[-keep:] if keep else ())


class _KenlmBackend:
    """Word scores from a ``kenlm.Model`` (C++; ARPA or binary)."""

    def __init__(self, path: str, words: set[str]):
        import kenlm

        self.kenlm = kenlm
        config = kenlm.Config()
        config.show_progress = False  # its progress bar would mix into our output
        self.model = kenlm.Model(path, config)
        self.order = self.model.order
        self.words = {w for w in words if w in self.model}

    def start(self, boundary: bool):
        state = self.kenlm.State()
        if boundary:
            self.model.BeginSentenceWrite(state)
        else:
            self.model.NullContextWrite(state)
        return state

    def __contains__(self, word: str) -> bool:
        return word in self.model

    def score(self, state, word: str):
        out = self.kenlm.State()
        return self.model.BaseScore(state, word, out), out


def _arpa_unigrams(path: str) -> set[str]:
    words = set()
    with open(path, encoding="utf-8") as f:
        inside = False
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and line.startswith("\\"):
                break
            elif inside and line:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in ("<s>", "</s>", "<unk>"):
                    words.add(parts[1])
    return words


def _load_backend(lm: Any, backend: str):
    from xlt_plugin.decode.lm import ArpaLM

    if isinstance(lm, ArpaLM):
        return _ArpaBackend(lm)
    path = str(lm)
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"language model {path} does not exist; build one with `xlt lm "
            "--text SENTENCES.txt --order 3 --out lm.arpa`"
        )
    is_arpa = not path.endswith((".bin", ".binary", ".klm"))
    if backend == "auto":
        try:
            import kenlm  # noqa: F401

            backend = "kenlm"
        except ImportError:
            backend = "python"
    if backend == "kenlm":
        words = _arpa_unigrams(path) if is_arpa else set()
        return _KenlmBackend(path, words)
    if backend != "python":
        raise ValueError(f"lm backend must be auto, kenlm or python, not {backend!r}")
    if not is_arpa:
        raise ValueError(
            f"{path} looks like a KenLM binary: reading it needs the kenlm package "
            "(pip install kenlm), or give the ARPA file instead"
        )
    return _ArpaBackend(ArpaLM.read(path))


class FusionScorer:
    """Word-level scores for SpeechBrain's CTC beam searchers: LM and hotwords.

    The interface of ``speechbrain.integrations.decoders.kenlm_scorer.
    KenlmScorer`` (and pyctcdecode's), with the same formula: a finished word
    scores ``lm_weight * ln p(word | history) + word_bonus`` (plus ``ln
    p(</s>)`` after the last word), with ``unk_offset`` (log10 units) added for
    words outside the LM's vocabulary; an unfinished word is penalised by
    ``unk_offset`` once it can no longer become a known word. A hotword gets
    ``hotword_weight`` when finished and a share of it while its prefix is
    being spelled, so beams heading for it survive pruning.

    Arguments
    ---------
    lm : path, ArpaLM or None
        An ARPA file (or KenLM binary), a loaded :class:`xlt_plugin.decode.lm.ArpaLM`,
        or None (hotwords only).
    lm_weight : float
        Weight of the LM log-probability (alpha).
    word_bonus : float
        Added per word (beta), against the LM's preference for short outputs.
    unk_offset : float
        Added (log10 units) to the LM score of an out-of-vocabulary word.
    hotwords : iterable of str
        Words to favour (phrases are split into words).
    hotword_weight : float
        Bonus (natural log units) of a finished hotword.
    backend : str
        ``auto`` (kenlm when installed, else Python), ``kenlm`` or ``python``.

    Example
    -------
    >>> from xlt_plugin.decode.lm import estimate_kneser_ney
    >>> lm = estimate_kneser_ney(["the heart rate", "the heart beat"], order=2)
    >>> scorer = FusionScorer(lm, lm_weight=1.0, word_bonus=0.0)
    >>> state = scorer.get_start_state()
    >>> known, state = scorer.score(state, "the")
    >>> unknown, _ = scorer.score(state, "hart")
    >>> known > unknown, scorer.score_partial_token("hea"), scorer.order
    (True, 0.0, 2)
    """

    def __init__(
        self,
        lm: Any = None,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        unk_offset: float = -10.0,
        hotwords: Iterable[str] = (),
        hotword_weight: float = 10.0,
        backend: str = "auto",
    ):
        self.backend = None if lm is None else _load_backend(lm, backend)
        self.alpha = float(lm_weight)
        self.beta = float(word_bonus)
        self.unk_offset = float(unk_offset)
        self.hotwords = {w for phrase in hotwords for w in str(phrase).split()}
        self.hotword_weight = float(hotword_weight)
        words = set(self.backend.words) if self.backend else set()
        self._prefixes = {w[:i] for w in words | self.hotwords for i in range(len(w))}
        self._hot_prefix: dict[str, int] = {}
        for word in self.hotwords:
            for i in range(1, len(word)):
                best = self._hot_prefix.get(word[:i], len(word))
                self._hot_prefix[word[:i]] = min(best, len(word))

    @property
    def order(self) -> int:
        """Order of the n-gram model (1 without one)."""
        return self.backend.order if self.backend else 1

    def get_start_state(self):
        """LM state at a sentence start."""
        return self.backend.start(True) if self.backend else None

    def score_partial_token(self, partial: str) -> float:
        """Score of an unfinished word (replaced once the word is finished)."""
        bonus = 0.0
        if partial in self._hot_prefix:
            share = min(1.0, len(partial) / self._hot_prefix[partial])
            bonus = self.hotword_weight * share
        if self.backend is None or not self.backend.words:
            return bonus  # no word list (a KenLM binary): nothing to judge by
        if partial in self._prefixes:
            return bonus
        if partial in self.backend.words or partial in self.hotwords:
            return bonus
        penalty = self.unk_offset
        if len(partial) > 6:  # as pyctcdecode: long unknown strings cost more
            penalty *= len(partial) / 6
        return penalty + bonus

    def score(self, prev_state, word: str, is_last_word: bool = False):
        """Score of a finished ``word`` after ``prev_state``; the new state."""
        bonus = self.hotword_weight if word in self.hotwords else 0.0
        if self.backend is None:
            return bonus, prev_state
        if not word:  # the end of a beam that closed its last word already
            if not is_last_word:
                return 0.0, prev_state
            end, _ = self.backend.score(prev_state, "</s>")
            return self.alpha * end / _LOG10_E, prev_state
        log10, state = self.backend.score(prev_state, word)
        unknown = word not in self.backend or (
            self.backend.words and word not in self.backend.words
        )
        if unknown and not bonus:  # hotwords are often names the LM never saw
            log10 += self.unk_offset
        if is_last_word:
            end, _ = self.backend.score(state, "</s>")
            log10 += end
        return self.alpha * log10 / _LOG10_E + self.beta + bonus, state


def lm_words(lm: Any) -> set[str]:
    """The words of an n-gram model, without sentence markers and ``<unk>``.

    Arguments
    ---------
    lm : path or ArpaLM
        An ARPA file or a loaded model. A KenLM binary has no readable word
        list: its set is empty.

    Returns
    -------
    set of str

    Example
    -------
    >>> from xlt_plugin.decode.lm import estimate_kneser_ney
    >>> sorted(lm_words(estimate_kneser_ney(["a cat", "the cat"], order=2)))
    ['a', 'cat', 'the']
    """
    from xlt_plugin.decode.lm import ArpaLM

    if isinstance(lm, ArpaLM):
        return {w for w in lm.vocabulary if w not in ("<s>", "</s>", "<unk>")}
    path = str(lm)
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"language model {path} does not exist; build one with `xlt lm "
            "--text SENTENCES.txt --order 3 --out lm.arpa`"
        )
    if path.endswith((".bin", ".binary", ".klm")):
        return set()
    return _arpa_unigrams(path)
