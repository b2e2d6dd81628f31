"""Transcribe audio files with a pretrained CTC model: greedy or beam search + LM.

Decoding
    ``beam=1`` is greedy decoding (best token per frame, repeats merged, blanks
    dropped): exactly what training reports and what SpeechBrain's
    ``EncoderASR`` returns. ``beam > 1`` runs SpeechBrain's
    ``CTCPrefixBeamSearcher``, which sums the probability of every alignment of
    a prefix. A word n-gram model (an ARPA file, see :mod:`xlt_plugin.decode.lm`) is
    fused into the beam's scores (shallow fusion: ``lm_weight`` times the LM's
    natural-log probability plus ``word_bonus`` per word, pyctcdecode's alpha and
    beta). The scorer here (:class:`FusionScorer`) reads the ARPA file in pure
    Python, or through ``kenlm`` when it is installed, and also boosts hotwords,
    which SpeechBrain's own KenLM scorer cannot.

Long files
    A file longer than ``chunk_seconds`` (30 s) is cut at its quietest points
    (:func:`chunk_bounds`) and the chunks are transcribed one by one. Cutting in
    a pause never splits a word, so the chunks' texts are simply joined; the
    alternative, overlapping windows, needs the two CTC outputs of every overlap
    aligned and merged, which duplicates or drops characters at the seams when
    the alignment is off. Where speech has no pause, the quietest point in the
    window is still the least harmful cut. Memory stays bounded by the chunk
    length whatever the file's length.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "CTCDecoder",
    "FusionScorer",
    "Transcriber",
    "chunk_bounds",
    "evaluate_decoder",
    "greedy_decode",
    "transcribe_files",
]

#: SentencePiece's word-start mark; it becomes a space in text.
_SPM_SPACE = "\u2581"
_LOG10_E = math.log10(math.e)


def _tokens_to_text(pieces: Iterable[str]) -> str:
    text = "".join(pieces).replace(_SPM_SPACE, " ")
    return " ".join(text.split())


def greedy_decode(
    log_probs: torch.Tensor, tokens: Sequence[str], blank_index: int
) -> str:
    """Best-path CTC decoding of one utterance.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[frames, tokens]`` (log-)probabilities of one utterance (valid frames
        only).
    tokens : sequence of str
        The token of each output row.
    blank_index : int
        The blank's row.

    Returns
    -------
    str
        The text, whitespace collapsed.

    Example
    -------
    >>> lp = torch.tensor([[0.0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0],
    ...                    [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    >>> greedy_decode(lp, ["<blank>", "a", "b", " "], 0)
    'aa b'
    """
    best = log_probs.argmax(dim=-1).tolist()
    pieces = [
        tokens[t]
        for i, t in enumerate(best)
        if t != blank_index and (i == 0 or t != best[i - 1])
    ]
    return _tokens_to_text(pieces)


# ------------------------------------------------------------------ LM fusion
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


class CTCDecoder:
    """CTC decoding of log-probabilities to text: greedy, or beam search + LM.

    Arguments
    ---------
    tokens : sequence of str
        The token of each output row.
    blank_index : int
        The blank's row.
    beam : int
        Beam width; 1 is greedy decoding.
    lm : path or ArpaLM, optional
        A word n-gram model to fuse (needs ``beam > 1``).
    lm_weight, word_bonus : float
        Shallow-fusion weights (see :class:`FusionScorer`).
    hotwords : iterable of str, optional
        Words to favour (needs ``beam > 1``).
    hotword_weight : float
        Their bonus.
    lm_backend : str
        ``auto``, ``kenlm`` or ``python``.
    **searcher_kwargs
        More options of ``speechbrain.decoders.ctc.CTCPrefixBeamSearcher``
        (``beam_prune_logp``, ``token_prune_min_logp``, ...).

    Example
    -------
    >>> probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])  # blank wins each frame
    >>> CTCDecoder(["<blank>", "a"], 0)(probs.log())
    ''
    >>> CTCDecoder(["<blank>", "a"], 0, beam=4)(probs.log())  # P(a) = 0.64
    'a'
    """

    def __init__(
        self,
        tokens: Sequence[str],
        blank_index: int,
        beam: int = 1,
        lm: Any = None,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        hotwords: Iterable[str] | None = None,
        hotword_weight: float = 10.0,
        lm_backend: str = "auto",
        **searcher_kwargs,
    ):
        self.tokens = list(tokens)
        self.blank_index = int(blank_index)
        self.beam = int(beam)
        hotwords = list(hotwords or [])
        if self.beam < 1:
            raise ValueError(f"beam must be at least 1, got {beam}")
        if self.beam == 1 and (lm is not None or hotwords):
            raise ValueError(
                "a language model or hotwords need beam search: give beam > 1 "
                "(e.g. --beam 16)"
            )
        self.searcher = None
        if self.beam > 1:
            from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

            kwargs = {"prune_history": True, **searcher_kwargs}
            self.searcher = CTCPrefixBeamSearcher(
                blank_index=self.blank_index,
                vocab_list=self.tokens,
                space_token=" ",
                beam_size=self.beam,
                **kwargs,
            )
            if lm is not None or hotwords:
                self.searcher.lm = FusionScorer(
                    lm,
                    lm_weight=lm_weight,
                    word_bonus=word_bonus,
                    hotwords=hotwords,
                    hotword_weight=hotword_weight,
                    backend=lm_backend,
                )

    def __call__(self, log_probs: torch.Tensor) -> str:
        """Text of one utterance from its ``[frames, tokens]`` log-probabilities."""
        if self.searcher is None:
            return greedy_decode(log_probs, self.tokens, self.blank_index)
        return self.batch(log_probs.unsqueeze(0))[0]

    def batch(
        self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> list[str]:
        """Texts of a padded batch ``[batch, frames, tokens]``.

        Arguments
        ---------
        log_probs : torch.Tensor
            Log-probabilities.
        lengths : torch.Tensor, optional
            Relative lengths (SpeechBrain style).

        Returns
        -------
        list of str
        """
        log_probs = log_probs.detach().float().cpu()
        frames = log_probs.shape[1]
        if lengths is None:
            valid = [frames] * log_probs.shape[0]
        else:
            valid = [int(x) for x in (lengths.cpu() * frames).round().long()]
        if self.searcher is None:
            return [
                greedy_decode(lp[:n], self.tokens, self.blank_index)
                for lp, n in zip(log_probs, valid, strict=True)
            ]
        texts = []
        for lp, n in zip(log_probs, valid, strict=True):
            hyps = self.searcher.decode_log_probs(lp[:n].numpy(), n)
            texts.append(_tokens_to_text([hyps[0].text]) if hyps else "")
        return texts


# ------------------------------------------------------------------ chunking
def chunk_bounds(
    wav: torch.Tensor,
    sample_rate: int,
    max_seconds: float = 30.0,
    min_seconds: float | None = None,
    smooth_seconds: float = 0.2,
) -> list[tuple[int, int]]:
    """Where to cut a long waveform: at the quietest point of each window.

    Each chunk ends at the lowest-energy point (energy averaged over
    ``smooth_seconds``, so a pause beats a short stop consonant) between
    ``min_seconds`` and ``max_seconds`` after its start.

    Arguments
    ---------
    wav : torch.Tensor
        ``[samples]``.
    sample_rate : int
        Its rate.
    max_seconds : float
        Longest chunk.
    min_seconds : float, optional
        Shortest chunk (except the last); default half of ``max_seconds``.
    smooth_seconds : float
        Span over which energy is averaged.

    Returns
    -------
    list of (start, end)
        Sample ranges covering ``wav`` in order, without overlap.

    Example
    -------
    >>> sr = 100
    >>> loud = torch.ones(sr * 4)
    >>> wav = torch.cat([loud, torch.zeros(sr), loud, torch.zeros(sr), loud])
    >>> [(s / sr, e / sr) for s, e in chunk_bounds(wav, sr, max_seconds=6)]
    [(0.0, 4.5), (4.5, 9.5), (9.5, 14.0)]
    """
    total = int(wav.shape[-1])
    longest = int(max_seconds * sample_rate)
    if longest <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if total <= longest:
        return [(0, total)]
    half = max_seconds / 2 if min_seconds is None else min_seconds
    shortest = min(max(1, int(half * sample_rate)), longest)
    hop = max(1, sample_rate // 100)  # 10 ms energy frames
    frames = wav[: total // hop * hop].reshape(-1, hop).double()
    energy = frames.pow(2).mean(dim=1)
    width = max(1, int(smooth_seconds * sample_rate) // hop)
    if width > 1:  # centred moving average; the file's edges are not silence
        energy = torch.nn.functional.avg_pool1d(
            energy.view(1, 1, -1),
            width,
            stride=1,
            padding=width // 2,
            count_include_pad=False,
        ).view(-1)[: frames.shape[0]]
    bounds = []
    start = 0
    while total - start > longest:
        lo = (start + shortest) // hop
        hi = min((start + longest) // hop, energy.shape[0] - 1)
        window = energy[lo : hi + 1]
        # Cut in the middle of the quietest run (a pause), not at its first
        # frame, so both neighbours keep their word edges.
        first = int(torch.argmin(window))
        floor = float(window[first])
        last = first
        while last + 1 < len(window) and window[last + 1] <= floor * (1 + 1e-6):
            last += 1
        cut = (lo + (first + last) // 2) * hop
        cut = min(max(cut, start + 1), start + longest)
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


# --------------------------------------------------------------- transcriber
class Transcriber:
    """A pretrained CTC model and a decoder: audio files -> text.

    Arguments
    ---------
    model : PretrainedCTC
        From :func:`xlt_plugin.pretrained.load_pretrained`.
    decoder : CTCDecoder
        For the model's tokens.
    chunk_seconds : float
        Longest stretch fed to the model at once (see :func:`chunk_bounds`).
    """

    def __init__(self, model, decoder: CTCDecoder, chunk_seconds: float = 30.0):
        self.model = model
        self.decoder = decoder
        self.chunk_seconds = float(chunk_seconds)
        self.sample_rate = int(model.config["features"]["sample_rate"])
        # A chunk shorter than one analysis window has no frame: pad to 0.1 s.
        self.min_samples = self.sample_rate // 10

    @classmethod
    def from_dir(
        cls, model_dir: str | os.PathLike, chunk_seconds: float = 30.0, **decoder_kw
    ) -> Transcriber:
        """Load a model folder (hub layout, or a ``.nemo``) with its decoder.

        Arguments
        ---------
        model_dir : path
            The model.
        chunk_seconds : float
            See :func:`chunk_bounds`.
        **decoder_kw
            :class:`CTCDecoder` options (``beam``, ``lm``, ...).

        Returns
        -------
        Transcriber
        """
        from xlt_plugin.pretrained import load_pretrained

        model = load_pretrained(model_dir)
        decoder = CTCDecoder(model.tokens, model.blank_index, **decoder_kw)
        return cls(model, decoder, chunk_seconds)

    @torch.no_grad()
    def transcribe_waveform(self, wav: torch.Tensor) -> str:
        """Text of a mono waveform at the model's sample rate (``[samples]``)."""
        texts = []
        for start, end in chunk_bounds(wav, self.sample_rate, self.chunk_seconds):
            piece = wav[start:end]
            if piece.numel() < self.min_samples:
                piece = torch.nn.functional.pad(
                    piece, (0, self.min_samples - piece.numel())
                )
            log_probs = self.model.log_probs(piece.unsqueeze(0), torch.ones(1))
            texts.append(self.decoder(log_probs[0]))
        return " ".join(t for t in texts if t)

    def transcribe_file(self, path: str | os.PathLike) -> str:
        """Text of an audio file (wav, flac, mp3, ...; any rate; mono or not)."""
        from xlt_plugin.data.pipeline import load_audio

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        try:
            wav = load_audio(str(path), self.sample_rate)
        except Exception as err:  # soundfile's errors do not name the file
            raise ValueError(
                f"{path}: cannot read audio ({err}); use wav, flac, ogg or mp3"
            ) from err
        return self.transcribe_waveform(wav)


def transcribe_files(
    model_dir: str | os.PathLike,
    files: Iterable[str | os.PathLike],
    beam: int = 1,
    lm: Any = None,
    lm_weight: float = 0.5,
    word_bonus: float = 1.0,
    hotwords: Iterable[str] | None = None,
    hotword_weight: float = 10.0,
    chunk_seconds: float = 30.0,
) -> list[str]:
    """Transcribe audio files with a pretrained CTC model.

    Arguments
    ---------
    model_dir : path
        A model folder in hub layout (``xlt export``, a recipe's
        ``<output_folder>/model``) or a ``.nemo`` file.
    files : iterable of paths
        Audio files; any sample rate, mono or multi-channel.
    beam : int
        1: greedy decoding; more: CTC prefix beam search of that width.
    lm : path, optional
        ARPA word n-gram model for shallow fusion (needs ``beam > 1``).
    lm_weight, word_bonus : float
        Fusion weights (alpha, beta).
    hotwords : iterable of str, optional
        Words to favour (needs ``beam > 1``).
    hotword_weight : float
        Their bonus (natural log units).
    chunk_seconds : float
        Longer files are cut at pauses into chunks at most this long.

    Returns
    -------
    list of str
        One text per file, in order.

    Example
    -------
    >>> import soundfile as sf
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> from speechbrain.nnet.linear import Linear
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> from xlt_plugin.pretrained import save_pretrained
    >>> tmp = getfixture("tmp_path")
    >>> enc = QuartzNet(input_size=40, preset="quartznet_tiny")
    >>> tok = CTCTextEncoder()
    >>> tok.update_from_iterable("ab ", sequence_input=False)
    >>> tok.insert_blank(index=0)
    >>> head = Linear(input_size=enc.output_size, n_neurons=len(tok))
    >>> model = save_pretrained(tmp / "m", encoder=enc, head=head, tokenizer=tok,
    ...                         features={"n_mels": 40})
    >>> sf.write(tmp / "a.wav", torch.randn(8000).numpy() * 0.1, 8000)
    >>> texts = transcribe_files(model, [tmp / "a.wav"], beam=4)
    >>> len(texts), set("".join(texts)) <= {"a", "b", " "}
    (1, True)
    """
    transcriber = Transcriber.from_dir(
        model_dir,
        chunk_seconds=chunk_seconds,
        beam=beam,
        lm=lm,
        lm_weight=lm_weight,
        word_bonus=word_bonus,
        hotwords=hotwords,
        hotword_weight=hotword_weight,
    )
    return [transcriber.transcribe_file(f) for f in files]


# ------------------------------------------------------- recipe evaluation
def evaluate_decoder(
    brain,
    test_sets: dict,
    decoder: CTCDecoder,
    loader_kwargs: dict | None = None,
    record: dict | None = None,
) -> dict:
    """Score test sets with ``decoder`` and log a ``metrics.jsonl`` line per set.

    The brain's modules are used as they are (after ``fit_and_test`` they hold
    the best checkpoint). Each line has the fields of the brain's own test lines
    plus ``decoder`` and whatever ``record`` adds (beam, LM path, weights).

    Arguments
    ---------
    brain : CTCTransferBrain
        The trained brain.
    test_sets : dict
        Name -> dataset.
    decoder : CTCDecoder
        For the brain's tokens.
    loader_kwargs : dict, optional
        Test dataloader options.
    record : dict, optional
        Extra fields for the metrics lines; ``decoder`` defaults to
        ``"beam"`` or ``"greedy"``.

    Returns
    -------
    dict
        Name -> {"CER", "WER"}.
    """
    import speechbrain as sb
    from speechbrain.utils.distributed import if_main_process

    from xlt_plugin.runs import append_metrics
    from xlt_plugin.scoring import ErrorRates

    record = dict(record or {})
    record.setdefault("decoder", "beam" if decoder.beam > 1 else "greedy")
    results = {}
    brain.modules.eval()
    for name, test_set in test_sets.items():
        start = time.time()
        scores = ErrorRates()
        loader = brain.make_dataloader(
            test_set, sb.Stage.TEST, **dict(loader_kwargs or {})
        )
        for step, batch in enumerate(loader, start=1):
            with torch.no_grad():
                log_probs, wav_lens = brain.compute_forward(batch, sb.Stage.TEST)
            scores.append(batch.id, decoder.batch(log_probs, wav_lens), batch.wrd)
            if getattr(brain, "debug", False) and step >= brain.debug_batches:
                break
        results[name] = scores.summarize()
        line = {
            "epoch": brain.hparams.epoch_counter.current,
            "stage": "test",
            "loss": None,
            **results[name],
            "seconds": round(time.time() - start, 3),
            "test_set": name,
            "zero_shot": False,
            **record,
        }
        path = getattr(brain, "metrics_path", None)
        if path is not None and if_main_process():
            append_metrics(path, line)
        logger.info("%s on %s: %s", record["decoder"], name, results[name])
    return results
