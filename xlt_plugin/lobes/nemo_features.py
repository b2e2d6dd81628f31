"""NeMo's mel-spectrogram front end as a SpeechBrain-style feature lobe.

:class:`NeMoFeaturizer` reproduces NeMo 3.0.0's ``AudioToMelSpectrogramPreprocessor``
time first, so a model imported from a ``.nemo`` archive (:mod:`xlt_plugin.nemo`)
hears what it was trained on: with ``normalize="per_feature"`` (or
``"all_features"``) it also normalises as NeMo does (unbiased standard deviation
plus NeMo's ``1e-5``, over each utterance's valid frames only, padding set to
``pad_value``), and a pipeline then applies no further normalisation
(:func:`normalizes_itself`). ``tests/unit/test_nemo_import.py`` checks the result
against NeMo's own outputs, one utterance at a time and in padded batches.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: NeMo's ``CONSTANT`` (nemo/collections/asr/parts/preprocessing/features.py),
#: added to the standard deviation by ``normalize_batch``.
NEMO_STD_EPS = 1e-5
#: The ``normalize`` values NeMo 3.0.0's ``normalize_batch`` knows and the import
#: reproduces (None: no normalisation).
NORMALIZE_TYPES = ("per_feature", "all_features", None)

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


def normalizes_itself(featurizer: Any) -> bool:
    """Whether ``featurizer``'s output is already normalised (NeMo-style).

    A pipeline then skips its own ``InputNormalization``: normalising NeMo's
    normalised features again would change them.

    Arguments
    ---------
    featurizer : callable
        A feature extractor (``Fbank``, :class:`NeMoFeaturizer`, ...).

    Returns
    -------
    bool

    Example
    -------
    >>> normalizes_itself(NeMoFeaturizer(normalize="per_feature"))
    True
    >>> normalizes_itself(NeMoFeaturizer()), normalizes_itself(torch.nn.Identity())
    (False, False)
    """
    normalize = getattr(featurizer, "normalize", None)
    return isinstance(normalize, str) and normalize in NORMALIZE_TYPES[:2]


def takes_lengths(featurizer: Any) -> bool:
    """Whether ``featurizer`` accepts relative lengths (``wav_lens``/``lengths``).

    The names SpeechBrain's ``LengthsCapableSequential`` recognises; SpeechBrain's
    ``Fbank`` takes none.

    Arguments
    ---------
    featurizer : callable

    Returns
    -------
    bool

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> takes_lengths(NeMoFeaturizer()), takes_lengths(Fbank())
    (True, False)
    """
    from speechbrain.utils.callchains import lengths_arg_name

    forward = getattr(featurizer, "forward", featurizer)
    return lengths_arg_name(forward) is not None


def featurize(
    featurizer: Any, wavs: torch.Tensor, wav_lens: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features of a padded waveform batch, and their relative lengths.

    The lengths reach a featurizer that accepts them (:func:`takes_lengths`);
    one that does not (SpeechBrain's ``Fbank``) is called as ``featurizer(wavs)``
    and its lengths are ``wav_lens``, unchanged. A featurizer with
    ``relative_frame_lengths`` (:class:`NeMoFeaturizer`) gives the exact relative
    lengths of its valid frames (NeMo's frame counts), so that an encoder that
    rounds ``lengths * frames`` masks the same frames as NeMo's.

    Arguments
    ---------
    featurizer : callable
        ``[batch, samples] -> [batch, frames, features]``.
    wavs : torch.Tensor
        ``[batch, samples]``.
    wav_lens : torch.Tensor or None
        Relative lengths in [0, 1].

    Returns
    -------
    (torch.Tensor, torch.Tensor or None)
        The features and their relative lengths.

    Example
    -------
    >>> feats, lens = featurize(NeMoFeaturizer(), torch.randn(2, 16000),
    ...                         torch.tensor([1.0, 0.7]))
    >>> feats.shape, lens.tolist()
    (torch.Size([2, 100, 64]), [1.0, 0.699999988079071])
    """
    if wav_lens is None or not takes_lengths(featurizer):
        return featurizer(wavs), wav_lens
    from speechbrain.utils.callchains import lengths_arg_name

    name = lengths_arg_name(getattr(featurizer, "forward", featurizer))
    feats = featurizer(wavs, **{name: wav_lens})
    frame_lengths = getattr(featurizer, "relative_frame_lengths", None)
    if frame_lengths is None:
        return feats, wav_lens
    return feats, frame_lengths(wav_lens, wavs.shape[-1])


def _normalize_batch(
    x: torch.Tensor, seq_len: torch.Tensor, normalize_type: str
) -> torch.Tensor:
    """NeMo 3.0.0's ``normalize_batch`` (``x``: ``[batch, n_mels, frames]``).

    The same operations in the same order, so the rounding is NeMo's too.
    """
    if normalize_type == "per_feature":
        batch_size, max_time = x.shape[0], x.shape[2]
        time_steps = (
            torch.arange(max_time, device=x.device)
            .unsqueeze(0)
            .expand(batch_size, max_time)
        )
        valid_mask = time_steps < seq_len.unsqueeze(1)
        x_mean_numerator = torch.where(valid_mask.unsqueeze(1), x, 0.0).sum(axis=2)
        x_mean_denominator = valid_mask.sum(axis=1)
        x_mean = x_mean_numerator / x_mean_denominator.unsqueeze(1)
        # Unbiased: n - 1 in the denominator (NaN for one frame, then 0, as NeMo).
        x_std = torch.sqrt(
            torch.sum(
                torch.where(valid_mask.unsqueeze(1), x - x_mean.unsqueeze(2), 0.0) ** 2,
                axis=2,
            )
            / (x_mean_denominator.unsqueeze(1) - 1.0)
        )
        x_std = x_std.masked_fill(x_std.isnan(), 0.0)
        x_std += NEMO_STD_EPS
        normalized = (x - x_mean.unsqueeze(2)) / x_std.unsqueeze(2)
        return normalized.masked_fill(~valid_mask.unsqueeze(1), 0.0)
    # all_features: one mean and one (unbiased) std per utterance.
    x_mean = torch.zeros(seq_len.shape, dtype=x.dtype, device=x.device)
    x_std = torch.zeros(seq_len.shape, dtype=x.dtype, device=x.device)
    for i in range(x.shape[0]):
        x_mean[i] = x[i, :, : int(seq_len[i])].mean()
        x_std[i] = x[i, :, : int(seq_len[i])].std()
    x_std += NEMO_STD_EPS
    return (x - x_mean.view(-1, 1, 1)) / x_std.view(-1, 1, 1)


class NeMoFeaturizer(torch.nn.Module):
    """NeMo's mel-spectrogram front end, time first.

    Reproduces NeMo 3.0.0's ``AudioToMelSpectrogramPreprocessor`` (its
    ``FilterbankFeatures``): dither (training
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
        Value of the padding past the valid frames (and of ``pad_to``'s).
    normalize : str or None
        NeMo's ``normalize``: "per_feature", "all_features" or None (none).

    Example
    -------
    >>> featurizer = NeMoFeaturizer(normalize="per_feature").eval()
    >>> feats = featurizer(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape
    torch.Size([2, 100, 64])
    >>> featurizer.frame_counts(torch.tensor([16000, 12345])).tolist()
    [100, 77]
    >>> feats[1, 50:].abs().max().item(), round(feats[1, :50].std(0)[0].item(), 4)
    (0.0, 1.0)
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
        normalize: str | None = None,
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
        if normalize not in NORMALIZE_TYPES:
            raise ValueError(
                f"NeMoFeaturizer: normalize must be one of {NORMALIZE_TYPES}, got "
                f"{normalize!r}."
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
        self.normalize = normalize
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

    def relative_frame_lengths(
        self, wav_lens: torch.Tensor, samples: int
    ) -> torch.Tensor:
        """Relative lengths of the valid frames, for a batch ``samples`` wide.

        ``frame_counts(round(wav_lens * samples)) / frame_counts(samples)``: an
        encoder that rounds ``lengths * frames`` gets NeMo's frame counts back.

        Arguments
        ---------
        wav_lens : torch.Tensor
            Relative waveform lengths in [0, 1].
        samples : int
            The padded batch's width in samples.

        Returns
        -------
        torch.Tensor
            Float relative lengths, ``[batch]``.
        """
        wav_lens = torch.as_tensor(wav_lens)
        lengths = torch.round(wav_lens.float() * samples).long()
        frames = int(self.frame_counts(torch.tensor(samples)))
        valid = self.frame_counts(lengths).clamp(max=frames)
        return valid.float() / max(frames, 1)

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-mel features of a waveform batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms ``[batch, samples]``.
        wav_lens : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain style; None: all full length);
            pre-emphasis is zeroed past each length and the normalisation uses
            each utterance's valid frames only, as NeMo does with absolute
            lengths.

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
        if self.normalize is not None:
            seq_len = self.frame_counts(lengths)
            feats = _normalize_batch(feats, seq_len, self.normalize)
            frame = torch.arange(frames, device=x.device).unsqueeze(0)
            pad = frame >= seq_len.unsqueeze(1)
            feats = feats.masked_fill(pad.unsqueeze(1), self.pad_value)
        elif wav_lens is not None:
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


class FrameLengthsSequential(torch.nn.Module):
    """SpeechBrain's ``LengthsCapableSequential``, with frame-exact lengths.

    An exported model's chain (``compute_features``, ``model``, ``head``, ...):
    each layer that takes lengths gets them, as in ``LengthsCapableSequential``,
    and after a layer with ``relative_frame_lengths`` (:class:`NeMoFeaturizer`)
    the later layers get the relative lengths of its valid frames (NeMo's frame
    counts), as :func:`featurize` gives them in training, instead of the
    waveform's, which can round to one frame more or fewer.

    Arguments
    ---------
    **layers : torch.nn.Module
        The layers, in order (keyword names as in the YAML).

    Example
    -------
    >>> chain = FrameLengthsSequential(
    ...     compute_features=NeMoFeaturizer(normalize="per_feature").eval(),
    ...     head=torch.nn.Linear(64, 3))
    >>> chain(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 100, 3])
    """

    def __init__(self, **layers: torch.nn.Module) -> None:
        super().__init__()
        from speechbrain.utils.callchains import lengths_arg_name

        self.layers = torch.nn.ModuleDict(layers)
        self._lengths_args = [lengths_arg_name(m.forward) for m in layers.values()]

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Applies the layers in order (first element of tuple outputs).

        Arguments
        ---------
        x : torch.Tensor
            The input (waveforms for an exported model).
        lengths : torch.Tensor, optional
            Relative lengths of the input.

        Returns
        -------
        torch.Tensor
        """
        for layer, name in zip(self.layers.values(), self._lengths_args, strict=True):
            width = x.shape[-1]
            x = layer(x, **{name: lengths}) if name is not None else layer(x)
            if isinstance(x, tuple):
                x = x[0]
            frame_lengths = getattr(layer, "relative_frame_lengths", None)
            if lengths is not None and frame_lengths is not None:
                lengths = frame_lengths(lengths, width)
        return x
