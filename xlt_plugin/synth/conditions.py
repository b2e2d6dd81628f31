"""Acoustic conditions of the embedded corpus: noise, rooms, channels, speakers.

espeak-ng speech is far cleaner than Common Voice, which thousands of people
read into phone and laptop microphones in noisy rooms. ``Conditions`` holds
the RANGES the synthesizer draws from; each effect is one small function on
numpy arrays:

* additive noise at a drawn SNR (``mix_at_snr``): stationary coloured noise
  (``coloured_noise``), babble of other speakers of the same corpus
  (``babble_noise``), non-stationary noise: bursts, mains hum, tones
  (``nonstationary_noise``);
* reverberation (``reverberate``) with room impulse responses simulated by
  pyroomacoustics (``room_impulse_response``), a pool of rooms per corpus;
* the channel: a random microphone EQ (``random_eq``), band-limiting with a
  telephone band sometimes (``band_limit``), a low-bitrate codec pass
  (``codec``), gain and occasional clipping (``set_level``);
* the speaker: rate, pitch, pitch range and pauses between words (espeak-ng
  parameters) and a vocal-tract-length factor (``vtlp_source_rate``), drawn
  once per SPEAKER by the corpus; leading and trailing silence per clip.

``CLEAN`` is the corpus as it always was (light white or pink noise at
20-40 dB, nothing else); ``REALISTIC`` switches everything on. A YAML file can
set any field, starting from a preset (``base: realistic``).

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Conditions",
    "CLEAN",
    "REALISTIC",
    "PRESETS",
    "load_conditions",
    "signal_power",
    "measure_snr",
    "mix_at_snr",
    "coloured_noise",
    "babble_noise",
    "nonstationary_noise",
    "room_impulse_response",
    "reverberate",
    "random_eq",
    "band_limit",
    "codec",
    "set_level",
    "vtlp_source_rate",
    "apply_conditions",
]

Range = tuple[float, float]


@dataclass(frozen=True)
class Conditions:
    """Ranges from which speaker and clip conditions are drawn (uniformly).

    A probability of 0 switches an effect off; a range ``(a, a)`` fixes a value.

    Arguments
    ---------
    name : str
        Preset name or YAML file, for the record.
    rate, pitch_male, pitch_female, pitch_range, wordgap : tuple of int
        Per speaker, espeak-ng units: words per minute, base pitch (0-100) of
        male and female variants, pitch range (0-100), pause between words
        (10 ms units).
    vtlp : tuple of float
        Per speaker vocal-tract-length factor (> 1: shorter tract, higher
        formants), applied by resampling.
    silence : tuple of float
        Leading and trailing silence, seconds (each drawn).
    noise_probability : float
        Chance that a clip gets the noise of ``noise_kinds``.
    noise_kinds : dict of str to float
        Weights of ``coloured``, ``babble`` and ``nonstationary``.
    snr : tuple of float
        Signal-to-noise ratio in dB, over the whole clip, where the noise is
        added (in the room, before the microphone EQ, band and codec, which
        then change the SNR of the written clip by a dB or two).
    babble_speakers : tuple of int
        How many other clips of the corpus make one babble.
    reverb_probability : float
        Chance of reverberation.
    rt60 : tuple of float
        Reverberation time of the rooms, seconds.
    rooms : int
        Size of the corpus's pool of simulated rooms.
    eq_probability : float
        Chance of a random microphone EQ.
    eq_gain_db : float
        Largest boost or cut of one EQ band, dB.
    telephone_probability : float
        Chance of the telephone band (300-3400 Hz).
    lowpass_probability : float
        Chance of a low-pass at a cut-off drawn from ``lowpass``.
    lowpass : tuple of float
        Cut-off range, Hz.
    mp3_probability : float
        Chance of a low-bitrate MP3 pass (before the clip's own MP3).
    mulaw_probability : float
        Chance of 8-bit mu-law quantisation.
    peak : tuple of float
        Peak level of the written clip (linear, full scale 1).
    clip_probability : float
        Chance that the clip is driven into clipping.
    overdrive : tuple of float
        Peak before clipping at full scale, when clipped.

    Example
    -------
    >>> REALISTIC.snr, CLEAN.is_clean, REALISTIC.is_clean
    ((0.0, 30.0), True, False)
    >>> REALISTIC.replace(snr=(10, 10)).snr
    (10.0, 10.0)
    """

    name: str = "clean"
    rate: tuple[int, int] = (140, 200)
    pitch_male: tuple[int, int] = (20, 60)
    pitch_female: tuple[int, int] = (40, 70)
    pitch_range: tuple[int, int] = (30, 80)
    wordgap: tuple[int, int] = (0, 2)
    vtlp: Range = (1.0, 1.0)
    silence: Range = (0.05, 0.2)
    noise_probability: float = 0.0
    noise_kinds: Mapping[str, float] = field(
        default_factory=lambda: {"coloured": 0.4, "babble": 0.35, "nonstationary": 0.25}
    )
    snr: Range = (0.0, 30.0)
    babble_speakers: tuple[int, int] = (3, 6)
    reverb_probability: float = 0.0
    rt60: Range = (0.15, 0.8)
    rooms: int = 12
    eq_probability: float = 0.0
    eq_gain_db: float = 8.0
    telephone_probability: float = 0.0
    lowpass_probability: float = 0.0
    lowpass: Range = (3500.0, 7500.0)
    mp3_probability: float = 0.0
    mulaw_probability: float = 0.0
    peak: Range = (0.3, 0.9)
    clip_probability: float = 0.0
    overdrive: Range = (1.2, 3.0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_range = f.type == "Range" or f.type.startswith("tuple")
            if is_range != isinstance(value, list | tuple):
                raise ValueError(f"conditions: {f.name} has the wrong type: {value!r}")
            if is_range:
                cast = int if f.type.startswith("tuple[int") else float
                if len(value) != 2 or float(value[0]) > float(value[1]):
                    raise ValueError(
                        f"conditions: {f.name} must be [low, high], got {value!r}"
                    )
                object.__setattr__(self, f.name, (cast(value[0]), cast(value[1])))
            elif f.name.endswith("probability") and not 0 <= float(value) <= 1:
                raise ValueError(f"conditions: {f.name} must be in [0, 1]")
        kinds = dict(self.noise_kinds)
        unknown = set(kinds) - {"coloured", "babble", "nonstationary"}
        if unknown or not kinds or min(kinds.values()) < 0 or sum(kinds.values()) <= 0:
            raise ValueError(
                "conditions: noise_kinds weighs coloured, babble, nonstationary, "
                f"got {kinds!r}"
            )
        object.__setattr__(self, "noise_kinds", kinds)
        if self.babble_speakers[0] < 1 or self.rooms < 1:
            raise ValueError("conditions: babble_speakers and rooms must be >= 1")
        if not 0.5 <= self.vtlp[0] <= self.vtlp[1] <= 2.0:
            raise ValueError("conditions: vtlp must lie in [0.5, 2.0]")

    @property
    def is_clean(self) -> bool:
        """True for the corpus as it always was (the ``clean`` preset)."""
        return dataclasses.replace(self, name="clean") == CLEAN

    def replace(self, **changes) -> Conditions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict:
        """The ranges as a JSON-ready dict (for ``xlt_synth.json``)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }


#: The corpus as it always was: light white or pink noise at 20-40 dB.
CLEAN = Conditions()

#: Phone and laptop microphones in ordinary rooms.
REALISTIC = Conditions(
    name="realistic",
    rate=(110, 230),
    pitch_male=(5, 65),
    pitch_female=(30, 85),
    pitch_range=(15, 95),
    wordgap=(0, 8),
    vtlp=(0.88, 1.12),
    silence=(0.05, 1.0),
    noise_probability=0.9,
    snr=(0.0, 30.0),
    reverb_probability=0.6,
    eq_probability=0.7,
    telephone_probability=0.1,
    lowpass_probability=0.25,
    mp3_probability=0.15,
    mulaw_probability=0.1,
    peak=(0.05, 0.95),
    clip_probability=0.05,
)

PRESETS: dict[str, Conditions] = {"clean": CLEAN, "realistic": REALISTIC}


def load_conditions(spec: str | os.PathLike | Conditions | None) -> Conditions:
    """A preset name, a YAML file of fields, or a ``Conditions``.

    The YAML file sets any field of ``Conditions``; ``base:`` names the preset
    it starts from (default ``clean``).

    Example
    -------
    >>> load_conditions("realistic") is REALISTIC, load_conditions(None).is_clean
    (True, True)
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "c.yaml")
    ...     _ = open(path, "w").write("base: realistic\\nsnr: [5, 15]\\n")
    ...     c = load_conditions(path)
    >>> c.snr, c.reverb_probability, c.name
    ((5.0, 15.0), 0.6, 'c.yaml')
    """
    if spec is None:
        return CLEAN
    if isinstance(spec, Conditions):
        return spec
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"conditions {str(spec)!r}: not a preset ({', '.join(PRESETS)}) "
            "nor a YAML file"
        )
    import yaml

    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of condition fields")
    base = PRESETS.get(str(data.pop("base", "clean")))
    if base is None:
        raise ValueError(f"{path}: base must be one of {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(Conditions)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown condition field(s) {', '.join(unknown)}")
    return base.replace(name=path.name, **data)


# ------------------------------------------------------------- noise


def signal_power(x: np.ndarray) -> float:
    """Mean square of a signal.

    Example
    -------
    >>> signal_power(np.array([1.0, -1.0, 1.0, -1.0]))
    1.0
    """
    return float(np.mean(np.square(x, dtype=np.float64)))


def measure_snr(noisy: np.ndarray, clean: np.ndarray) -> float:
    """SNR (dB) of ``noisy`` against its clean version, any gain allowed.

    The clean signal is fitted to the noisy one by least squares; the rest
    is the noise.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    >>> round(measure_snr(0.5 * (s + 0.1 * n), s))
    20
    """
    noisy = np.asarray(noisy, np.float64)
    clean = np.asarray(clean, np.float64)
    gain = float(noisy @ clean) / (float(clean @ clean) + 1e-20)
    rest = noisy - gain * clean
    return 10 * math.log10(signal_power(gain * clean) / (signal_power(rest) + 1e-20))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` scaled so that the whole clip has the given SNR.

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> s = rng.standard_normal(8000).astype(np.float32)
    >>> noisy = mix_at_snr(s, rng.standard_normal(8000), 12.5)
    >>> round(10 * math.log10(signal_power(s) / signal_power(noisy - s)), 2)
    12.5
    """
    noise = np.asarray(noise, np.float64)
    scale = math.sqrt(
        signal_power(speech) / (signal_power(noise) + 1e-20) / 10 ** (snr_db / 10)
    )
    return (speech + scale * noise).astype(np.float32)


def _fft_size(n: int) -> int:
    # A length with small prime factors keeps the FFT fast.
    from scipy.fft import next_fast_len

    return next_fast_len(max(n, 2), real=True)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise with power spectrum ~ 1/f^exponent, unit power.

    0 is white, 1 pink, 2 brown.

    Example
    -------
    >>> x = coloured_noise(16000, 1.0, np.random.default_rng(0))
    >>> x.shape, round(signal_power(x), 6)
    ((16000,), 1.0)
    """
    size = _fft_size(n)
    spectrum = np.fft.rfft(rng.standard_normal(size, dtype=np.float32))
    spectrum[0] = 0
    spectrum[1:] /= np.arange(1, len(spectrum)) ** (exponent / 2)
    x = np.fft.irfft(spectrum, n=size)[:n]
    return x / math.sqrt(signal_power(x) + 1e-20)


def babble_noise(
    n: int, voices: Sequence[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Babble: several clean clips of other speakers, looped and summed.

    Each voice starts at a random offset and has a random level within 6 dB.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> voices = [rng.standard_normal(3000) for _ in range(4)]
    >>> babble_noise(10000, voices, rng).shape
    (10000,)
    """
    out = np.zeros(n)
    for voice in voices:
        voice = np.asarray(voice, np.float64)
        voice = voice / math.sqrt(signal_power(voice) + 1e-20)
        start = int(rng.integers(0, len(voice)))
        looped = np.resize(np.roll(voice, -start), n)
        out += looped * 10 ** (-rng.uniform(0, 6) / 20)
    return out


def _fade(length: int, fade: int) -> np.ndarray:
    # A raised-cosine fade in and out over `length` samples.
    env = np.ones(length)
    fade = max(1, min(fade, length // 2))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    env[:fade] *= ramp
    env[length - fade :] *= ramp[::-1]
    return env


def nonstationary_noise(
    n: int, rng: np.random.Generator, sample_rate: int = 16000
) -> tuple[np.ndarray, str]:
    """Bursts of noise, mains hum or tones (one of them); returns (noise, kind).

    Bursts (clatter, doors) are 2-7 faded segments of coloured noise, tones
    (phones, beeps) 2-7 faded sine waves of 300-3000 Hz, 50-600 ms each; hum
    is 50 or 60 Hz with harmonics over a faint hiss.

    Example
    -------
    >>> x, kind = nonstationary_noise(16000, np.random.default_rng(0))
    >>> x.shape, kind in ("bursts", "hum", "tones"), bool(np.any(x))
    ((16000,), True, True)
    """
    kind = ("bursts", "hum", "tones")[int(rng.integers(0, 3))]
    if kind == "hum":
        t = np.arange(n) / sample_rate
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        x = 0.05 * rng.standard_normal(n)
        for k in range(1, 8):
            phase = rng.uniform(0, 2 * np.pi)
            x += rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + phase)
        return x, kind
    x = np.zeros(n)
    for _ in range(int(rng.integers(2, 8))):
        length = min(n, max(2, int(rng.uniform(0.05, 0.6) * sample_rate)))
        start = int(rng.integers(0, n - length + 1))
        if kind == "bursts":
            segment = coloured_noise(length, rng.uniform(0, 2), rng)
        else:
            t = np.arange(length) / sample_rate
            segment = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
        fade = int(0.01 * sample_rate)
        x[start : start + length] += _fade(length, fade) * segment * rng.uniform(0.3, 1)
    return x, kind


# ------------------------------------------------------------- rooms


def room_impulse_response(
    rt60: float,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    tolerance: float = 0.1,
    geometries: int = 3,
) -> tuple[np.ndarray, float]:
    """Simulate a shoebox room of the given RT60 with pyroomacoustics.

    A room of random size gets wall absorption from Sabine's formula
    (``pyroomacoustics.inverse_sabine``); source and microphone sit at random
    places. The impulse response comes from the image-source method for early
    reflections and ray tracing for the tail. Sabine's formula misjudges
    elongated rooms, so the target is corrected (three tries per room, up to
    ``geometries`` rooms) until the RT60 measured on the response
    (``pyroomacoustics.experimental.measure_rt60``) is within ``tolerance``;
    otherwise the closest response is returned.

    Returns
    -------
    (numpy.ndarray, float)
        The response (float32, starting at the direct path) and its measured
        RT60 in seconds.

    Example
    -------
    >>> h, measured = room_impulse_response(0.4, np.random.default_rng(0))
    >>> h.dtype, abs(measured / 0.4 - 1) < 0.2
    (dtype('float32'), True)
    """
    from xlt_plugin.extras import require

    pra = require("pyroomacoustics", "reverberation (xlt synth --conditions)")
    from pyroomacoustics.experimental import measure_rt60

    best: tuple[np.ndarray, float] | None = None
    for attempt in range(3 * geometries):
        if attempt % 3 == 0:
            # A new room, source and microphone (after 3 tries in one room).
            dims = np.array(
                [rng.uniform(3.0, 10.0), rng.uniform(2.5, 8.0), rng.uniform(2.4, 3.6)]
            )
            source = dims * rng.uniform(0.15, 0.85, 3)
            mic = dims * rng.uniform(0.15, 0.85, 3)
            target = rt60
        # pyroomacoustics' ray tracer has generators of its own: seed them.
        seeds = rng.integers(0, 2**63, size=2)
        pra.random.seed(numpy=int(seeds[0]), libroom=int(seeds[1]))
        try:
            absorption, _order = pra.inverse_sabine(target, dims)
        except ValueError:  # too large a room for so short an RT60
            continue
        room = pra.ShoeBox(
            dims,
            fs=sample_rate,
            materials=pra.Material(float(absorption)),
            max_order=3,
            ray_tracing=True,
            air_absorption=False,
            use_rand_ism=False,
        )
        room.set_ray_tracing(receiver_radius=0.5, n_rays=1000, energy_thres=1e-5)
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        measured = float(measure_rt60(h, fs=sample_rate, decay_db=30))
        if not math.isfinite(measured) or measured <= 0:
            continue
        if best is None or abs(measured / rt60 - 1) < abs(best[1] / rt60 - 1):
            best = (h, measured)
        if abs(measured / rt60 - 1) <= tolerance:
            break
        target *= rt60 / measured
    if best is None:
        raise ValueError(f"could not simulate a room of RT60 {rt60} s")
    h, measured = best
    h = h[int(np.argmax(np.abs(h))) :]
    return (h / np.abs(h).max()).astype(np.float32), measured


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response; same length and RMS as ``audio``.

    The response starts at its direct path, so the speech does not move.

    Example
    -------
    >>> x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    >>> y = reverberate(x, np.array([1.0, 0.0, 0.5]))
    >>> y.shape, round(signal_power(y) / signal_power(x), 4)
    ((4000,), 1.0)
    """
    from scipy.signal import fftconvolve

    wet = fftconvolve(audio, rir)[: len(audio)]
    return (wet * math.sqrt(signal_power(audio) / (signal_power(wet) + 1e-20))).astype(
        np.float32
    )


# ------------------------------------------------------------- channel


def _peaking(freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    # RBJ audio-EQ-cookbook peaking filter as one second-order section.
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return np.array(b + den) / den[0]


def random_eq(
    audio: np.ndarray,
    rng: np.random.Generator,
    max_gain_db: float,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, str]:
    """A microphone-like colouring: three peaking filters of random gain.

    Returns the filtered audio and a description (``"f:gain,..."``).

    Example
    -------
    >>> y, desc = random_eq(np.ones(100), np.random.default_rng(0), 6.0)
    >>> y.shape, desc.count(":")
    ((100,), 3)
    """
    from scipy.signal import sosfilt

    bands = []
    sos = []
    for low, high in ((80, 400), (400, 2500), (2500, 7000)):
        freq = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        gain = float(rng.uniform(-max_gain_db, max_gain_db))
        sos.append(_peaking(freq, gain, rng.uniform(0.5, 2.0), sample_rate))
        bands.append(f"{freq:.0f}:{gain:+.1f}")
    return sosfilt(np.array(sos), audio).astype(np.float32), ",".join(bands)


def band_limit(
    audio: np.ndarray, low: float | None, high: float, sample_rate: int = 16000
) -> np.ndarray:
    """Band-pass (``low`` to ``high`` Hz) or low-pass (``low`` None).

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> y = band_limit(np.sin(2 * np.pi * 6000 * t), 300, 3400)
    >>> float(np.abs(y[1000:]).max()) < 0.01
    True
    """
    from scipy.signal import butter, sosfilt

    if low is None:
        sos = butter(8, high, "lowpass", fs=sample_rate, output="sos")
    else:
        sos = butter(4, [low, high], "bandpass", fs=sample_rate, output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def codec(audio: np.ndarray, kind: str, sample_rate: int = 16000) -> np.ndarray:
    """A lossy codec pass: ``"mp3"`` or ``"mulaw"``.

    ``mp3`` is narrowband MP3 through soundfile: 8 kHz, about 16 kbit/s (a
    voice memo or VoIP call; half the cost of a 16 kHz pass). ``mulaw`` is
    8-bit mu-law quantisation (G.711's companding).

    Example
    -------
    >>> x = 0.5 * np.sin(np.arange(16000) / 5).astype(np.float32)
    >>> y = codec(x, "mulaw")
    >>> y.shape, 0 < float(np.abs(y - x).max()) < 0.02
    ((16000,), True)
    """
    audio = np.asarray(audio, np.float32)
    if kind == "mulaw":
        mu = 255.0
        peak = float(np.abs(audio).max()) + 1e-9
        x = audio / peak
        y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
        y = np.round(y * 127) / 127
        return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu * peak).astype(
            np.float32
        )
    if kind != "mp3":
        raise ValueError(f"unknown codec {kind!r}")
    import soundfile as sf
    from scipy.signal import resample_poly

    peak = float(np.abs(audio).max()) + 1e-9
    narrow = resample_poly(audio * (0.9 / peak), 8000, sample_rate)
    buffer = io.BytesIO()
    sf.write(
        buffer,
        narrow.astype(np.float32),
        8000,
        format="MP3",
        compression_level=0.9,
        bitrate_mode="CONSTANT",
    )
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = resample_poly(decoded, sample_rate, 8000)
    out = np.zeros_like(audio)
    out[: min(len(audio), len(decoded))] = decoded[: len(audio)]
    return out * (peak / 0.9)


def set_level(
    audio: np.ndarray, peak: float, overdrive: float | None = None
) -> np.ndarray:
    """Scale to a peak level; with ``overdrive``, drive past full scale and clip.

    Example
    -------
    >>> x = np.array([0.1, -0.2, 0.4])
    >>> [round(float(v), 3) for v in set_level(x, 0.8)], set_level(x, 0.8, 2.0).tolist()
    ([0.2, -0.4, 0.8], [0.5, -1.0, 1.0])
    """
    level = overdrive if overdrive is not None else peak
    y = np.asarray(audio, np.float32) * np.float32(level / (np.abs(audio).max() + 1e-9))
    if overdrive is not None:
        y = np.clip(y, -1.0, 1.0)
    return y


# ------------------------------------------------------------- speaker


def vtlp_source_rate(factor: float, sample_rate: int, step: int = 200) -> int:
    """Rate to read speech at for a vocal-tract-length factor.

    Reading 22050 Hz speech as if it were sampled at ``factor * 22050`` and
    resampling to 16 kHz scales every frequency (formants, pitch) by
    ``factor`` and durations by ``1 / factor``. The rate is rounded to a
    multiple of ``step`` so the polyphase resampler stays small; the
    effective factor is ``result / sample_rate``.

    Example
    -------
    >>> vtlp_source_rate(1.0, 22050), vtlp_source_rate(1.1, 22050)
    (22000, 24200)
    """
    return int(step * round(factor * sample_rate / step))


# ------------------------------------------------------------- per clip

# Independent random streams per effect: switching one effect off leaves the
# draws of the others (and so their output) unchanged.
EFFECTS = ("silence", "reverb", "noise", "eq", "band", "codec", "level")


def apply_conditions(
    speech: np.ndarray,
    conditions: Conditions,
    rng_for: Callable[[str], np.random.Generator],
    rooms: Sequence[tuple[np.ndarray, float]] = (),
    babble: Sequence[np.ndarray] = (),
    sample_rate: int = 16000,
) -> tuple[np.ndarray, dict[str, str]]:
    """Turn clean speech into a clip recorded in drawn conditions.

    Order: silence padding, room, noise, microphone EQ, band, codec, level.

    Arguments
    ---------
    speech : numpy.ndarray
        Clean speech at ``sample_rate``.
    conditions : Conditions
        The ranges.
    rng_for : callable
        Returns the random generator of an effect (one of ``EFFECTS``).
    rooms : sequence of (numpy.ndarray, float)
        The corpus's room pool: impulse responses and their RT60.
    babble : sequence of numpy.ndarray
        Clean clips of other speakers to make babble of.
    sample_rate : int
        Sample rate.

    Returns
    -------
    (numpy.ndarray, dict)
        The clip (float32) and what was drawn, as strings (columns of
        ``conditions.tsv``; empty when an effect is off).

    Example
    -------
    >>> speech = np.sin(np.arange(16000) / 3).astype(np.float32)
    >>> rngs = lambda effect: np.random.default_rng([0, EFFECTS.index(effect)])
    >>> clip, drawn = apply_conditions(speech, REALISTIC.replace(
    ...     reverb_probability=0.0, noise_kinds={"coloured": 1.0}), rngs)
    >>> drawn["noise"].split(":")[0], len(clip) > len(speech)
    ('coloured', True)
    """
    c = conditions
    drawn = dict.fromkeys(
        ("noise", "snr_db", "room", "rt60", "eq", "band", "codec", "peak", "clipped"),
        "",
    )
    rng = rng_for("silence")
    lead, trail = (rng.uniform(*c.silence, size=2) * sample_rate).astype(int)
    drawn["silence_ms"] = f"{1000 * lead // sample_rate},{1000 * trail // sample_rate}"
    audio = np.concatenate(
        [
            np.zeros(lead, np.float32),
            speech.astype(np.float32),
            np.zeros(trail, np.float32),
        ]
    )
    rng = rng_for("reverb")
    if rooms and rng.random() < c.reverb_probability:
        room = int(rng.integers(0, len(rooms)))
        audio = reverberate(audio, rooms[room][0])
        drawn["room"], drawn["rt60"] = str(room), f"{rooms[room][1]:.3f}"
    rng = rng_for("noise")
    if rng.random() < c.noise_probability:
        kinds = list(c.noise_kinds)
        weights = np.array([c.noise_kinds[k] for k in kinds], float)
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "babble" and len(babble) == 0:
            kind = "coloured"
        snr = float(rng.uniform(*c.snr))
        if kind == "coloured":
            exponent = rng.uniform(0.0, 2.0)
            noise = coloured_noise(len(audio), exponent, rng)
            kind = f"coloured:{exponent:.2f}"
        elif kind == "babble":
            count = int(rng.integers(c.babble_speakers[0], c.babble_speakers[1] + 1))
            picks = rng.choice(len(babble), size=min(count, len(babble)), replace=False)
            noise = babble_noise(len(audio), [babble[i] for i in picks], rng)
            kind = f"babble:{len(picks)}"
        else:
            noise, sub = nonstationary_noise(len(audio), rng, sample_rate)
            kind = f"nonstationary:{sub}"
        audio = mix_at_snr(audio, noise, snr)
        drawn["noise"], drawn["snr_db"] = kind, f"{snr:.2f}"
    rng = rng_for("eq")
    if rng.random() < c.eq_probability:
        audio, drawn["eq"] = random_eq(audio, rng, c.eq_gain_db, sample_rate)
    rng = rng_for("band")
    draw = rng.random()
    if draw < c.telephone_probability:
        audio, drawn["band"] = band_limit(audio, 300, 3400, sample_rate), "300-3400"
    elif draw < c.telephone_probability + c.lowpass_probability:
        cutoff = float(rng.uniform(*c.lowpass))
        audio, drawn["band"] = (
            band_limit(audio, None, cutoff, sample_rate),
            f"0-{cutoff:.0f}",
        )
    rng = rng_for("codec")
    draw = rng.random()
    if draw < c.mp3_probability:
        audio, drawn["codec"] = codec(audio, "mp3", sample_rate), "mp3"
    elif draw < c.mp3_probability + c.mulaw_probability:
        audio, drawn["codec"] = codec(audio, "mulaw", sample_rate), "mulaw"
    rng = rng_for("level")
    peak = float(rng.uniform(*c.peak))
    overdrive = None
    if rng.random() < c.clip_probability:
        overdrive = float(rng.uniform(*c.overdrive))
    audio = set_level(audio, peak, overdrive)
    drawn["peak"] = f"{peak:.3f}"
    drawn["clipped"] = f"{overdrive:.2f}" if overdrive is not None else ""
    return audio, drawn
