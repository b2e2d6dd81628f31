"""The embedded corpus: espeak-ng speech written in the layout of Common Voice.

Common Voice cannot be downloaded everywhere, so ``synthesize_corpus`` (and
``xlt synth``) writes a corpus that looks exactly like a Common Voice release:
``clips/*.mp3`` (16 kHz mono MP3) and ``train.tsv``, ``dev.tsv``, ``test.tsv``,
``validated.tsv`` with the column set of Common Voice v17, plus
``clip_durations.tsv``. Every prep step and recipe then runs the same code on
it as on real Common Voice.

Speech comes from espeak-ng voices; a synthetic speaker is a voice (an accent
for English) with a variant (``+m3``, ``+f2``), a rate, a pitch, a pitch range
and a word gap. Speakers are disjoint across splits, as in Common Voice. Each
clip gets leading/trailing silence, a random gain and light noise at a random
SNR. Everything is drawn from random generators seeded by ``(seed, index)``,
so the corpus is identical whatever the number of worker processes.

``conditions="realistic"`` (``xlt synth --conditions``) records the clips in
drawn acoustic conditions instead (``xlt_plugin.synth.conditions``): wider
speaker ranges with a vocal-tract-length factor, noise of three kinds at
0-30 dB SNR (babble from a pool of other speakers of the corpus), rooms from a
seeded pool of simulated impulse responses, and a microphone/channel. What
each clip got goes into ``conditions.tsv``, a summary into ``xlt_synth.json``.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xlt_plugin.data.commonvoice import (
    CV_AGES,
    CV_COLUMNS,
    CV_GENDERS,
    CV_SPLITS,
    SYNTH_MARKER,
)
from xlt_plugin.extras import require
from xlt_plugin.synth.conditions import (
    CLEAN,
    EFFECTS,
    Conditions,
    apply_conditions,
    load_conditions,
    room_impulse_response,
    vtlp_source_rate,
)
from xlt_plugin.synth.espeak import ESPEAK_SAMPLE_RATE, Espeak, EspeakError
from xlt_plugin.synth.texts import (
    DOMAINS,
    LANGUAGES,
    SentenceGenerator,
    domain_sentence,
    get_language,
    read_text_file,
)

__all__ = [
    "SAMPLE_RATE",
    "Accent",
    "ACCENTS",
    "ENGLISH_ACCENTS",
    "SynthError",
    "Speaker",
    "PolyphaseResampler",
    "split_sizes",
    "synthesize_corpus",
]

#: Sample rate of the written clips.
SAMPLE_RATE = 16000
SPLITS = CV_SPLITS
CONDITIONS_FILE = "conditions.tsv"
_OUR_FILES = {
    "clips",
    "validated.tsv",
    "clip_durations.tsv",
    SYNTH_MARKER,
    CONDITIONS_FILE,
} | {f"{split}.tsv" for split in SPLITS}


class Accent(NamedTuple):
    """An espeak-ng voice and the Common Voice ``accents`` label it stands for."""

    voice: str
    label: str


#: English accents: key -> (espeak-ng voice, label in Common Voice's style).
#: Common Voice lumps RP, Lancashire and West Midlands into "England English";
#: here they keep their own labels so per-accent results can tell them apart.
ENGLISH_ACCENTS: dict[str, Accent] = {
    "us": Accent("en-us", "United States English"),
    "nyc": Accent("en-us-nyc", "United States English (New York City)"),
    "england": Accent("en", "England English"),
    "rp": Accent("en-gb-x-rp", "England English (Received Pronunciation)"),
    "lancashire": Accent("en-gb-x-gbclan", "England English (Lancashire)"),
    "west_midlands": Accent("en-gb-x-gbcwmd", "England English (West Midlands)"),
    "scotland": Accent("en-gb-scotland", "Scottish English"),
    "caribbean": Accent(
        "en-029", "West Indies and Bermuda (Bahamas, Bermuda, Jamaica, Trinidad)"
    ),
}

#: Accents per locale (the first one is the default). Locales not listed have
#: one voice (``LANGUAGES[locale].voice``) and an empty ``accents`` column.
ACCENTS: dict[str, dict[str, Accent]] = {
    "en": ENGLISH_ACCENTS,
    "es": {
        "spain": Accent("es", "España"),
        "latin_america": Accent("es-419", "Hispanoamérica"),
    },
    "pt": {
        "brazil": Accent("pt-br", "Português do Brasil"),
        "portugal": Accent("pt", "Português de Portugal"),
    },
    "fr": {
        "france": Accent("fr", "Français de France"),
        "belgium": Accent("fr-be", "Français de Belgique"),
        "switzerland": Accent("fr-ch", "Français de Suisse"),
    },
}

_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4")
# Common Voice's gender label of an espeak-ng variant (m3 -> male_masculine).
_GENDERS = {label[0]: label for label in CV_GENDERS}
_LOCALE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class SynthError(ValueError):
    """Bad arguments to ``synthesize_corpus``; the message says what to do."""


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one voice with fixed prosody parameters.

    Arguments
    ---------
    locale : str
        Common Voice locale of the corpus.
    voice : str
        espeak-ng voice (``"en-gb-scotland"``).
    variant : str
        espeak-ng variant (``"m3"``), or ``""`` to keep the voice's own.
    rate : int
        Words per minute.
    pitch : int
        Base pitch, 0-100.
    pitch_range : int
        Pitch range, 0-100.
    wordgap : int
        Extra pause between words, in units of 10 ms.
    accent : str
        The ``accents`` label (may be empty).
    vtlp : float
        Vocal-tract-length factor (1.0: espeak-ng's own voice).

    Example
    -------
    >>> spk = Speaker("en", "en-us", "f2", 170, 55, 50, 0, "United States English")
    >>> len(spk.client_id), spk.gender, spk.voice_name
    (128, 'female_feminine', 'en-us+f2')
    """

    locale: str
    voice: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    wordgap: int
    accent: str = ""
    vtlp: float = 1.0

    @property
    def client_id(self) -> str:
        """128 hex characters, like Common Voice's, stable for the parameters."""
        key = "|".join(
            str(v)
            for v in (
                self.locale,
                self.voice,
                self.variant,
                self.rate,
                self.pitch,
                self.pitch_range,
                self.wordgap,
            )
        )
        if self.vtlp != 1.0:
            key += f"|{self.vtlp:.4f}"
        return hashlib.sha512(key.encode("utf-8")).hexdigest()

    @property
    def source_rate(self) -> int:
        """Rate espeak-ng's speech is read at: its own, scaled by ``vtlp``."""
        return round(self.vtlp * ESPEAK_SAMPLE_RATE)

    @property
    def voice_name(self) -> str:
        """The name espeak-ng selects, with the variant."""
        return f"{self.voice}+{self.variant}" if self.variant else self.voice

    @property
    def gender(self) -> str:
        """Common Voice gender label implied by the variant."""
        return _GENDERS.get(self.variant[:1], "")

    @property
    def age(self) -> str:
        """A plausible Common Voice age label, fixed by the client id."""
        return CV_AGES[1 + int(self.client_id[:8], 16) % (len(CV_AGES) - 1)]

    @property
    def parameters(self) -> dict[str, int]:
        """espeak-ng parameters of this speaker.

        The vocal-tract-length warp speeds speech up by ``vtlp``; espeak-ng
        speaks slower by as much, so the clip keeps the speaker's rate.
        """
        rate = self.rate if self.vtlp == 1.0 else round(self.rate / self.vtlp)
        return {
            "rate": min(450, max(80, rate)),
            "pitch": self.pitch,
            "range": self.pitch_range,
            "wordgap": self.wordgap,
        }


class PolyphaseResampler:
    """Band-limited resampling by a rational factor, in numpy.

    A Kaiser-windowed sinc filter is tabulated once per output phase, so each
    output sample is one short dot product. Pure numpy keeps the worker
    processes free of torch and the result independent of thread counts.

    Arguments
    ---------
    orig_freq : int
        Input sample rate.
    new_freq : int
        Output sample rate.
    zero_crossings : int
        Filter half-length, in zero crossings of the sinc.
    rolloff : float
        Cut-off as a fraction of the lower Nyquist frequency.
    beta : float
        Kaiser window shape.

    Example
    -------
    >>> resample = PolyphaseResampler(22050, 16000)
    >>> t = np.arange(22050) / 22050
    >>> y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32))
    >>> len(y), y.dtype
    (16000, dtype('float32'))
    >>> ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> float(np.abs(y[100:-100] - ref[100:-100]).max()) < 1e-3
    True
    """

    def __init__(
        self,
        orig_freq: int,
        new_freq: int,
        zero_crossings: int = 8,
        rolloff: float = 0.92,
        beta: float = 8.0,
    ):
        g = math.gcd(orig_freq, new_freq)
        self.up, self.down = new_freq // g, orig_freq // g
        # Cut-off in cycles per input sample.
        cutoff = rolloff * min(orig_freq, new_freq) / 2 / orig_freq
        half = zero_crossings / (2 * cutoff)
        self.taps = int(math.ceil(half))
        offsets = np.arange(self.up)[:, None] / self.up + (self.taps - 1)
        tau = offsets - np.arange(2 * self.taps)[None, :]
        inside = np.clip(1 - (tau / half) ** 2, 0, None)
        window = np.i0(beta * np.sqrt(inside)) / np.i0(beta) * (np.abs(tau) <= half)
        bank = 2 * cutoff * np.sinc(2 * cutoff * tau) * window
        # Unit gain at DC for every phase.
        self.bank = (bank / bank.sum(axis=1, keepdims=True)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Resample a 1-D float array; returns float32."""
        x = np.asarray(x, dtype=np.float32)
        n_out = -(-len(x) * self.up // self.down)
        out = np.empty(n_out, dtype=np.float32)
        padded = np.pad(x, (self.taps, self.taps + 1))
        step = padded.strides[0]
        # Outputs n, n + up, n + 2 up, ... share a filter phase and their
        # inputs start `down` samples apart: one strided view per phase.
        for first in range(min(self.up, n_out)):
            base, phase = divmod(first * self.down, self.up)
            count = len(range(first, n_out, self.up))
            # The last row ends at floor((n_out - 1) down / up) + 2 taps, which
            # is inside `padded` because n_out = ceil(len(x) up / down).
            rows = np.lib.stride_tricks.as_strided(
                padded[base + 1 :],
                shape=(count, 2 * self.taps),
                strides=(self.down * step, step),
                writeable=False,
            )
            out[first :: self.up] = np.einsum("ij,j->i", rows, self.bank[phase])
        return out


def split_sizes(utterances: int) -> tuple[int, int, int]:
    """Split a total into train/dev/test, about 80/10/10, each at least 1.

    Arguments
    ---------
    utterances : int
        Total number of clips, at least 3.

    Returns
    -------
    tuple of int
        (train, dev, test).

    Example
    -------
    >>> split_sizes(3), split_sizes(12), split_sizes(1000)
    ((1, 1, 1), (10, 1, 1), (800, 100, 100))
    """
    if utterances < 3:
        raise SynthError(
            f"--utterances must be at least 3 (one per split), got {utterances}"
        )
    held_out = max(1, round(utterances * 0.1))
    return utterances - 2 * held_out, held_out, held_out


def _parse_accents(locale: str, accents: str | Sequence[str] | None) -> list[str]:
    table = ACCENTS.get(locale, {})
    if accents is None or accents == "" or accents == []:
        return [next(iter(table))] if table else []
    if not table:
        raise SynthError(
            f"locale {locale!r} has no accent table; accents exist for "
            f"{', '.join(sorted(ACCENTS))}"
        )
    keys = accents.split(",") if isinstance(accents, str) else list(accents)
    keys = [k.strip() for k in keys if k.strip()]
    if keys == ["all"]:
        return list(table)
    unknown = [k for k in keys if k not in table]
    if unknown or not keys:
        raise SynthError(
            f"unknown accent(s) {', '.join(unknown) or '(none)'} for {locale!r}; "
            f"choose from: {', '.join(table)} (or 'all')"
        )
    return list(dict.fromkeys(keys))


def _steps(rng: np.random.Generator, bounds: tuple[int, int], step: int) -> int:
    # A multiple of `step` in [low, high].
    return int(rng.integers(bounds[0] // step, bounds[1] // step + 1)) * step


def _draw_speaker(
    rng: np.random.Generator,
    locale: str,
    voice: str,
    accent: str,
    variants: Sequence[str],
    conditions: Conditions = CLEAN,
) -> Speaker:
    variant = variants[int(rng.integers(0, len(variants)))]
    female = variant.startswith("f")
    c = conditions
    rate = _steps(rng, c.rate, 5)
    pitch = _steps(rng, c.pitch_female if female else c.pitch_male, 2)
    pitch_range = _steps(rng, c.pitch_range, 5)
    wordgap = _steps(rng, c.wordgap, 1)
    vtlp = 1.0
    if c.vtlp != (1.0, 1.0):
        # Drawn last, so the other parameters do not depend on it.
        source = vtlp_source_rate(rng.uniform(*c.vtlp), ESPEAK_SAMPLE_RATE)
        vtlp = source / ESPEAK_SAMPLE_RATE
    return Speaker(
        locale=locale,
        voice=voice,
        variant=variant,
        rate=rate,
        pitch=pitch,
        pitch_range=pitch_range,
        wordgap=wordgap,
        accent=accent,
        vtlp=vtlp,
    )


def _make_speakers(
    seed: int,
    locale: str,
    sizes: Sequence[int],
    voices: Sequence[Accent],
    variants: Sequence[str],
    per_speaker: int,
    conditions: Conditions = CLEAN,
) -> list[list[Speaker]]:
    """Speakers of each split, all distinct (so splits share no speaker)."""
    used: set[str] = set()
    splits = []
    for split_index, size in enumerate(sizes):
        count = max(min(len(voices), size), math.ceil(size / per_speaker))
        speakers = []
        for j in range(count):
            voice, label = voices[j % len(voices)]
            for attempt in range(1000):
                rng = np.random.default_rng([seed, 2, split_index, j, attempt])
                spk = _draw_speaker(rng, locale, voice, label, variants, conditions)
                if spk.client_id not in used:
                    break
            else:
                raise SynthError(
                    "ran out of distinct speakers; raise --per-speaker"
                )  # pragma: no cover
            used.add(spk.client_id)
            speakers.append(spk)
        splits.append(speakers)
    return splits


def _make_sentences(
    seed: int,
    count: int,
    locale: str,
    domain: str | None,
    lines: list[str] | None,
    vocab_size: int,
) -> list[str]:
    if lines is not None:
        order = np.random.default_rng([seed, 3]).permutation(len(lines))
        return [lines[order[i % len(lines)]] for i in range(count)]
    generator = None if domain else SentenceGenerator(locale, vocab_size)
    seen: set[str] = set()
    sentences = []
    for index in range(count):
        # Common Voice reads each sentence once: redraw duplicates.
        for attempt in range(50):
            rng = np.random.default_rng([seed, 0, index, attempt])
            if domain:
                text = domain_sentence(domain, rng)
            else:
                text = generator.sentence(rng)
            if text not in seen:
                break
        seen.add(text)
        sentences.append(text)
    return sentences


# ---------------------------------------------------------------- workers

# Resamplers to 16 kHz by source rate (espeak-ng's 22050 Hz, or a VTLP rate).
_RESAMPLERS: dict[int, PolyphaseResampler] = {}
# Clips rendered after one espeak-ng reset (a reset costs a few ms).
_BLOCK = 8
# Clean clips of corpus speakers that babble noise is made of.
_BABBLE_CLIPS = 16


class _Job(NamedTuple):
    index: int
    text: str
    voice: str
    parameters: dict[str, int]
    path: str
    seed: int
    source_rate: int = ESPEAK_SAMPLE_RATE
    client_id: str = ""


class _Context(NamedTuple):
    """What every clip of a corpus shares: its conditions and pools."""

    conditions: Conditions
    rooms: list[tuple[np.ndarray, float, float]]  # response, measured, drawn RT60
    babble: list[tuple[str, np.ndarray]]


_CONTEXT: _Context | None = None


def _cpu_count() -> int:
    # CPUs this process may run on (a container or taskset may allow fewer).
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _worker_init(context: _Context | None = None) -> None:
    # Ctrl-C is handled once, by the parent, which then stops the pool with
    # SIGTERM: workers must die of it quietly, whatever the parent installed.
    global _CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _CONTEXT = context
    Espeak()


def _speak(job: _Job) -> np.ndarray:
    """espeak-ng speech of a job at 16 kHz (warped by the speaker's VTLP)."""
    resampler = _RESAMPLERS.get(job.source_rate)
    if resampler is None:
        resampler = _RESAMPLERS[job.source_rate] = PolyphaseResampler(
            job.source_rate, SAMPLE_RATE
        )
    tts = Espeak()
    if tts.voice != job.voice:
        tts.set_voice(job.voice)
    tts.set_parameters(**job.parameters)
    speech = tts.synthesize(job.text)
    if len(speech) < ESPEAK_SAMPLE_RATE // 20:
        raise EspeakError(
            f"espeak-ng voice {job.voice} produced no speech for sentence "
            f"{job.index} ({job.text!r}); does the voice read this script?"
        )
    return resampler(speech)


def _light_noise(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``clean`` preset: silence, light white or pink noise, a gain."""
    lead, trail = (rng.uniform(0.05, 0.2, size=2) * SAMPLE_RATE).astype(int)
    audio = np.concatenate(
        [np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)]
    )
    rms = float(np.sqrt(np.mean(speech**2))) + 1e-9
    # A power-of-two length keeps the FFT fast whatever the clip length.
    size = 1 << max(len(audio) - 1, 1).bit_length()
    noise = rng.standard_normal(size).astype(np.float32)
    if rng.random() < 0.5:
        # Pink noise (1/f power) half of the time, white noise otherwise.
        spectrum = np.fft.rfft(noise)
        spectrum[0] = 0
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        noise = np.fft.irfft(spectrum, n=size).astype(np.float32)
    noise = noise[: len(audio)]
    noise *= rms / (float(np.sqrt(np.mean(noise**2))) + 1e-9)
    snr_db = rng.uniform(20.0, 40.0)
    audio = audio + noise * 10 ** (-snr_db / 20)
    audio *= rng.uniform(0.3, 0.9) / (float(np.abs(audio).max()) + 1e-9)
    return audio


def _render(job: _Job) -> tuple[int, int, dict[str, str]]:
    """Synthesize one clip and write it as MP3; returns (index, samples, drawn)."""
    import soundfile as sf

    speech = _speak(job)
    context = _CONTEXT
    drawn: dict[str, str] = {}
    if context is None or context.conditions.is_clean:
        audio = _light_noise(speech, np.random.default_rng([job.seed, 1, job.index]))
    else:

        def rng_for(effect: str) -> np.random.Generator:
            return np.random.default_rng(
                [job.seed, 10, job.index, EFFECTS.index(effect)]
            )

        others = [clip for owner, clip in context.babble if owner != job.client_id]
        audio, drawn = apply_conditions(
            speech, context.conditions, rng_for, context.rooms, others, SAMPLE_RATE
        )
    sf.write(job.path, audio.astype(np.float32), SAMPLE_RATE, format="MP3")
    return job.index, len(audio), drawn


def _render_block(block: list[_Job]) -> list[tuple[int, int, dict[str, str]]]:
    """Render consecutive clips from a freshly reset espeak-ng.

    espeak-ng's output depends slightly on what it spoke before, so each block
    of ``_BLOCK`` clips starts from a reset: the audio then depends on the
    block alone, not on which worker renders it or what it rendered before.
    """
    first = block[0]
    Espeak().reset(seed=first.seed * 1_000_003 + first.index)
    return [_render(job) for job in block]


def _pool_item(task: tuple) -> tuple:
    """One item of a corpus's pools: ``("room", k, seed, rt60 range)`` or
    ``("babble", k, job)``; returns the task's kind, k and the item."""
    if task[0] == "room":
        _, k, seed, rt60 = task
        rng = np.random.default_rng([seed, 20, k])
        drawn = float(rng.uniform(*rt60))
        rir, measured = room_impulse_response(drawn, rng, SAMPLE_RATE)
        return "room", k, (rir, measured, drawn)
    _, k, job = task
    Espeak().reset(seed=job.seed * 1_000_003 + job.index)
    return "babble", k, (job.client_id, _speak(job))


def _map(function, items: list, workers: int, context: _Context | None):
    """Apply ``function`` to every item, in ``workers`` processes, unordered."""
    global _CONTEXT
    workers = min(workers, len(items))
    if workers <= 1:
        previous, _CONTEXT = _CONTEXT, context
        try:
            for item in items:
                yield function(item)
        finally:
            _CONTEXT = previous
        return
    methods = multiprocessing.get_all_start_methods()
    # fork: workers start at once and need not re-import torch-heavy
    # packages; they only use numpy, ctypes, soundfile (and pyroomacoustics).
    mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with mp.Pool(workers, initializer=_worker_init, initargs=(context,)) as pool:
        yield from pool.imap_unordered(function, items)


def _make_context(
    conditions: Conditions, seed: int, babble_jobs: list[_Job], workers: int
) -> _Context:
    """Simulate the room pool and speak the babble pool, in parallel."""
    if conditions.is_clean:
        return _Context(conditions, [], [])
    # Imported once here: forked workers inherit them.
    import scipy.signal  # noqa: F401
    import soundfile  # noqa: F401

    tasks: list[tuple] = []
    if conditions.reverb_probability > 0:
        require("pyroomacoustics", "reverberation (xlt synth --conditions)")
        tasks += [("room", k, seed, conditions.rt60) for k in range(conditions.rooms)]
    if conditions.noise_probability > 0 and conditions.noise_kinds.get("babble", 0):
        tasks += [("babble", k, job) for k, job in enumerate(babble_jobs)]
    rooms: dict[int, tuple] = {}
    babble: dict[int, tuple] = {}
    for kind, k, item in _map(_pool_item, tasks, workers, None):
        (rooms if kind == "room" else babble)[k] = item
    return _Context(
        conditions,
        [rooms[k] for k in sorted(rooms)],
        [babble[k] for k in sorted(babble)],
    )


def _run_jobs(
    jobs: list[_Job], workers: int, progress: bool, context: _Context | None = None
) -> dict[int, tuple[int, dict[str, str]]]:
    """Render every clip; returns index -> (samples, drawn conditions)."""
    from tqdm import tqdm

    blocks = [jobs[i : i + _BLOCK] for i in range(0, len(jobs), _BLOCK)]
    bar = tqdm(
        total=len(jobs),
        desc="xlt synth",
        unit="clip",
        file=sys.stderr,
        disable=not progress,
    )
    results: dict[int, tuple[int, dict[str, str]]] = {}
    try:
        for done in _map(_render_block, blocks, workers, context):
            results.update((index, (n, drawn)) for index, n, drawn in done)
            bar.update(len(done))
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------- output


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_tsv(path: Path, rows: Iterable[Sequence[str]], header: Sequence[str]):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def _prepare_target(out: Path, overwrite: bool) -> list[Path]:
    """Check the output path; create missing parents; return those created."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(
                f"output directory {out} is not empty; pass --overwrite to replace it"
            )
        # --overwrite deletes the old directory: only ever a corpus.
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OUR_FILES)
        if foreign:
            raise SynthError(
                f"refusing to overwrite {out}: it holds {', '.join(foreign[:3])}, "
                "which xlt synth did not write; remove it yourself"
            )
    created = []
    parent = out.parent
    missing = []
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
    except OSError as err:
        _remove_empty(created)
        raise SynthError(
            f"cannot create output directory {out}: {err.strerror or err}"
        ) from None
    if not parent.is_dir():
        raise SynthError(f"cannot create output directory {out}: {parent} is a file")
    return created


def _remove_empty(paths: list[Path]) -> None:
    for path in reversed(paths):
        try:
            path.rmdir()
        except OSError:
            pass


def _check_voices(names: Iterable[str]) -> None:
    tts = Espeak()
    for name in names:
        if not tts.has_voice(name):
            raise SynthError(
                f"espeak-ng has no voice {name!r}; pick a voice from "
                f"{tts.data_path}/lang (e.g. 'en-us', 'de', 'cmn') with an optional "
                "variant from voices/!v (e.g. '+m3')"
            )


def synthesize_corpus(
    out_dir: str | os.PathLike,
    locale: str,
    utterances: int,
    seed: int = 0,
    accents: str | Sequence[str] | None = None,
    domain: str | None = None,
    text_file: str | os.PathLike | None = None,
    voice: str | None = None,
    jobs: int | None = None,
    overwrite: bool = False,
    vocab_size: int = 3000,
    utterances_per_speaker: int = 10,
    progress: bool = True,
    conditions: str | os.PathLike | Conditions | None = "clean",
) -> dict:
    """Write an espeak-ng speech corpus in the layout of a Common Voice release.

    Arguments
    ---------
    out_dir : str or PathLike
        Directory to create (it must not exist or be empty, unless
        ``overwrite``); written atomically through a temporary sibling.
    locale : str
        Common Voice locale (``"en"``, ``"es"``, ``"zh-HK"``; see
        ``xlt_plugin.synth.texts.supported_locales()``). With ``text_file``
        any locale code works, given ``voice``.
    utterances : int
        Total number of clips over train/dev/test (80/10/10), at least 3.
    seed : int
        Seed of every random choice; same arguments and seed give the same
        corpus.
    accents : str or list of str, optional
        Keys of ``ACCENTS[locale]`` (a comma list, or ``"all"``); default:
        the first (US English for ``en``).
    domain : str, optional
        Application domain (``medical``, ``atc``; English only) written to
        the ``sentence_domain`` column.
    text_file : str or PathLike, optional
        Sentences, one per line, instead of generated ones.
    voice : str, optional
        espeak-ng voice to use instead of the locale's (``"sw"``, ``"eu+f2"``).
    jobs : int, optional
        Synthesis processes; default: number of CPUs.
    overwrite : bool
        Replace a non-empty ``out_dir``.
    vocab_size : int
        Number of most frequent words sentences are drawn from.
    utterances_per_speaker : int
        About how many clips each synthetic speaker reads.
    progress : bool
        Show a progress bar on stderr.
    conditions : str, PathLike or Conditions
        Acoustic conditions: ``"clean"`` (the default: the corpus as it
        always was), ``"realistic"``, or a YAML file of
        ``xlt_plugin.synth.conditions.Conditions`` fields. Other than
        ``clean``, what each clip got is written to ``conditions.tsv``.

    Returns
    -------
    dict
        ``out_dir``, ``locale``, ``utterances``, ``speakers`` and ``seconds``
        (each a dict per split), ``total_seconds``, ``accents``, ``domain``,
        and (other than ``clean``) ``conditions``: the summary also written to
        ``xlt_synth.json``.

    Raises
    ------
    SynthError
        For bad arguments (the message says what to do); nothing is written.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     info = synthesize_corpus(
    ...         os.path.join(tmp, "cv"), "es", 3, jobs=1, progress=False
    ...     )
    ...     sorted(os.listdir(os.path.join(tmp, "cv")))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['clip_durations.tsv', 'clips', 'dev.tsv', 'test.tsv', 'train.tsv',
     'validated.tsv', 'xlt_synth.json']
    >>> info["utterances"]
    {'train': 1, 'dev': 1, 'test': 1}
    """
    out = Path(os.path.abspath(out_dir))
    sizes = split_sizes(int(utterances))
    if utterances_per_speaker < 1:
        raise SynthError("utterances_per_speaker must be at least 1")
    if seed < 0:
        raise SynthError(f"--seed must be non-negative, got {seed}")
    if jobs is not None and jobs < 1:
        raise SynthError(f"--jobs must be at least 1, got {jobs}")
    if vocab_size < 50:
        raise SynthError(f"--vocab-size must be at least 50, got {vocab_size}")
    try:
        conditions = load_conditions(conditions)
    except (ValueError, TypeError) as err:
        raise SynthError(str(err)) from None
    lines = _check_text_source(locale, domain, text_file, voice)
    voices, variants, accent_keys = _choose_voices(locale, accents, voice)
    speakers = _make_speakers(
        seed, locale, sizes, voices, variants, utterances_per_speaker, conditions
    )
    # Babble reads sentences of its own, after the corpus's.
    babble_count = 0 if conditions.is_clean else _BABBLE_CLIPS
    try:
        sentences = _make_sentences(
            seed, sum(sizes) + babble_count, locale, domain, lines, int(vocab_size)
        )
    except ValueError as err:
        raise SynthError(str(err)) from None
    plan = []  # (split, speaker, clip name, sentence, index)
    for split, split_speakers, size in zip(SPLITS, speakers, sizes, strict=True):
        for k in range(size):
            index = len(plan)
            name = f"common_voice_{locale}_{10_000_000 + index}.mp3"
            speaker = split_speakers[k % len(split_speakers)]
            plan.append((split, speaker, name, sentences[index], index))

    created = _prepare_target(out, overwrite)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        # mkdtemp makes the directory private (0700); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
    except OSError as err:
        _remove_empty(created)
        raise SynthError(
            f"cannot write in {out.parent}: {err.strerror or err}"
        ) from None
    try:
        (tmp / "clips").mkdir()
        work = [
            _job(i, text, spk, str(tmp / "clips" / n), seed)
            for _, spk, n, text, i in plan
        ]
        everyone = [spk for split_speakers in speakers for spk in split_speakers]
        babble_jobs = [
            _job(
                len(plan) + k,
                sentences[len(plan) + k],
                everyone[k % len(everyone)],
                "",
                seed,
            )
            for k in range(babble_count)
        ]
        workers = jobs or _cpu_count()
        context = _make_context(conditions, seed, babble_jobs, workers)
        rendered = _run_jobs(work, workers, progress, context)
        lengths = {i: n for i, (n, _) in rendered.items()}
        _write_tables(tmp, plan, lengths, locale, domain or "")
        summary = None
        if not conditions.is_clean:
            summary = _write_conditions(tmp, plan, rendered, context)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise

    seconds = {s: 0.0 for s in SPLITS}
    for split, _, _, _, i in plan:
        seconds[split] += lengths[i] / SAMPLE_RATE
    return {
        "out_dir": str(out),
        "locale": locale,
        "utterances": dict(zip(SPLITS, sizes, strict=True)),
        "speakers": {s: len(spk) for s, spk in zip(SPLITS, speakers, strict=True)},
        "seconds": {s: round(v, 2) for s, v in seconds.items()},
        "total_seconds": round(sum(seconds.values()), 2),
        "accents": [ACCENTS[locale][k].label for k in accent_keys],
        "domain": domain or "",
    } | ({"conditions": summary} if summary else {})


def _job(index: int, text: str, speaker: Speaker, path: str, seed: int) -> _Job:
    return _Job(
        index,
        text,
        speaker.voice_name,
        speaker.parameters,
        path,
        seed,
        speaker.source_rate,
        speaker.client_id,
    )


_CONDITION_COLUMNS = (
    "path",
    "client_id",
    "vtlp",
    "rate",
    "pitch",
    "pitch_range",
    "wordgap",
    "silence_ms",
    "noise",
    "snr_db",
    "room",
    "rt60",
    "eq",
    "band",
    "codec",
    "peak",
    "clipped",
)


def _write_conditions(
    folder: Path,
    plan: list[tuple[str, Speaker, str, str, int]],
    rendered: dict[int, tuple[int, dict[str, str]]],
    context: _Context,
) -> dict:
    """Write ``conditions.tsv`` and add a summary to ``xlt_synth.json``."""
    rows = []
    for _, spk, name, _, i in plan:
        drawn = rendered[i][1]
        speaker = {
            "path": name,
            "client_id": spk.client_id,
            "vtlp": f"{spk.vtlp:.4f}",
            "rate": str(spk.rate),
            "pitch": str(spk.pitch),
            "pitch_range": str(spk.pitch_range),
            "wordgap": str(spk.wordgap),
        }
        row = speaker | drawn
        rows.append([row.get(column, "") for column in _CONDITION_COLUMNS])
    _write_tsv(folder / CONDITIONS_FILE, rows, _CONDITION_COLUMNS)
    clips = [d for _, d in rendered.values()]
    snrs = [float(d["snr_db"]) for d in clips if d.get("snr_db")]
    kinds: dict[str, int] = {}
    for d in clips:
        kind = d.get("noise", "").split(":")[0] or "none"
        kinds[kind] = kinds.get(kind, 0) + 1

    def share(key: str) -> float:
        return round(sum(1 for d in clips if d.get(key)) / max(1, len(clips)), 3)

    summary = {
        "preset": context.conditions.name,
        "ranges": context.conditions.summary(),
        "rooms": [
            {"rt60_drawn": round(drawn, 3), "rt60_measured": round(measured, 3)}
            for _, measured, drawn in context.rooms
        ],
        "clips": len(clips),
        "noise_kinds": dict(sorted(kinds.items())),
        "mean_snr_db": round(float(np.mean(snrs)), 2) if snrs else None,
        "share": {k: share(k) for k in ("room", "eq", "band", "codec", "clipped")},
    }
    marker = json.loads((folder / SYNTH_MARKER).read_text("utf-8"))
    marker["conditions"] = summary
    (folder / SYNTH_MARKER).write_text(json.dumps(marker, indent=2) + "\n", "utf-8")
    return summary


def _check_text_source(
    locale: str,
    domain: str | None,
    text_file: str | os.PathLike | None,
    voice: str | None,
) -> list[str] | None:
    """Validate where sentences come from; return the text file's lines."""
    if not _LOCALE_PATTERN.match(locale or ""):
        raise SynthError(
            f"locale {locale!r} is not a Common Voice locale code like 'es' or 'zh-HK'"
        )
    lines = None
    if text_file is not None:
        if domain:
            raise SynthError("use either --domain or --text, not both")
        try:
            lines = read_text_file(text_file)
        except ValueError as err:
            raise SynthError(str(err)) from None
    if locale not in LANGUAGES and (lines is None or not voice):
        try:
            get_language(locale)
        except ValueError as err:
            raise SynthError(str(err)) from None
    if domain is not None:
        if domain not in DOMAINS:
            raise SynthError(
                f"unknown domain {domain!r}; known domains: "
                f"{', '.join(sorted(DOMAINS))}"
            )
        if locale != "en":
            raise SynthError(
                f"domain sentences are English; use --lang en, not {locale!r}"
            )
    return lines


def _choose_voices(
    locale: str, accents: str | Sequence[str] | None, voice: str | None
) -> tuple[list[Accent], list[str], list[str]]:
    """Return (voices with their accent labels, variants, accent keys)."""
    if voice:
        if accents:
            raise SynthError("use either --voice or --accents, not both")
        base, _, variant = voice.partition("+")
        voices, variants, keys = [Accent(base, "")], [variant] if variant else [], []
    else:
        keys = _parse_accents(locale, accents)
        table = ACCENTS.get(locale, {})
        voices = [table[k] for k in keys] or [Accent(LANGUAGES[locale].voice, "")]
        variants = []
    variants = variants or list(_MALE_VARIANTS + _FEMALE_VARIANTS)
    _check_voices([v.voice for v in voices])
    _check_voices([f"{voices[0].voice}+{variant}" for variant in variants])
    return voices, variants, keys


def _write_tables(
    folder: Path,
    plan: list[tuple[str, Speaker, str, str, int]],
    lengths: dict[int, int],
    locale: str,
    domain: str,
) -> None:
    """Write the split files, validated.tsv and clip_durations.tsv."""
    rows: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
    for split, spk, name, text, _ in plan:
        # Common Voice v17 columns; a validated clip has more up than down votes.
        rows[split].append(
            [
                spk.client_id,
                name,
                _sha256(text),
                text,
                domain,
                "2",
                "0",
                spk.age,
                spk.gender,
                spk.accent,
                "",
                locale,
                "",
            ]
        )
    for split in SPLITS:
        _write_tsv(folder / f"{split}.tsv", rows[split], CV_COLUMNS)
    validated = [row for split in SPLITS for row in rows[split]]
    _write_tsv(folder / "validated.tsv", validated, CV_COLUMNS)
    durations = [
        [name, str(round(1000 * lengths[i] / SAMPLE_RATE))] for _, _, name, _, i in plan
    ]
    _write_tsv(folder / "clip_durations.tsv", durations, ("clip", "duration[ms]"))
    marker = {
        "generator": "xlt synth (espeak-ng through espeakng-loader)",
        "synthetic": True,
        "locale": locale,
        "domain": domain or None,
        "utterances": {split: len(rows[split]) for split in SPLITS},
    }
    (folder / SYNTH_MARKER).write_text(json.dumps(marker, indent=2) + "\n", "utf-8")


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished corpus into place; an old ``out`` is removed last."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / "corpus")
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / "corpus", out)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
