"""``xlt transcribe`` and its Python API: formats, rates, channels, long files,
greedy vs beam search, LM fusion and hotwords."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from xlt_plugin.cli import main
from xlt_plugin.data.pipeline import load_audio
from xlt_plugin.decode.lm import estimate_kneser_ney
from xlt_plugin.decode.transcribe import (
    CTCDecoder,
    FusionScorer,
    Transcriber,
    chunk_bounds,
    greedy_decode,
    transcribe_files,
)
from xlt_plugin.pretrained import load_pretrained

RATE = 16000


@pytest.fixture(scope="module")
def clips(corpora):
    return sorted((corpora("en", 16) / "clips").glob("*.mp3"))


@pytest.fixture(scope="module")
def model_dir(en_base):
    return en_base / "model"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_formats_rates_and_channels(model_dir, clips, tmp_path, capsys):
    wav = load_audio(str(clips[0]), RATE).numpy()
    files = {"clip.mp3": clips[0]}
    sf.write(tmp_path / "mono16k.wav", wav, RATE, subtype="PCM_16")
    sf.write(tmp_path / "mono16k.flac", wav, RATE, subtype="PCM_16")
    sf.write(tmp_path / "stereo16k.wav", np.stack([wav, wav], 1), RATE, "PCM_16")
    for rate in (8000, 48000):
        resampled = torchaudio.functional.resample(torch.from_numpy(wav), RATE, rate)
        stereo = np.stack([resampled.numpy(), 0.5 * resampled.numpy()], 1)
        sf.write(tmp_path / f"stereo{rate // 1000}k.flac", stereo, rate, "PCM_16")
    for name in ("mono16k.wav", "mono16k.flac", "stereo16k.wav", "stereo8k.flac",
                 "stereo48k.flac"):  # fmt: skip
        files[name] = tmp_path / name

    code, out, err = _run(capsys, "transcribe", "--model", model_dir, *files.values())
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(files)
    texts = {}
    for line, (name, path) in zip(lines, files.items(), strict=True):
        printed, sep, text = line.partition("\t")
        assert sep == "\t" and printed == str(path) and "\t" not in text
        texts[name] = text
    # Same samples in another container, or duplicated over two channels:
    # exactly the same transcript.
    assert texts["mono16k.wav"] == texts["mono16k.flac"] == texts["stereo16k.wav"]
    assert texts["mono16k.wav"]  # the tiny model says something
    # The API agrees with the command line.
    api = transcribe_files(model_dir, list(files.values()))
    assert api == [texts[name] for name in files]


def _greedy(model, wav):
    with torch.no_grad():
        log_probs = model.log_probs(wav.unsqueeze(0), torch.ones(1))[0]
    best = log_probs.argmax(-1).tolist()
    kept = [t for i, t in enumerate(best) if i == 0 or t != best[i - 1]]
    text = "".join(model.tokens[t] for t in kept if t != model.blank_index)
    return " ".join(text.split())


def test_beam_one_is_greedy(model_dir, clips):
    model = load_pretrained(model_dir)
    expected = [_greedy(model, load_audio(str(c), RATE)) for c in clips[:4]]
    assert transcribe_files(model_dir, clips[:4], beam=1) == expected
    assert any(expected)


def test_beam_search_sums_alignments_and_greedy_does_not():
    # Blank wins every frame (0.6), but 'a' has 0.4 + 0.24 + 0.24 = 0.64 total.
    log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_decode(log_probs, ["<blank>", "a"], 0) == ""
    assert CTCDecoder(["<blank>", "a"], 0, beam=4)(log_probs) == "a"


TOKENS = ["<blank>", " ", "a", "c", "p", "t"]


def _cap_or_cat():
    """Frames spelling 'the cat'/'the cap'... acoustically 'p' is a bit likelier."""
    rows = []
    for char, p in (("c", 0.9), ("a", 0.9), ("p", 0.55)):
        row = np.full(len(TOKENS), 0.02)
        row[TOKENS.index(char)] = p
        if char == "p":
            row[TOKENS.index("t")] = 0.40
        rows += [row / row.sum(), np.eye(len(TOKENS))[0] * 0.9 + 0.02]
    return torch.tensor(np.log(np.array(rows)), dtype=torch.float32)


@pytest.mark.parametrize("decoder", ["python", "auto"])
@pytest.mark.parametrize("backend", ["python", "kenlm"])
def test_lm_fusion_changes_the_beam(tmp_path, backend, decoder):
    """``auto`` is the compiled decoder when flashlight-text is installed."""
    if backend == "kenlm":
        pytest.importorskip("kenlm")  # optional extra `lm`
    log_probs = _cap_or_cat()
    assert CTCDecoder(TOKENS, 0)(log_probs) == "cap"
    assert CTCDecoder(TOKENS, 0, beam=8, decoder=decoder)(log_probs) == "cap"
    lm = estimate_kneser_ney(["cat", "a cat", "cat cat"], order=2)
    path = lm.write(tmp_path / "cat.arpa")
    fused = CTCDecoder(TOKENS, 0, beam=8, lm=path, lm_backend=backend, decoder=decoder)
    assert fused(log_probs) == "cat"
    with pytest.raises(ValueError, match="beam > 1"):
        CTCDecoder(TOKENS, 0, beam=1, lm=path)


@pytest.mark.parametrize("decoder", ["python", "auto"])
def test_hotwords_change_the_beam(tmp_path, decoder):
    log_probs = _cap_or_cat()
    for hotword, expected in (("cat", "cat"), ("tap", "cap")):
        beam = CTCDecoder(TOKENS, 0, beam=8, hotwords=[hotword], decoder=decoder)
        assert beam(log_probs) == expected
    # A hotword the LM never saw still wins over the LM's own word.
    path = estimate_kneser_ney(["cap", "a cap"], order=2).write(tmp_path / "l.arpa")
    with_lm = CTCDecoder(
        TOKENS, 0, beam=8, lm=path, lm_backend="python", decoder=decoder
    )
    assert with_lm(log_probs) == "cap"
    boosted = CTCDecoder(
        TOKENS, 0, beam=8, lm=path, lm_backend="python", hotwords=["cat"],
        decoder=decoder,
    )  # fmt: skip
    assert boosted(log_probs) == "cat"


def test_python_and_kenlm_scorers_agree(tmp_path):
    pytest.importorskip("kenlm")
    lm = estimate_kneser_ney(["the heart rate is low", "the rate is high"], order=3)
    path = lm.write(tmp_path / "h.arpa")
    scorers = [FusionScorer(path, backend=b) for b in ("python", "kenlm")]
    results = []
    for scorer in scorers:
        state = scorer.get_start_state()
        scores = []
        for i, word in enumerate(["the", "rate", "is", "unknown", "low"]):
            score, state = scorer.score(state, word, is_last_word=i == 4)
            scores.append(score)
        scores += [scorer.score_partial_token(p) for p in ("hea", "xyz", "")]
        results.append(scores)
    assert results[0] == pytest.approx(results[1], abs=1e-4)


def test_beam_with_lm_runs_on_files(model_dir, clips, tmp_path, capsys):
    lm = estimate_kneser_ney(["the cat sat on the mat", "a dog sat"], order=3)
    path = lm.write(tmp_path / "tiny.arpa")
    texts = transcribe_files(model_dir, clips[:2], beam=4, lm=path)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    code, out, err = _run(capsys, "transcribe", "--model", model_dir, "--lm", path,
                          "--hotwords", "cat,dog", clips[0])  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"{clips[0]}\t") and out.count("\n") == 1
    # Both beam engines, chosen on the command line, write a line per file;
    # the compiled one spells only the LM's words (and the hotwords).
    for engine in ("python", "flashlight"):
        if engine == "flashlight":
            pytest.importorskip("flashlight.lib.text")  # extra `lm`
        code, out, err = _run(capsys, "transcribe", "--model", model_dir, "--lm",
                              path, "--decoder", engine, *clips[:2])  # fmt: skip
        assert code == 0, err
        assert out.count("\n") == 2
        if engine == "flashlight":
            words = {"the", "cat", "sat", "on", "mat", "a", "dog"}
            for line in out.splitlines():
                assert set(line.split("\t")[1].split()) <= words


@pytest.fixture(scope="module")
def long_file(clips, tmp_path_factory):
    """~70 s: clips separated by 1.5 s of silence; returns path and gaps."""
    pieces, gaps, position = [], [], 0
    silence = torch.zeros(int(1.5 * RATE))
    index = 0
    while position < 70 * RATE:
        clip = load_audio(str(clips[index % len(clips)]), RATE)
        pieces += [clip, silence]
        position += len(clip)
        gaps.append((position, position + len(silence)))
        position += len(silence)
        index += 1
    wav = torch.cat(pieces)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, wav.numpy(), RATE, subtype="FLOAT")
    return path, wav, gaps


def test_long_file_is_cut_in_pauses_and_read_in_order(model_dir, long_file):
    path, wav, gaps = long_file
    assert len(wav) / RATE > 69
    bounds = chunk_bounds(wav, RATE, max_seconds=30.0)
    assert len(bounds) >= 3
    assert bounds[0][0] == 0 and bounds[-1][1] == len(wav)
    for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
        assert end == start  # contiguous, no overlap
        assert any(g0 < end < g1 for g0, g1 in gaps), f"cut at {end / RATE:.2f}s"
    assert all(e - s <= 30 * RATE for s, e in bounds)

    transcriber = Transcriber.from_dir(model_dir, chunk_seconds=30.0)
    text = transcriber.transcribe_file(path)
    # Each chunk on its own, in order, joined: the same text.
    chunks = [transcriber.transcribe_waveform(wav[s:e]) for s, e in bounds]
    assert text == " ".join(c for c in chunks if c)
    assert all(chunks)


def test_errors_are_one_line(model_dir, tmp_path, capsys):
    code, out, err = _run(capsys, "transcribe", "--model", model_dir, "nope.wav")
    assert code == 1 and out == "" and "nope.wav" in err and len(err.splitlines()) == 1
    code, _, err = _run(
        capsys, "transcribe", "--model", tmp_path / "none", tmp_path
    )  # a directory is not an audio file
    assert code == 1 and len(err.splitlines()) == 1
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    code, _, err = _run(capsys, "transcribe", "--model", model_dir, bad)
    assert code == 1 and "bad.wav" in err and "Traceback" not in err
    code, _, err = _run(
        capsys, "transcribe", "--model", model_dir, "--lm", tmp_path / "x.arpa", bad
    )
    assert code == 1 and "x.arpa does not exist" in err
