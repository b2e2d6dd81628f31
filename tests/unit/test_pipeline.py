"""The shared data pipeline: audio reading, feature cache, datasets."""

import numpy as np
import soundfile as sf
import torch
from speechbrain.lobes.features import Fbank

from xlt_plugin.data.pipeline import FeatureCache, load_audio


def _tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def test_load_audio_resamples_and_downmixes(tmp_path):
    cases = {"mono8k.wav": (8000, 1), "stereo48k.flac": (48000, 2)}
    for name, (rate, channels) in cases.items():
        path = tmp_path / name
        sf.write(path, _tone(1.0, rate, channels), rate)
        sig = load_audio(str(path), 16000)
        assert sig.dim() == 1
        assert abs(sig.shape[0] - 16000) <= 2, name
        # A 440 Hz tone stays a 440 Hz tone after resampling.
        spectrum = torch.fft.rfft(sig).abs()
        assert abs(int(spectrum.argmax()) - 440) <= 2, name


def test_feature_cache_computes_once_and_matches(tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, _tone(0.5, 16000), 16000)
    fbank = Fbank(n_mels=40)
    cache = FeatureCache(tmp_path / "cache", fbank, {"n_mels": 40})
    first = cache("a", str(clip))
    files = list(cache.folder.glob("*.pt"))
    assert [f.name for f in files] == ["a.pt"]
    expected = fbank(load_audio(str(clip)).unsqueeze(0))[0]
    torch.testing.assert_close(first, expected, atol=0.05, rtol=0.01)  # fp16

    def must_not_run(_):
        raise AssertionError("features recomputed although cached")

    cache.compute_features = must_not_run
    torch.testing.assert_close(cache("a", str(clip)), first)
    other = FeatureCache(tmp_path / "cache", fbank, {"n_mels": 80})
    assert other.folder != cache.folder
