"""Transcribe audio files with a pretrained CTC model: greedy or beam search + LM.

Decoding
    ``beam=1`` is greedy decoding (best token per frame, repeats merged, blanks
    dropped): exactly what training reports and what SpeechBrain's
    ``EncoderASR`` returns. ``beam > 1`` is CTC beam search, by one of two
    engines (``decoder=``):

    ``flashlight`` (the default when ``flashlight-text`` is installed, extra
    ``[lm]``) is torchaudio's compiled decoder
    (:class:`~xlt_plugin.decode.flashlight.FlashlightBeamSearch`), 10-100x
    faster; with an LM it spells words of the LM's vocabulary (and the
    hotwords) only.

    ``python`` is SpeechBrain's ``CTCPrefixBeamSearcher``, pure Python, which
    can also spell words the LM does not know (at a penalty). It is the
    fallback when flashlight-text is missing (a log line says so), and stays
    selectable for comparison.

    A word n-gram model (an ARPA file, see :mod:`xlt_plugin.decode.lm`) is fused
    into either beam's scores (shallow fusion: ``lm_weight`` times the LM's
    natural-log probability plus ``word_bonus`` per word, pyctcdecode's alpha and
    beta), with the same formula (:class:`FusionScorer`, which reads the ARPA
    file in pure Python, or through ``kenlm`` when it is installed, and also
    boosts hotwords, which SpeechBrain's own KenLM scorer cannot).

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
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from xlt_plugin.decode.fusion import FusionScorer, _tokens_to_text

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


# ---------------------------------------------------------------- decoders
#: Engines of beam search (``CTCDecoder(decoder=...)``).
DECODERS = ("auto", "flashlight", "python")


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
    decoder : str
        Beam search engine: ``flashlight`` (compiled, needs flashlight-text),
        ``python`` (SpeechBrain's prefix beam search) or ``auto`` (flashlight
        when it is installed and can run this setup, else python, with a log
        line saying why).
    **searcher_kwargs
        More options of the engine: for ``python``,
        ``speechbrain.decoders.ctc.CTCPrefixBeamSearcher``'s
        (``beam_prune_logp``, ``token_prune_min_logp``, ...); for
        ``flashlight``, :class:`~xlt_plugin.decode.flashlight.FlashlightBeamSearch`'s
        (``beam_threshold``, ``beam_size_token``, ``log_add``). With ``auto``
        they go to whichever engine runs, so name only options it has.

    Attributes
    ----------
    engine : str
        ``greedy``, ``flashlight`` or ``python``: what decodes.

    Example
    -------
    >>> probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])  # blank wins each frame
    >>> CTCDecoder(["<blank>", "a"], 0)(probs.log())
    ''
    >>> CTCDecoder(["<blank>", "a"], 0, beam=4, decoder="python")(probs.log())
    'a'
    >>> CTCDecoder(["<blank>", "a"], 0, beam=4).engine in ("flashlight", "python")
    True
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
        decoder: str = "auto",
        **searcher_kwargs,
    ):
        self.tokens = list(tokens)
        self.blank_index = int(blank_index)
        self.beam = int(beam)
        hotwords = list(hotwords or [])
        if self.beam < 1:
            raise ValueError(f"beam must be at least 1, got {beam}")
        if decoder not in DECODERS:
            raise ValueError(
                f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}"
            )
        if self.beam == 1 and (lm is not None or hotwords):
            raise ValueError(
                "a language model or hotwords need beam search: give beam > 1 "
                "(e.g. --beam 16)"
            )
        self.searcher = None  # SpeechBrain's CTCPrefixBeamSearcher
        self.compiled = None  # FlashlightBeamSearch
        self.engine = "greedy"
        if self.beam == 1:
            return
        fusion = {
            "lm": lm,
            "lm_weight": lm_weight,
            "word_bonus": word_bonus,
            "hotwords": hotwords,
            "hotword_weight": hotword_weight,
            "lm_backend": lm_backend,
        }
        if decoder in ("auto", "flashlight"):
            from xlt_plugin.decode.flashlight import (
                FlashlightBeamSearch,
                FlashlightUnavailableError,
                FlashlightUnsupportedError,
            )

            try:
                self.compiled = FlashlightBeamSearch(
                    self.tokens,
                    self.blank_index,
                    self.beam,
                    **fusion,
                    **searcher_kwargs,
                )
                self.engine = "flashlight"
                return
            except (FlashlightUnavailableError, FlashlightUnsupportedError) as err:
                if decoder == "flashlight":
                    raise
                logger.info(
                    "beam search runs SpeechBrain's pure-Python prefix search "
                    "(10-100x slower than the compiled decoder): %s",
                    err,
                )
        from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

        kwargs = {"prune_history": True, **searcher_kwargs}
        self.searcher = CTCPrefixBeamSearcher(
            blank_index=self.blank_index,
            vocab_list=self.tokens,
            space_token=" ",
            beam_size=self.beam,
            **kwargs,
        )
        self.engine = "python"
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
        if self.engine == "greedy":
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
        if self.compiled is not None:
            return self.compiled.batch(log_probs, valid)
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
    decoder: str = "auto",
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
    decoder : str
        Beam search engine: ``auto``, ``flashlight`` or ``python`` (see
        :class:`CTCDecoder`).

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
        decoder=decoder,
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
        ``"beam"`` or ``"greedy"``; a beam's ``beam_engine`` is
        ``"flashlight"`` or ``"python"``.

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
    if decoder.beam > 1:
        record.setdefault("beam_engine", decoder.engine)
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
