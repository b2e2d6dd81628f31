"""NeMo's mel-spectrogram front end as a SpeechBrain-style feature lobe.

:class:`NeMoFeaturizer` reproduces NeMo 3.0.0's ``AudioToMelSpectrogramPreprocessor``
up to the log-mel, time first, so a model imported from a ``.nemo`` archive
(:mod:`xlt_plugin.nemo`) hears what it was trained on. The per-feature
normalisation is left to the recipe's ``InputNormalization(norm_type="sentence")``;
:data:`xlt_plugin.nemo.MEASURED` holds the differences to NeMo measured on the
committed fixtures.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import numpy as np
import torch

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
}


def _slaney_mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    norm: str | None,
) -> np.ndarray:
    """librosa.filters.mel(htk=False) in float64, rounded to float32 as it does."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asanyarray(hz, dtype=np.float64)
        mel = hz / (200.0 / 3)
        log_region = hz >= 1000.0
        mel = np.where(
            log_region,
            15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
            mel,
        )
        return mel

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        hz = (200.0 / 3) * mel
        return np.where(
            mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), hz
        )

    fft_freqs = np.arange(n_fft // 2 + 1) * (1.0 / (n_fft * (1.0 / sample_rate)))
    mels = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    mel_f = mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


class NeMoFeaturizer(torch.nn.Module):
    """NeMo's mel-spectrogram front end, up to the log-mel, time first.

    Reproduces NeMo 3.0.0's ``AudioToMelSpectrogramPreprocessor`` (its
    ``FilterbankFeatures``) except the per-feature normalisation, which a recipe
    applies with ``InputNormalization(norm_type="sentence")``: dither (training
    mode only, as NeMo), pre-emphasis (zeroed past each length), a symmetric
    window of ``win_length`` inside an ``n_fft`` STFT (centred, zero padded), the
    magnitude raised to ``mag_power``, a Slaney mel filterbank, ``log`` with its
    zero guard, and NeMo's frame count: ``(samples + n_fft//2*2 - n_fft) // hop``
    (one frame fewer than the STFT gives). ``pad_to`` pads the time axis to a
    multiple with ``pad_value``, as NeMo does after normalising; leave it 0 in a
    SpeechBrain pipeline, whose relative lengths would count the padding.

    Given ``wav_lens``, the frames past a shorter utterance's last valid frame
    hold its per-band mean over the valid frames: after mean normalisation they
    are 0, as NeMo pads its normalised features (``pad_value`` 0), and
    ``InputNormalization``, whose relative-length mask may count one frame more
    than NeMo (it rounds up), then sees no outlier there.

    Arguments
    ---------
    sample_rate : int
        Audio sample rate.
    n_mels : int
        Mel bands (NeMo's ``features``).
    n_fft : int
        FFT size.
    win_length : float
        Window length in milliseconds (NeMo's ``window_size`` x 1000).
    hop_length : float
        Hop in milliseconds (NeMo's ``window_stride`` x 1000).
    f_min, f_max : float
        Filterbank range in Hz (``f_max`` None: half the sample rate).
    window : str
        hann, hamming, blackman or bartlett (symmetric, as NeMo's).
    preemph : float or None
        Pre-emphasis coefficient; None disables it.
    mag_power : float
        Power applied to the STFT magnitude.
    log : bool
        Take the log of the mel energies.
    log_zero_guard_type : str
        "add" (``log(x + guard)``) or "clamp" (``log(max(x, guard))``).
    log_zero_guard_value : float or str
        The guard, or "tiny"/"eps" for float32's.
    mel_norm : str or None
        "slaney" (area normalisation) or None.
    exact_pad : bool
        NeMo's ``exact_pad``: pad ``(n_fft - hop) // 2`` and do not centre.
    dither : float
        White-noise amplitude added in training mode.
    pad_to : int
        Pad the frame count to a multiple of this (0: no padding).
    pad_value : float
        Value of the ``pad_to`` padding.

    Example
    -------
    >>> featurizer = NeMoFeaturizer().eval()
    >>> feats = featurizer(torch.randn(2, 16000))
    >>> feats.shape
    torch.Size([2, 100, 64])
    >>> featurizer.frame_counts(torch.tensor([16000, 12345])).tolist()
    [100, 77]
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 512,
        win_length: float = 20.0,
        hop_length: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        window: str = "hann",
        preemph: float | None = 0.97,
        mag_power: float = 2.0,
        log: bool = True,
        log_zero_guard_type: str = "add",
        log_zero_guard_value: float | str = 2**-24,
        mel_norm: str | None = "slaney",
        exact_pad: bool = False,
        dither: float = 1e-5,
        pad_to: int = 0,
        pad_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.win_samples = round(win_length * sample_rate / 1000)
        self.hop_samples = round(hop_length * sample_rate / 1000)
        if self.win_samples < 1 or self.hop_samples < 1:
            raise ValueError(
                f"NeMoFeaturizer: win_length={win_length} ms and hop_length="
                f"{hop_length} ms give {self.win_samples} and {self.hop_samples} "
                f"samples at {sample_rate} Hz; both must be at least one sample."
            )
        if self.win_samples > n_fft:
            raise ValueError(
                f"NeMoFeaturizer: the window ({self.win_samples} samples) is longer "
                f"than n_fft={n_fft}; raise n_fft."
            )
        if window not in _WINDOWS:
            raise ValueError(
                f"NeMoFeaturizer: window {window!r} is not one of {sorted(_WINDOWS)}."
            )
        if log_zero_guard_type not in ("add", "clamp"):
            raise ValueError(
                "NeMoFeaturizer: log_zero_guard_type must be 'add' or 'clamp', got "
                f"{log_zero_guard_type!r}."
            )
        if isinstance(log_zero_guard_value, str) and log_zero_guard_value not in (
            "tiny",
            "eps",
        ):
            raise ValueError(
                "NeMoFeaturizer: log_zero_guard_value must be a number, 'tiny' or "
                f"'eps', got {log_zero_guard_value!r}."
            )
        if mel_norm not in ("slaney", None):
            raise ValueError(
                f"NeMoFeaturizer: mel_norm must be 'slaney' or None, got {mel_norm!r}."
            )
        if exact_pad and self.hop_samples % 2:
            raise ValueError("NeMoFeaturizer: exact_pad needs an even hop (as NeMo).")
        if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 0:
            raise ValueError(
                f"NeMoFeaturizer: pad_to must be an int >= 0, got {pad_to!r}."
            )
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.preemph = preemph
        self.mag_power = mag_power
        self.log = log
        self.log_zero_guard_type = log_zero_guard_type
        self.log_zero_guard_value = log_zero_guard_value
        self.exact_pad = exact_pad
        self.dither = dither
        self.pad_to = pad_to
        self.pad_value = pad_value
        self.stft_pad = (n_fft - self.hop_samples) // 2 if exact_pad else None
        # Not persistent: the settings rebuild them, so checkpoints stay small.
        self.register_buffer(
            "window",
            _WINDOWS[window](self.win_samples, periodic=False),
            persistent=False,
        )
        fb = _slaney_mel_filterbank(
            sample_rate, n_fft, n_mels, f_min, f_max or sample_rate / 2, mel_norm
        )
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)

    def frame_counts(self, samples: torch.Tensor) -> torch.Tensor:
        """NeMo's number of valid frames for ``samples`` samples.

        Arguments
        ---------
        samples : torch.Tensor
            Audio lengths in samples (integer, any shape).

        Returns
        -------
        torch.Tensor
            Frames per length (int64; 0 for an empty input).
        """
        samples = torch.as_tensor(samples).long()
        pad = self.stft_pad * 2 if self.stft_pad is not None else self.n_fft // 2 * 2
        frames = torch.div(
            samples + pad - self.n_fft, self.hop_samples, rounding_mode="floor"
        )
        return torch.where(samples == 0, torch.zeros_like(frames), frames)

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-mel features of a waveform batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[batch, samples]``.
        wav_lens : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain style); pre-emphasis is zeroed
            past each length, as NeMo does with absolute lengths, and frames past
            each utterance's valid frames hold its per-band mean.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, n_mels]`` with ``frames`` NeMo's count for the full
            width (then padded to ``pad_to``).
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"NeMoFeaturizer expects waveforms [batch, samples], got shape "
                f"{tuple(wavs.shape)}."
            )
        x = wavs.float()
        batch, width = x.shape
        frames = int(self.frame_counts(torch.tensor(width)))
        if frames < 1:
            raise ValueError(
                f"NeMoFeaturizer: {width} samples give no frame (need at least "
                f"{self.hop_samples} samples, one hop)."
            )
        if wav_lens is None:
            lengths = torch.full((batch,), width, device=x.device)
        else:
            lengths = torch.round(wav_lens.to(x.device).float() * width).long()
        if self.stft_pad is not None:
            x = torch.nn.functional.pad(x, (self.stft_pad, self.stft_pad))
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn_like(x)
        if self.preemph is not None:
            valid = torch.arange(x.shape[1], device=x.device) < lengths.unsqueeze(1)
            x = torch.cat((x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]), dim=1)
            x = x.masked_fill(~valid, 0.0)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_samples,
            win_length=self.win_samples,
            center=not self.exact_pad,
            window=self.window.to(dtype=torch.float, device=x.device),
            return_complex=True,
            pad_mode="constant",
        )
        # sqrt then power, as NeMo, so the rounding is the same.
        spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1))
        if self.mag_power != 1.0:
            spec = spec.pow(self.mag_power)
        feats = torch.matmul(self.fb.to(spec.dtype), spec)
        if self.log:
            guard = self.log_zero_guard_value
            if isinstance(guard, str):
                finfo = torch.finfo(feats.dtype)
                guard = finfo.tiny if guard == "tiny" else finfo.eps
            if self.log_zero_guard_type == "add":
                feats = torch.log(feats + guard)
            else:
                feats = torch.log(torch.clamp(feats, min=guard))
        feats = feats[..., :frames]
        if wav_lens is not None:
            valid = self.frame_counts(lengths).clamp(min=1).unsqueeze(1)
            inside = torch.arange(frames, device=x.device).unsqueeze(0) < valid
            inside = inside.unsqueeze(1)  # [batch, 1, frames]
            mean = (feats * inside).sum(-1, keepdim=True) / valid.unsqueeze(1)
            feats = torch.where(inside, feats, mean)
        if self.pad_to > 0 and frames % self.pad_to:
            feats = torch.nn.functional.pad(
                feats, (0, self.pad_to - frames % self.pad_to), value=self.pad_value
            )
        return feats.transpose(1, 2)
