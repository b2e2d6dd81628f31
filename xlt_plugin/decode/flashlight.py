"""Compiled CTC beam search: flashlight-text's decoder, through torchaudio.

``torchaudio.models.decoder.ctc_decoder`` wraps flashlight's C++ beam search
(package ``flashlight-text``, extra ``[lm]``). :class:`FlashlightBeamSearch`
runs it with the plugin's conventions, so that ``CTCDecoder(decoder=
"flashlight")`` and the pure-Python decoder (SpeechBrain's prefix beam search)
are interchangeable:

Without an LM
    Lexicon-free search over the model's tokens (characters or SentencePiece
    pieces). Hypotheses are merged by prefix with log-add, as prefix beam search
    sums the probability of every alignment of a prefix. Hotwords are scored
    token by token (a share of the bonus while a hotword is being spelled, all
    of it once finished), the only part that runs in Python.

With a word n-gram LM
    Lexicon search: the words of the ARPA file (and the hotwords) are spelled
    with the model's characters in a trie, each word ending with the space
    token. The LM is consulted once per finished word, so a hypothesis can only
    spell words of that list (closed vocabulary; the Python decoder can also
    spell an unknown word, at ``unk_offset``). An extra frame where only the
    space token is possible is appended to each utterance so that its last word
    is finished and scored like the others. The fused score is
    :class:`~xlt_plugin.decode.fusion.FusionScorer`'s: ``lm_weight * ln p(word
    | history) + word_bonus`` per word, ``ln p(</s>)`` at the end, plus
    ``hotword_weight`` for a hotword. Without hotwords the LM runs in
    flashlight's own KenLM (C++); with hotwords (or an in-memory ``ArpaLM``)
    the ``FusionScorer`` itself is called at each word end.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from xlt_plugin.decode.fusion import (
    _SPM_SPACE,
    FusionScorer,
    _tokens_to_text,
    lm_words,
)

__all__ = [
    "FlashlightBeamSearch",
    "FlashlightUnavailableError",
    "FlashlightUnsupportedError",
    "flashlight_available",
]

_INSTALL = "pip install 'xlt_plugin[lm]' (or pip install flashlight-text)"
#: Log-probability of the impossible tokens in the appended end frame.
_IMPOSSIBLE = -1.0e4


class FlashlightUnavailableError(ImportError):
    """flashlight-text (torchaudio's compiled CTC decoder) is not installed."""


class FlashlightUnsupportedError(ValueError):
    """The compiled decoder cannot run this setup (the Python one can)."""


def _load_torchaudio_decoder():
    try:
        from torchaudio.models import decoder as ta_decoder

        return ta_decoder.ctc_decoder, ta_decoder.CTCDecoderLM, ta_decoder
    except (ImportError, RuntimeError, OSError) as err:
        # torchaudio raises ImportError("CTC Decoder suit requires
        # flashlight-text...") from a module __getattr__ when it is missing.
        raise FlashlightUnavailableError(
            f"the compiled beam decoder needs flashlight-text ({err}); {_INSTALL}"
        ) from err


def flashlight_available() -> bool:
    """Whether torchaudio's flashlight CTC decoder can be imported.

    Example
    -------
    >>> isinstance(flashlight_available(), bool)
    True
    """
    try:
        _load_torchaudio_decoder()
    except FlashlightUnavailableError:
        return False
    return True


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr (KenLM prints a progress bar while loading)."""
    try:
        fd = os.dup(2)
    except OSError:  # no usable stderr: nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _hotword_lm_class(base):
    """A token-level flashlight LM that gives hotword bonuses (no word LM).

    Lexicon-free search asks it about every new token: it follows the word
    being spelled and returns the change of :class:`FusionScorer`'s hotword
    score (a share while a hotword's prefix is spelled, the full bonus once
    the word is finished, and the share taken back otherwise).
    """

    class HotwordLM(base):
        """Hotword scores of a :class:`FusionScorer`, per token."""

        def __init__(self, scorer: FusionScorer, tokens: Sequence[str]):
            base.__init__(self)
            self.scorer = scorer
            self.tokens = list(tokens)
            self.states: dict = {}  # flashlight state -> (partial word, its bonus)
            self.values: dict = {}

        def start(self, start_with_nothing: bool):
            from torchaudio.models.decoder import CTCDecoderLMState

            state = CTCDecoderLMState()
            self.states = {state: ("", 0.0)}
            self.values = {}
            return state

        def _finish_word(self, partial: str, bonus: float) -> float:
            if not partial:
                return -bonus
            return self.scorer.score(None, partial)[0] - bonus

        def score(self, state, index: int):
            child = state.child(index)
            value = self.values.get(child)
            if value is not None:
                return child, value
            partial, bonus = self.states[state]
            token = self.tokens[index].replace(_SPM_SPACE, " ")
            value = 0.0
            if token.startswith(" "):  # a space or a word-initial piece
                value += self._finish_word(partial, bonus)
                partial, bonus = "", 0.0
            partial += token.strip()
            if partial:
                new_bonus = self.scorer.score_partial_token(partial)
                value += new_bonus - bonus
                bonus = new_bonus
            self.states[child] = (partial, bonus)
            self.values[child] = value
            return child, value

        def finish(self, state):
            partial, bonus = self.states[state]
            return state.child(-1), self._finish_word(partial, bonus)

    return HotwordLM


def _fusion_lm_class(base):
    """A flashlight LM (``CTCDecoderLM`` subclass) that asks a FusionScorer."""

    class FusionLM(base):
        """Word scores of a :class:`FusionScorer`, cached per LM state."""

        def __init__(self, scorer: FusionScorer, words: Sequence[str]):
            base.__init__(self)
            self.scorer = scorer
            self.words = list(words)
            self.states: dict = {}  # flashlight state -> scorer state
            self.values: dict = {}  # flashlight state -> score of its last word

        def start(self, start_with_nothing: bool):
            from torchaudio.models.decoder import CTCDecoderLMState

            state = CTCDecoderLMState()
            # A new utterance: the states of the previous one are dropped.
            self.states = {state: self.scorer.get_start_state()}
            self.values = {}
            return state

        def score(self, state, index: int):
            child = state.child(index)
            value = self.values.get(child)
            if value is None:
                value, after = self.scorer.score(self.states[state], self.words[index])
                self.states[child] = after
                self.values[child] = value
            return child, value

        def finish(self, state):
            value, _ = self.scorer.score(self.states[state], "", is_last_word=True)
            return state.child(-1), value

    return FusionLM


class FlashlightBeamSearch:
    """CTC beam search in C++ (flashlight-text), optionally with a word LM.

    Arguments
    ---------
    tokens : sequence of str
        The token of each output row; with an LM, single characters and a
        ``" "`` space token (words are spelled with them).
    blank_index : int
        The blank's row.
    beam : int
        Beam width (hypotheses kept per frame).
    lm : path or ArpaLM, optional
        Word n-gram model: an ARPA file (its unigrams are the vocabulary) or a
        loaded :class:`~xlt_plugin.decode.lm.ArpaLM`. A KenLM binary has no
        readable word list and is refused (give the ARPA file).
    lm_weight, word_bonus : float
        Shallow-fusion weights, natural-log units (as :class:`FusionScorer`).
    hotwords : iterable of str
        Words to favour; with an LM, added to its vocabulary when it lacks
        them.
    hotword_weight : float
        Bonus of a finished hotword.
    lm_backend : str
        ``auto`` (flashlight's KenLM for an ARPA path without hotwords, else
        the FusionScorer with kenlm when installed), ``kenlm`` or ``python``
        (FusionScorer with that backend).
    beam_threshold : float
        Hypotheses scoring this much below the best one are dropped.
    beam_size_token : int, optional
        Tokens tried per frame (the best ones); default all.
    log_add : bool
        Merge equal hypotheses by log-add (sum of alignments) rather than max.

    Raises
    ------
    FlashlightUnavailableError
        flashlight-text is not installed.
    FlashlightUnsupportedError
        The setup needs what this decoder lacks (word spelling with
        multi-character tokens, a KenLM binary's word list).
    ValueError
        The LM file cannot be read.

    Example
    -------
    >>> probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])  # blank wins each frame
    >>> FlashlightBeamSearch(["<blank>", "a"], 0, beam=4)(probs.log())  # 0.64
    'a'
    >>> tokens = ["<blank>", " ", "a", "c", "p", "t"]
    >>> rows = [[0.02, 0.02, 0.02, 0.9, 0.02, 0.02], [0.9] + [0.02] * 5,
    ...         [0.02, 0.02, 0.9, 0.02, 0.02, 0.02], [0.9] + [0.02] * 5,
    ...         [0.02, 0.02, 0.02, 0.02, 0.55, 0.4]]
    >>> cap = torch.tensor(rows).log()
    >>> FlashlightBeamSearch(tokens, 0, beam=8)(cap)
    'cap'
    >>> FlashlightBeamSearch(tokens, 0, beam=8, hotwords=["cat"])(cap)
    'cat'
    """

    def __init__(
        self,
        tokens: Sequence[str],
        blank_index: int,
        beam: int = 16,
        lm: Any = None,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        hotwords: Iterable[str] | None = None,
        hotword_weight: float = 10.0,
        lm_backend: str = "auto",
        beam_threshold: float = 50.0,
        beam_size_token: int | None = None,
        log_add: bool = True,
    ):
        ctc_decoder, lm_base, _ = _load_torchaudio_decoder()
        self.tokens = list(tokens)
        self.blank_index = int(blank_index)
        self.beam = int(beam)
        if self.beam < 1:
            raise ValueError(f"beam must be at least 1, got {beam}")
        hotwords = [w for phrase in hotwords or [] for w in str(phrase).split()]
        self.space_index = self.tokens.index(" ") if " " in self.tokens else None
        # Tokens get neutral names in flashlight's dictionary: the model's own
        # (" ", "|", "\u2581ab") need not survive its file formats.
        names = [f"#{i}" for i in range(len(self.tokens))]
        sil = self.space_index if self.space_index is not None else self.blank_index
        options = {
            "tokens": names,
            "nbest": 1,
            "beam_size": self.beam,
            "beam_size_token": beam_size_token,
            "beam_threshold": float(beam_threshold),
            "log_add": bool(log_add),
            "blank_token": names[self.blank_index],
            "sil_token": names[sil],
        }
        self.lexicon_words: list[str] = []
        self.native_lm = False  # whether flashlight's KenLM scores the words
        self._lm = None  # keeps a Python LM alive as long as the decoder
        if lm is None:  # lexicon-free: any token sequence
            if hotwords:
                scorer = FusionScorer(hotwords=hotwords, hotword_weight=hotword_weight)
                self._lm = _hotword_lm_class(lm_base)(scorer, self.tokens)
            self.decoder = ctc_decoder(
                lexicon=None,
                lm=self._lm,
                lm_weight=1.0,
                word_score=0.0,
                **options,
            )
            return
        spell = self._speller()
        words = sorted(lm_words(lm))
        if not words:
            raise FlashlightUnsupportedError(
                f"{lm}: the compiled decoder needs the LM's word list; give the "
                "ARPA file rather than a KenLM binary"
            )
        vocabulary = list(dict.fromkeys([*words, *sorted(set(hotwords))]))
        spelled = [(w, spell(w)) for w in vocabulary]
        self.lexicon_words = [w for w, s in spelled if s is not None]
        if not self.lexicon_words:
            raise FlashlightUnsupportedError(
                "no word of the LM is spelled by the model's tokens"
            )
        native = (
            lm is not None
            and not hotwords
            and lm_backend == "auto"
            and isinstance(lm, str | os.PathLike)
        )
        with tempfile.TemporaryDirectory(prefix="xlt_lexicon_") as tmp:
            lexicon = Path(tmp) / "lexicon.txt"
            lexicon.write_text(
                "".join(
                    f"{w} {' '.join(names[i] for i in s)}\n"
                    for w, s in spelled
                    if s is not None
                ),
                encoding="utf-8",
            )
            word_list = Path(tmp) / "words.txt"
            word_list.write_text(
                "".join(f"{w}\n" for w in [*self.lexicon_words, "<unk>"]),
                encoding="utf-8",
            )
            if native:
                # flashlight's KenLM returns log10 probabilities.
                try:
                    with _quiet_stderr():
                        self.decoder = ctc_decoder(
                            lexicon=str(lexicon),
                            lm=str(lm),
                            lm_dict=str(word_list),
                            lm_weight=float(lm_weight) * math.log(10.0),
                            word_score=float(word_bonus),
                            **options,
                        )
                except RuntimeError as err:  # KenLM's parse errors
                    raise ValueError(f"{lm}: cannot read the LM ({err})") from err
            else:
                scorer = FusionScorer(
                    lm,
                    lm_weight=lm_weight,
                    word_bonus=word_bonus,
                    hotwords=hotwords,
                    hotword_weight=hotword_weight,
                    backend=lm_backend,
                )
                self._lm = _fusion_lm_class(lm_base)(
                    scorer, [*self.lexicon_words, "<unk>"]
                )
                self.decoder = ctc_decoder(
                    lexicon=str(lexicon),
                    lm=self._lm,
                    lm_dict=str(word_list),
                    lm_weight=1.0,  # the scorer applies the weights itself
                    word_score=0.0,
                    **options,
                )
        self.native_lm = native

    def _speller(self):
        if self.space_index is None:
            raise FlashlightUnsupportedError(
                "an LM with the compiled decoder needs a space token "
                "(character models); this model has none"
            )
        chars = {}
        for i, token in enumerate(self.tokens):
            if len(token) == 1 and i != self.blank_index and token != " ":
                chars.setdefault(token, i)
        # Special tokens ("<blank>", "<unk>") are fine; word pieces are not.
        longer = [
            t
            for t in self.tokens
            if len(t) > 1 and not (t.startswith("<") and t.endswith(">"))
        ]
        if longer:
            raise FlashlightUnsupportedError(
                "an LM with the compiled decoder needs character "
                f"tokens, not word pieces such as {longer[:3]}"
            )

        def spell(word: str) -> list[int] | None:
            try:
                return [chars[c] for c in word] + [self.space_index]
            except KeyError:  # a character the model cannot write
                return None

        return spell

    @property
    def uses_lexicon(self) -> bool:
        """Whether hypotheses are spelled from a word list (with an LM)."""
        return bool(self.lexicon_words)

    def __call__(self, log_probs: torch.Tensor) -> str:
        """Text of one utterance from its ``[frames, tokens]`` log-probabilities."""
        return self.batch(log_probs.unsqueeze(0))[0]

    def batch(
        self, log_probs: torch.Tensor, lengths: Sequence[int] | None = None
    ) -> list[str]:
        """Texts of a padded batch ``[batch, frames, tokens]``.

        Arguments
        ---------
        log_probs : torch.Tensor
            Log-probabilities.
        lengths : sequence of int, optional
            Valid frames of each utterance (default: all).

        Returns
        -------
        list of str
        """
        log_probs = log_probs.detach().to("cpu", torch.float32)
        batch, frames, _ = log_probs.shape
        valid = [frames] * batch if lengths is None else [int(n) for n in lengths]
        if self.uses_lexicon:  # one more frame: the space that ends the last word
            end = torch.full((batch, 1, log_probs.shape[2]), _IMPOSSIBLE)
            end[:, :, self.space_index] = 0.0
            padded = torch.cat([log_probs, end], dim=1)
            for b, n in enumerate(valid):
                padded[b, n] = end[b, 0]
            log_probs, valid = padded, [n + 1 for n in valid]
        log_probs = log_probs.contiguous()
        results = self.decoder(log_probs, torch.tensor(valid, dtype=torch.int32))
        texts = []
        for hyps in results:
            if not hyps:
                texts.append("")
                continue
            ids = hyps[0].tokens.tolist()
            texts.append(
                _tokens_to_text(self.tokens[i] for i in ids if i != self.blank_index)
            )
        return texts
