"""Acoustic conditions of the embedded corpus (``xlt synth --conditions``)."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xlt_plugin.synth.conditions import (
    CLEAN,
    REALISTIC,
    Conditions,
    load_conditions,
    measure_snr,
    mix_at_snr,
    room_impulse_response,
    signal_power,
)
from xlt_plugin.synth.corpus import SynthError, synthesize_corpus

pra = pytest.importorskip("pyroomacoustics")

# A small pool keeps the tests fast; everything else is the realistic preset.
SMALL_REALISTIC = REALISTIC.replace(rooms=2)


def corpus_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic") / "cv"
    info = synthesize_corpus(
        out, "es", 12, seed=5, jobs=2, progress=False, conditions=SMALL_REALISTIC
    )
    return out, info


# Recorded from `synthesize_corpus(out, lang, n, seed=3, jobs=1)` with the code
# as it was before conditions existed (and libsndfile 1.2.2's MP3 encoder):
# the clean preset must keep writing exactly these bytes.
CLEAN_HASHES = {
    ("es", 6): "7ab5b3ea16e6919e6da146161b269f930fa1eb84681408906f7344398843e168",
    ("en", 4): "419908bf0d44c5be3a058a06b3e2b24a5bc3d8151d66d24114749d4f82547095",
}


@pytest.mark.parametrize("locale, count", sorted(CLEAN_HASHES))
def test_clean_preset_writes_what_it_always_wrote(tmp_path, locale, count):
    out = tmp_path / "cv"
    synthesize_corpus(out, locale, count, seed=3, jobs=1, progress=False)
    assert not (out / "conditions.tsv").exists()
    assert corpus_hash(out) == CLEAN_HASHES[locale, count]


def test_realistic_same_seed_same_bytes_whatever_the_jobs(realistic, tmp_path):
    out, info = realistic
    again = tmp_path / "again"
    synthesize_corpus(
        again, "es", 12, seed=5, jobs=1, progress=False, conditions=SMALL_REALISTIC
    )
    assert corpus_hash(again) == corpus_hash(out)
    other = tmp_path / "other"
    synthesize_corpus(
        other, "es", 12, seed=6, jobs=1, progress=False, conditions=SMALL_REALISTIC
    )
    assert corpus_hash(other) != corpus_hash(out)


def test_conditions_file_and_summary(realistic):
    out, info = realistic
    rows = read_tsv(out / "conditions.tsv")
    clips = {row["path"] for row in read_tsv(out / "validated.tsv")}
    assert {row["path"] for row in rows} == clips
    # The Common Voice tables keep their columns.
    assert "snr_db" not in read_tsv(out / "train.tsv")[0]
    marker = json.loads((out / "xlt_synth.json").read_text())
    summary = marker["conditions"]
    assert summary == info["conditions"]
    assert summary["preset"] == "realistic" and summary["clips"] == 12
    snrs = [float(r["snr_db"]) for r in rows if r["snr_db"]]
    assert snrs and all(0 <= s <= 30 for s in snrs)
    assert summary["mean_snr_db"] == pytest.approx(np.mean(snrs), abs=0.01)
    for room in summary["rooms"]:
        assert room["rt60_measured"] == pytest.approx(room["rt60_drawn"], rel=0.2)


def test_a_speaker_keeps_voice_rate_pitch_and_vtlp(realistic):
    out, _ = realistic
    by_speaker: dict[str, set] = {}
    for row in read_tsv(out / "conditions.tsv"):
        voice = tuple(row[k] for k in ("vtlp", "rate", "pitch", "pitch_range"))
        by_speaker.setdefault(row["client_id"], set()).add(voice + (row["wordgap"],))
    assert any(len(rows) for rows in by_speaker.values())
    assert all(len(voices) == 1 for voices in by_speaker.values())
    # ... while speakers differ from each other, within the preset's ranges.
    voices = [next(iter(v)) for v in by_speaker.values()]
    assert len(set(voices)) == len(voices)
    for vtlp, rate, *_ in voices:
        assert REALISTIC.vtlp[0] - 0.01 <= float(vtlp) <= REALISTIC.vtlp[1] + 0.01
        assert REALISTIC.rate[0] <= int(rate) <= REALISTIC.rate[1]


@pytest.mark.parametrize("snr", [0.0, 7.5, 30.0])
def test_mix_at_snr_hits_the_drawn_snr(snr):
    rng = np.random.default_rng(int(snr * 10))
    speech = rng.standard_normal(16000).astype(np.float32) * np.hanning(16000)
    noise = rng.standard_normal(16000) * 3
    noisy = mix_at_snr(speech, noise, snr)
    measured = 10 * np.log10(signal_power(speech) / signal_power(noisy - speech))
    assert measured == pytest.approx(snr, abs=0.01)
    # Whatever gain follows, measure_snr finds it again.
    assert measure_snr(0.3 * noisy, speech) == pytest.approx(snr, abs=0.2)


def test_written_clip_snr_matches_the_drawn_one(tmp_path):
    """Noise only: the noisy corpus against the same corpus without noise."""
    noisy = CLEAN.replace(
        noise_probability=1.0, noise_kinds={"coloured": 1.0}, snr=(0.0, 10.0)
    )
    quiet = noisy.replace(noise_probability=0.0)
    paths = {}
    for name, conditions in (("noisy", noisy), ("quiet", quiet)):
        paths[name] = tmp_path / name
        synthesize_corpus(
            paths[name], "es", 4, seed=2, jobs=1, progress=False, conditions=conditions
        )
    rows = read_tsv(paths["noisy"] / "conditions.tsv")
    assert all(row["snr_db"] for row in rows)
    for row in rows:
        a, _ = sf.read(paths["noisy"] / "clips" / row["path"], dtype="float64")
        b, _ = sf.read(paths["quiet"] / "clips" / row["path"], dtype="float64")
        assert len(a) == len(b)
        assert measure_snr(a, b) == pytest.approx(float(row["snr_db"]), abs=1.0)


@pytest.mark.parametrize("k", range(3))
def test_room_impulse_response_has_the_drawn_rt60(k):
    rng = np.random.default_rng([7, k])
    drawn = float(rng.uniform(*REALISTIC.rt60))
    rir, reported = room_impulse_response(drawn, rng)
    measured = pra.experimental.measure_rt60(rir, fs=16000, decay_db=30)
    assert measured == pytest.approx(drawn, rel=0.2)
    assert reported == pytest.approx(measured, rel=0.01)


def test_conditions_from_yaml_and_bad_ones(tmp_path):
    path = tmp_path / "phone.yaml"
    path.write_text("base: realistic\nsnr: [5, 20]\ntelephone_probability: 1.0\n")
    conditions = load_conditions(path)
    assert conditions.snr == (5.0, 20.0) and conditions.telephone_probability == 1
    assert conditions.rt60 == REALISTIC.rt60 and not conditions.is_clean
    assert load_conditions("clean").is_clean and not REALISTIC.is_clean
    (tmp_path / "bad.yaml").write_text("snr: [20, 5]\n")
    with pytest.raises(SynthError, match="snr"):
        synthesize_corpus(tmp_path / "x", "es", 3, conditions=tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("snr: 5\n")
    with pytest.raises(SynthError, match="wrong type"):
        synthesize_corpus(tmp_path / "x", "es", 3, conditions=tmp_path / "bad2.yaml")
    with pytest.raises(SynthError, match="preset"):
        synthesize_corpus(tmp_path / "x", "es", 3, conditions="noisy")
    with pytest.raises(ValueError, match="noise_kinds"):
        Conditions(noise_kinds={"traffic": 1.0})
    assert not (tmp_path / "x").exists()
