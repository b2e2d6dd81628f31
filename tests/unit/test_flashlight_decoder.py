"""The compiled beam decoder (flashlight-text through torchaudio) against the
pure-Python one (SpeechBrain's prefix beam search), on constructed log-probs:
same best hypothesis without LM, LM fusion and hotwords in the expected
direction, and the fallback when flashlight-text is missing."""

import logging
import sys

import numpy as np
import pytest
import torch

from xlt_plugin.decode.flashlight import (
    FlashlightBeamSearch,
    FlashlightUnavailableError,
    FlashlightUnsupportedError,
    flashlight_available,
)
from xlt_plugin.decode.lm import estimate_kneser_ney
from xlt_plugin.decode.transcribe import CTCDecoder

needs_flashlight = pytest.mark.skipif(
    not flashlight_available(), reason="flashlight-text not installed (extra [lm])"
)

ENGLISH = ["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
TOKENS = ["<blank>", " ", "a", "c", "p", "t"]


def _spoken(text, rng, frames_per_char=(1, 3), peak=(0.5, 0.95), blanks=0.5):
    """Log-probs of frames that say ``text`` (each char over a few frames,
    blanks between some, noisy), as a CTC model would."""
    rows = []
    previous = None
    for char in text:
        index = ENGLISH.index(char)
        if char == previous or rng.random() < blanks:
            rows.append(0)
        rows += [index] * int(rng.integers(*frames_per_char, endpoint=True))
        previous = char
    rows.append(0)
    probs = rng.dirichlet(np.full(len(ENGLISH), 0.3), size=len(rows))
    for row, index in zip(probs, rows, strict=True):
        p = rng.uniform(*peak)
        row *= 1 - p
        row[index] += p
    return torch.tensor(np.log(probs), dtype=torch.float32)


@needs_flashlight
def test_same_best_hypothesis_as_python_without_lm():
    rng = np.random.default_rng(0)
    python = CTCDecoder(ENGLISH, 0, beam=32, decoder="python")
    compiled = CTCDecoder(ENGLISH, 0, beam=32, decoder="flashlight")
    assert compiled.engine == "flashlight" and python.engine == "python"
    texts = ["the heart rate is low", "take two tablets", "a cat sat", "all ll"]
    for text in texts * 2:
        log_probs = _spoken(text, rng, peak=(0.3, 0.9))
        assert compiled(log_probs) == python(log_probs), text
    # Flat posteriors (30 frames, no peak): only the search decides.
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        flat = torch.log_softmax(3 * torch.randn(30, len(ENGLISH), generator=g), -1)
        assert compiled(flat) == python(flat), seed
    # Summing alignments: blank wins each frame, yet P('a') = 0.64.
    two = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert FlashlightBeamSearch(["<blank>", "a"], 0, beam=4)(two) == "a"


@needs_flashlight
def test_batch_and_lengths():
    rng = np.random.default_rng(1)
    a, b = _spoken("a cat", rng), _spoken("heart rate is low", rng)
    padded = torch.zeros(2, len(b), len(ENGLISH))
    padded[0, : len(a)], padded[1] = a, b
    decoder = CTCDecoder(ENGLISH, 0, beam=16, decoder="flashlight")
    lengths = torch.tensor([len(a) / len(b), 1.0])
    assert decoder.batch(padded, lengths) == [decoder(a), decoder(b)]


def _cap_or_cat():
    """Frames spelling 'cap' or 'cat': acoustically 'p' is a bit likelier."""
    rows = []
    for char, p in (("c", 0.9), ("a", 0.9), ("p", 0.55)):
        row = np.full(len(TOKENS), 0.02)
        row[TOKENS.index(char)] = p
        if char == "p":
            row[TOKENS.index("t")] = 0.40
        rows += [row / row.sum(), np.eye(len(TOKENS))[0] * 0.9 + 0.02]
    return torch.tensor(np.log(np.array(rows)), dtype=torch.float32)


@needs_flashlight
@pytest.mark.parametrize("backend", ["auto", "python"])
def test_lm_fusion_moves_towards_the_lm(tmp_path, backend):
    """``auto``: flashlight's own KenLM; ``python``: the FusionScorer."""
    log_probs = _cap_or_cat()
    assert CTCDecoder(TOKENS, 0, beam=8, decoder="flashlight")(log_probs) == "cap"
    cat = estimate_kneser_ney(["cat", "a cat", "cat cat", "cap"], order=2)
    cat_path = cat.write(tmp_path / "cat.arpa")
    fused = CTCDecoder(
        TOKENS, 0, beam=8, lm=cat_path, lm_backend=backend, decoder="flashlight"
    )
    assert fused.engine == "flashlight" and fused(log_probs) == "cat"
    # A weak LM weight leaves the acoustics in charge.
    weak = CTCDecoder(
        TOKENS, 0, beam=8, lm=cat_path, lm_weight=0.01, lm_backend=backend,
        decoder="flashlight",
    )  # fmt: skip
    assert weak(log_probs) == "cap"
    # An LM that prefers 'cap' keeps it; both engines agree on both models.
    cap_path = estimate_kneser_ney(["cap", "a cap", "cat"], order=2).write(
        tmp_path / "cap.arpa"
    )
    for path, expected in ((cat_path, "cat"), (cap_path, "cap")):
        for engine in ("flashlight", "python"):
            decoder = CTCDecoder(
                TOKENS, 0, beam=8, lm=path, lm_backend=backend, decoder=engine
            )
            assert decoder(log_probs) == expected, (path, engine)


@needs_flashlight
def test_lm_with_several_words_and_the_sentence_end(tmp_path):
    """'the cat' vs 'the cap' after 'the': the bigram decides; the last word
    (no trailing space in the frames) is scored too."""
    rng = np.random.default_rng(2)
    log_probs = _spoken("the cap", rng, peak=(0.9, 0.95))
    t_row = ENGLISH.index("t")
    p_row = ENGLISH.index("p")
    log_probs[-2] = torch.tensor(np.full(len(ENGLISH), 0.2 / 27)).log()
    log_probs[-2, p_row] = np.log(0.45)
    log_probs[-2, t_row] = np.log(0.35)
    assert CTCDecoder(ENGLISH, 0, beam=16, decoder="flashlight")(log_probs) == "the cap"
    lm = estimate_kneser_ney(["the cat", "the cat sat", "a cap"], order=2)
    path = lm.write(tmp_path / "the.arpa")
    for engine in ("flashlight", "python"):
        decoder = CTCDecoder(ENGLISH, 0, beam=16, lm=path, decoder=engine)
        assert decoder(log_probs) == "the cat", engine


@needs_flashlight
def test_hotwords_still_work(tmp_path):
    log_probs = _cap_or_cat()
    for engine in ("flashlight", "python"):
        boosted = CTCDecoder(TOKENS, 0, beam=8, hotwords=["cat"], decoder=engine)
        assert boosted(log_probs) == "cat", engine
        other = CTCDecoder(TOKENS, 0, beam=8, hotwords=["tap"], decoder=engine)
        assert other(log_probs) == "cap", engine
    # A hotword the LM never saw still wins over the LM's own word.
    path = estimate_kneser_ney(["cap", "a cap"], order=2).write(tmp_path / "l.arpa")
    with_lm = CTCDecoder(TOKENS, 0, beam=8, lm=path, decoder="flashlight")
    assert with_lm(log_probs) == "cap"
    boosted = CTCDecoder(
        TOKENS, 0, beam=8, lm=path, hotwords=["cat"], decoder="flashlight"
    )
    assert boosted(log_probs) == "cat"


@needs_flashlight
def test_setups_it_cannot_run_fall_back(tmp_path, caplog):
    pieces = ["<blank>", "\u2581ca", "t", "p"]
    lm = estimate_kneser_ney(["cat", "a cat"], order=2).write(tmp_path / "c.arpa")
    with pytest.raises(FlashlightUnsupportedError, match="space token"):
        FlashlightBeamSearch(pieces, 0, beam=4, lm=lm)
    with caplog.at_level(logging.INFO, logger="xlt_plugin.decode.transcribe"):
        decoder = CTCDecoder(pieces, 0, beam=4, lm=lm)
    assert decoder.engine == "python" and "space token" in caplog.text
    # Word pieces without an LM are fine (lexicon-free search).
    log_probs = torch.tensor([[0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.8, 0.05]]).log()
    assert CTCDecoder(pieces, 0, beam=4).engine == "flashlight"
    assert CTCDecoder(pieces, 0, beam=4)(log_probs) == "cat"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CTCDecoder(TOKENS, 0, beam=4, lm=tmp_path / "none.arpa")
    with pytest.raises(ValueError, match="decoder must be one of"):
        CTCDecoder(TOKENS, 0, beam=4, decoder="cuda")


def _hide_flashlight(monkeypatch):
    """Make ``import flashlight...`` fail and torchaudio forget its decoder."""
    import torchaudio.models.decoder as ta_decoder

    for name in list(sys.modules):
        if name == "flashlight" or name.startswith("flashlight."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "flashlight", None)
    monkeypatch.delitem(
        sys.modules, "torchaudio.models.decoder._ctc_decoder", raising=False
    )
    for name in ("_ctc_decoder", "ctc_decoder", "CTCDecoderLM", "CTCDecoderLMState",
                 "CTCDecoder", "CTCHypothesis"):  # fmt: skip
        monkeypatch.delitem(vars(ta_decoder), name, raising=False)


def test_fallback_when_flashlight_text_is_missing(monkeypatch, caplog, tmp_path):
    _hide_flashlight(monkeypatch)
    assert not flashlight_available()
    with pytest.raises(FlashlightUnavailableError, match="pip install"):
        FlashlightBeamSearch(TOKENS, 0, beam=4)
    with pytest.raises(FlashlightUnavailableError, match="flashlight-text"):
        CTCDecoder(TOKENS, 0, beam=4, decoder="flashlight")
    path = estimate_kneser_ney(["cat", "a cat"], order=2).write(tmp_path / "c.arpa")
    with caplog.at_level(logging.INFO, logger="xlt_plugin.decode.transcribe"):
        decoder = CTCDecoder(TOKENS, 0, beam=8, lm=path, lm_backend="python")
    assert decoder.engine == "python" and decoder.searcher is not None
    assert "pure-Python" in caplog.text and "flashlight-text" in caplog.text
    assert decoder(_cap_or_cat()) == "cat"  # the fallback still fuses the LM
    assert CTCDecoder(TOKENS, 0).engine == "greedy"  # greedy needs nothing
