"""The shared data pipeline: audio reading, feature cache, datasets."""

import numpy as np
import pytest
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
    assert len(files) == 1
    expected = fbank(load_audio(str(clip)).unsqueeze(0))[0]
    torch.testing.assert_close(first, expected, atol=0.05, rtol=0.01)  # fp16

    def must_not_run(_):
        raise AssertionError("features recomputed although cached")

    cache.compute_features = must_not_run
    torch.testing.assert_close(cache("a", str(clip)), first)
    other = FeatureCache(tmp_path / "cache", fbank, {"n_mels": 80})
    assert other.folder != cache.folder
    assert cache.recomputed == 0


def test_feature_cache_keys_entries_by_clip_not_id(tmp_path):
    # Two corpora reuse utterance ids (synthetic ones do): never the same entry.
    fbank = Fbank(n_mels=40)
    cache = FeatureCache(tmp_path / "cache", fbank, {"n_mels": 40})
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    sf.write(tmp_path / "one" / "a.wav", _tone(0.5, 16000), 16000)
    sf.write(tmp_path / "two" / "a.wav", _tone(0.9, 16000), 16000)
    short = cache("common_voice_en_1", str(tmp_path / "one" / "a.wav"))
    long = cache("common_voice_en_1", str(tmp_path / "two" / "a.wav"))
    assert short.shape[0] < long.shape[0]
    assert len(list(cache.folder.glob("*.pt"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_settings", "list"])
def test_feature_cache_recomputes_a_damaged_entry_and_counts_it(
    tmp_path, damage, caplog
):
    clip = tmp_path / "a.wav"
    sf.write(clip, _tone(0.5, 16000), 16000)
    fbank = Fbank(n_mels=40)
    cache = FeatureCache(tmp_path / "cache", fbank, {"n_mels": 40})
    good = cache("a", str(clip))
    (entry,) = cache.folder.glob("*.pt")
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:200])
    elif damage == "garbage":
        entry.write_bytes(b"\x00" * 64)
    elif damage == "other_settings":  # an entry another model's settings wrote
        torch.save(
            {"feats": torch.zeros(3, 80).half(), "settings": '{"n_mels": 80}',
             "clip": FeatureCache.clip_identity(str(clip))},
            entry,
        )  # fmt: skip
    else:  # the layout of older versions: a bare tensor
        torch.save(torch.zeros(3, 40).half(), entry)
    with caplog.at_level("WARNING"):
        again = cache("a", str(clip))
    torch.testing.assert_close(again, good)
    assert cache.recomputed == 1
    assert str(entry) in caplog.text and "recomputing" in caplog.text
    torch.testing.assert_close(cache("a", str(clip)), good)  # repaired on disk
    assert cache.recomputed == 1


# Dynamic batching (``dynamic_batching``): duration-bucketed batches.


def _durations(count=200, seed=0):
    """Common Voice-like clip durations: log-normal around 4 s, 2-7 s."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(4.0), 0.3, count), 2.0, 7.0)


def _dataset(durations):
    from speechbrain.dataio.dataset import DynamicItemDataset

    rows = {f"u{i}": {"duration": float(d)} for i, d in enumerate(durations)}
    return DynamicItemDataset(rows)


def test_dynamic_batches_stay_under_max_and_pad_less_than_random():
    from xlt_plugin.data.pipeline import dynamic_batch_sampler, padding_fraction

    durations = _durations()
    max_seconds = 8 * float(durations.max())  # the worst fixed batch of 8
    sampler = dynamic_batch_sampler(
        _dataset(durations), {"max_batch_length": max_seconds, "num_buckets": 10}
    )
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for batch in batches:  # padded duration: every clip as long as the longest
        assert len(batch) * max(durations[i] for i in batch) <= max_seconds
    order = np.random.default_rng(1).permutation(len(durations)).tolist()
    fixed = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert padding_fraction(batches, durations) < padding_fraction(fixed, durations)
    assert padding_fraction(batches, durations) < 0.1
    assert len(sampler) == len(batches)


@pytest.mark.parametrize("clips", [139, 960])  # the study's 10 minutes and all
def test_the_study_batching_varies_with_the_seed(clips):
    """The study's batching makes a seed change the batches, not only the fresh
    weights (with length-sorted batches a fully copied head trained identically
    under every seed), at little padding."""
    from xlt_plugin.data.pipeline import dynamic_batch_sampler, padding_fraction
    from xlt_plugin.study.own_profiles import STUDY_BATCHING

    durations = _durations(clips)
    settings = STUDY_BATCHING["dynamic_batching"]
    first, second = (
        list(dynamic_batch_sampler(_dataset(durations), settings, seed=seed))
        for seed in (1, 2)
    )
    assert sorted(map(sorted, first)) != sorted(map(sorted, second))  # batches
    assert [sorted(b) for b in first] != [sorted(b) for b in second]  # and order
    assert max(map(len, first)) <= settings["max_batch_ex"]
    assert padding_fraction(first, durations) < 0.08


def test_dynamic_batches_change_with_the_epoch_counter_only():
    from xlt_plugin.data.pipeline import dynamic_batch_sampler

    class Counter:
        current = 1

    counter = Counter()
    settings = {"max_batch_length": 30.0, "num_buckets": 5}

    def epoch_batches(epoch):
        counter.current = epoch
        sampler = dynamic_batch_sampler(
            _dataset(_durations(60)), settings, seed=3, epoch_counter=counter
        )
        return list(sampler), list(sampler)

    first, again = epoch_batches(1)
    assert first == again  # a pass is a function of the epoch: resumable
    assert first == epoch_batches(1)[0]  # ... in a new process too
    assert epoch_batches(2)[0] != first  # reshuffled each epoch


def test_dynamic_batching_refuses_unknown_keys_and_no_max():
    from xlt_plugin.data.pipeline import dynamic_batch_sampler

    dataset = _dataset(_durations(10))
    with pytest.raises(ValueError, match="unknown keys \\['max_batch_len'\\]"):
        dynamic_batch_sampler(dataset, {"max_batch_len": 30})
    with pytest.raises(ValueError, match="needs max_batch_length"):
        dynamic_batch_sampler(dataset, {"num_buckets": 3})


def _manifests(tmp_path, durations):
    """train/dev/test manifests of short tone clips with the given durations."""
    header = "ID,duration,wav,wrd\n"
    rows = []
    for i, seconds in enumerate(durations):
        wav = tmp_path / f"c{i}.wav"
        sf.write(wav, _tone(seconds, 16000), 16000)
        rows.append(f"c{i},{seconds},{wav},ab\n")
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = tmp_path / f"{split}.csv"
        paths[split].write_text(header + "".join(rows))
    return paths


def _hparams(paths, **extra):
    return {
        "train_csv": str(paths["train"]),
        "valid_csv": str(paths["dev"]),
        "test_csv": str(paths["test"]),
        "sorting": "ascending",
        "train_dataloader_opts": {"batch_size": 4},
        **extra,
    }


def _tokenizer():
    from speechbrain.dataio.encoder import CTCTextEncoder

    tokenizer = CTCTextEncoder()
    tokenizer.update_from_iterable(["a", "b"])
    return tokenizer


def test_make_datasets_without_dynamic_batching_is_unchanged(tmp_path):
    from xlt_plugin.data.pipeline import make_datasets

    hparams = _hparams(_manifests(tmp_path, [0.3, 0.1, 0.2]))
    datasets = make_datasets(hparams, _tokenizer())
    assert hparams["train_dataloader_opts"] == {"batch_size": 4, "shuffle": False}
    assert datasets["train"].data_ids == ["c1", "c2", "c0"]  # ascending


def test_make_datasets_with_dynamic_batching_loads_bounded_batches(tmp_path):
    import speechbrain as sb

    from xlt_plugin.data.pipeline import EpochDynamicBatchSampler, make_datasets

    durations = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7]
    hparams = _hparams(
        _manifests(tmp_path, durations),
        dynamic_batching={"max_batch_length": 1.2, "num_buckets": 3},
    )
    datasets = make_datasets(hparams, _tokenizer())
    opts = hparams["train_dataloader_opts"]
    assert sorted(opts) == ["batch_sampler"]  # no batch_size, no shuffle
    assert isinstance(opts["batch_sampler"], EpochDynamicBatchSampler)
    # As the Brain builds the training loader (SpeechBrain's make_dataloader).
    loader = sb.dataio.dataloader.make_dataloader(datasets["train"], **opts)
    seen = []
    for batch in loader:
        wavs, lens = batch.sig
        assert wavs.shape[0] * wavs.shape[1] <= 1.2 * 16000  # padded samples
        seen += batch.id
    assert sorted(seen) == sorted(f"c{i}" for i in range(len(durations)))


def test_dynamic_batching_and_replay_refuse_each_other(tmp_path):
    from xlt_plugin.data.pipeline import make_datasets

    hparams = _hparams(
        _manifests(tmp_path, [0.2, 0.3]), dynamic_batching={"max_batch_length": 1}
    )
    with pytest.raises(ValueError, match="dynamic_batching and replay_ratio"):
        make_datasets(hparams, _tokenizer(), replay_ratio=0.5)
