"""The data pipeline every recipe shares: manifests -> SpeechBrain datasets.

Audio is read with SpeechBrain's ``read_audio`` (soundfile), down-mixed to mono and
resampled to the model's rate when a clip is not already at it. Text becomes
character tokens through the recipe's ``CTCTextEncoder``.

A clip that cannot be read stops training with an error naming the file (the prep
decodes every clip, so this means the file changed after the prep). Training rows
too short for their transcript under CTC *at the model's own time stride* are
dropped and counted here too: CTC's ``zero_infinity`` would otherwise turn them
into silent zero losses.

Batching: by default the training loader takes ``batch_size`` utterances in the
order ``sorting`` gives. ``dynamic_batching`` (a dict, off when absent, empty or null)
hands batching to SpeechBrain's ``DynamicBatchSampler`` instead: utterances of
similar duration share a batch, and a batch holds at most ``max_batch_length``
seconds of padded audio (see :func:`dynamic_batch_sampler`;
``benchmarks/train_speed.py`` measures what it saves).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import torchaudio
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.dataio.sampler import DynamicBatchSampler

logger = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def load_audio(path: str, sample_rate: int = 16000) -> torch.Tensor:
    """Read a clip as a mono float waveform at ``sample_rate``.

    Arguments
    ---------
    path : str
        Any format soundfile reads (wav, flac, mp3, ogg).
    sample_rate : int
        The rate the model expects.

    Returns
    -------
    torch.Tensor
        ``[samples]``.
    """
    try:
        info = sb.dataio.dataio.read_audio_info(path)
        sig = sb.dataio.dataio.read_audio(path)
    except Exception as err:  # a decoder error names no file: add the file
        raise RuntimeError(
            f"Cannot read clip {path} ({type(err).__name__}: {err}). If it is in a "
            "prepared corpus, it changed after the prep (which decodes every "
            "clip): restore it, or delete prep_report.json in the save folder so "
            "the prep runs again and counts it as a skip."
        ) from err
    if sig.dim() == 2:  # [samples, channels]
        sig = sig.mean(dim=1)
    if sig.numel() == 0:
        raise RuntimeError(
            f"Clip {path} has no audio frames. If it is in a prepared corpus, "
            "delete prep_report.json in the save folder so the prep runs again and "
            "counts it as a skip."
        )
    if info.sample_rate != sample_rate:
        sig = _resampler(info.sample_rate, sample_rate)(sig.unsqueeze(0)).squeeze(0)
    return sig


def build_tokenizer(
    csv_files: list[str | Path], save_path: str | Path, text_key: str = "wrd"
) -> CTCTextEncoder:
    """Character inventory of the manifests' transcripts (blank at index 0).

    Loaded from ``save_path`` when it exists, so a resumed run keeps its indices.

    Arguments
    ---------
    csv_files : list of paths
        Manifests whose ``text_key`` column holds normalised transcripts.
    save_path : path
        The token file (``CTCTextEncoder`` format).
    text_key : str
        The transcript column.

    Returns
    -------
    CTCTextEncoder
    """
    from xlt_plugin.tokens import build_char_encoder

    def texts():
        for csv_file in csv_files:
            data = sb.dataio.dataio.load_data_csv(str(csv_file))
            for row in data.values():
                yield row[text_key]

    return build_char_encoder(texts(), save_path=str(save_path))


class FeatureCache:
    """Features computed once per clip and kept on disk (fp16), shared by runs.

    Decoding MP3 and computing filterbanks every epoch dominates the time of small
    models on a CPU; with per-utterance normalisation the features of a clip never
    change, so they are computed once. The cache folder is keyed by the feature
    settings, and each entry by the clip itself (its resolved path, size and
    modification time, not the utterance id: corpora reuse ids, and a clip may be
    replaced), so runs never read another clip's or another setting's features.

    An entry that cannot be read (truncated by a full disk, damaged) or that was
    made for other settings or another clip is recomputed, with a warning naming
    it; ``recomputed`` counts them.

    Arguments
    ---------
    folder : path
        Root of the cache (e.g. shared by every run of a study).
    compute_features : callable
        ``[1, samples] -> [1, frames, n_mels]`` (SpeechBrain's ``Fbank``).
    settings : dict
        The feature settings (they name the sub-folder).
    sample_rate : int
        Rate the clips are resampled to.

    Example
    -------
    >>> import tempfile, soundfile
    >>> from speechbrain.lobes.features import Fbank
    >>> root = Path(tempfile.mkdtemp())
    >>> soundfile.write(root / "a.wav", np.zeros(8000), 16000)
    >>> cache = FeatureCache(root / "cache", Fbank(n_mels=20), {"n_mels": 20})
    >>> cache("a", str(root / "a.wav")).shape
    torch.Size([51, 20])
    >>> entry = next(cache.folder.glob("*.pt"))
    >>> _ = entry.write_bytes(entry.read_bytes()[:100])  # truncated
    >>> cache("a", str(root / "a.wav")).shape, cache.recomputed
    (torch.Size([51, 20]), 1)
    """

    def __init__(self, folder, compute_features, settings: dict, sample_rate=16000):
        import hashlib
        import json

        self.key = json.dumps(settings, sort_keys=True)
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:12]
        self.folder = Path(folder) / digest
        self.folder.mkdir(parents=True, exist_ok=True)
        self.compute_features = compute_features
        self.sample_rate = sample_rate
        self.recomputed = 0

    @staticmethod
    def clip_identity(wav: str) -> str:
        """``path|size|mtime_ns`` of a clip: changes when the clip does."""
        path = Path(wav).resolve()
        stat = path.stat()
        return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"

    def _read(self, path: Path, clip: str) -> torch.Tensor | None:
        """The cached features, or None (after a warning) when unusable."""
        try:
            entry = torch.load(path, weights_only=True)
            problem = None
            if not isinstance(entry, dict) or "feats" not in entry:
                problem = "not a feature-cache entry"
            elif entry.get("settings") != self.key:
                problem = f"made for other feature settings ({entry.get('settings')})"
            elif entry.get("clip") != clip:
                problem = f"made for another clip ({entry.get('clip')})"
        except Exception as err:  # truncated or damaged: torch raises many types
            problem = f"unreadable ({type(err).__name__}: {err})"
        if problem is None:
            return entry["feats"].float()
        self.recomputed += 1
        logger.warning(
            "Feature cache entry %s is %s: recomputing it (%d so far in this process).",
            path,
            problem,
            self.recomputed,
        )
        return None

    def __call__(self, utt_id: str, wav: str) -> torch.Tensor:
        """Features ``[frames, n_mels]`` (float32) of one clip."""
        import hashlib
        import os

        clip = self.clip_identity(wav)
        name = hashlib.sha256(clip.encode()).hexdigest()[:20]
        path = self.folder / f"{name}.pt"
        if path.exists():
            feats = self._read(path, clip)
            if feats is not None:
                return feats
        with torch.no_grad():
            sig = load_audio(wav, self.sample_rate).unsqueeze(0)
            feats = self.compute_features(sig)[0].half()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"feats": feats, "settings": self.key, "clip": clip}, tmp)
        os.replace(tmp, path)  # atomic: a killed run never leaves half a file
        return feats.float()


FEATURE_SETTINGS = ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length")


def ctc_fits(
    duration: float, text: str, hop_length: float = 10.0, time_stride: int = 2
) -> bool:
    """Whether a clip has enough encoder frames for its transcript under CTC.

    The same count as the prep's ``too_short_for_transcript`` check.

    Arguments
    ---------
    duration : float
        Seconds of audio.
    text : str
        The transcript (one label per character).
    hop_length : float
        Feature hop in milliseconds.
    time_stride : int
        The encoder's time downsampling.

    Returns
    -------
    bool

    Example
    -------
    >>> ctc_fits(0.5, "hola", time_stride=2), ctc_fits(0.5, "hola" * 8, time_stride=8)
    (True, False)
    """
    from xlt_plugin.data.commonvoice import ctc_min_frames, encoder_frames

    frames = encoder_frames(duration, 1000.0 / hop_length, time_stride)
    return frames >= ctc_min_frames(text)


def _ctc_fit_test(train: DynamicItemDataset, hparams: dict) -> dict:
    """A ``key_test`` dropping training rows CTC cannot align; logs the count.

    Uses the encoder's own ``time_stride``, so a prep run with another stride
    (recipes pass none: the prep assumes 2) cannot let such rows through.
    """
    stride = getattr(hparams.get("encoder"), "time_stride", None)
    if not stride:
        return {}
    hop = float(hparams.get("hop_length", 10))

    @sb.utils.data_pipeline.takes("duration", "wrd")
    @sb.utils.data_pipeline.provides("ctc_fits")
    def fits(duration, wrd):
        return ctc_fits(float(duration), wrd, hop, stride)

    train.add_dynamic_item(fits)
    dropped = [
        utt_id
        for utt_id, row in train.data.items()
        if not ctc_fits(float(row["duration"]), row["wrd"], hop, stride)
    ]
    if dropped:
        logger.warning(
            "%d training rows of %s are too short for their transcript at the "
            "encoder's time_stride %d (e.g. %s): dropped. Re-run the prep with "
            "time_stride=%d to count them in its report.",
            len(dropped),
            hparams["train_csv"],
            stride,
            ", ".join(dropped[:3]),
            stride,
        )
    return {"ctc_fits": bool}


def make_datasets(
    hparams: dict, tokenizer: CTCTextEncoder, replay_ratio: float = 0.0
) -> dict:
    """Train/valid/test ``DynamicItemDataset``s with ``sig``, ``tokens``, ``wrd``.

    With ``feature_cache`` set (a folder), items carry cached ``feats`` instead of
    ``sig`` (see :class:`FeatureCache`).

    Reads ``train_csv``, ``valid_csv``, ``test_csv`` from ``hparams`` (the test
    entry may be a list or dict of csvs, e.g. one per accent), sorts training data by
    duration (``sorting``: ascending, descending or random) and drops clips longer
    than ``max_duration`` seconds if set. With ``dynamic_batching`` set (a dict of
    :func:`dynamic_batch_sampler` settings), ``train_dataloader_opts`` gets a
    duration-bucketed ``batch_sampler`` in place of ``batch_size`` and ``shuffle``.

    Arguments
    ---------
    hparams : dict
        The recipe's loaded YAML.
    tokenizer : CTCTextEncoder
        The target token inventory.
    replay_ratio : float
        Rehearsal (with ``replay_train_csv`` and ``replay_valid_csv`` in
        ``hparams``, which :func:`xlt_plugin.recipe.common_voice_data` sets): the
        source share of each training batch. ``train`` is then the union of
        both corpora with a :class:`~xlt_plugin.data.replay.ReplayBatchSampler`
        in ``train_dataloader_opts``, and ``replay_valid`` the source dev set
        (also with ratio 0).

    Returns
    -------
    dict
        ``{"train": ds, "valid": ds, "test": {name: ds}}`` (and ``replay_valid``).
    """
    sample_rate = hparams.get("sample_rate", 16000)

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return load_audio(wav, sample_rate)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("wrd", "tokens")
    def text_pipeline(wrd):
        yield wrd
        yield torch.LongTensor(tokenizer.encode_sequence(list(wrd)))

    cache = None
    if hparams.get("feature_cache"):
        settings = {k: hparams[k] for k in FEATURE_SETTINGS if k in hparams}
        cache = FeatureCache(
            hparams["feature_cache"], hparams["compute_features"], settings, sample_rate
        )

        @sb.utils.data_pipeline.takes("id", "wav")
        @sb.utils.data_pipeline.provides("feats")
        def feature_pipeline(utt_id, wav):
            return cache(utt_id, wav)

    def with_pipelines(ds):
        ds.add_dynamic_item(feature_pipeline if cache else audio_pipeline)
        ds.add_dynamic_item(text_pipeline)
        ds.set_output_keys(["id", "feats" if cache else "sig", "tokens", "wrd"])
        return ds

    def load(csv_file):
        return with_pipelines(DynamicItemDataset.from_csv(csv_path=str(csv_file)))

    max_duration = hparams.get("max_duration")
    train = load(hparams["train_csv"])
    sorting = hparams.get("sorting", "ascending")
    key_max = {"duration": max_duration} if max_duration else {}
    key_test = _ctc_fit_test(train, hparams)
    if sorting in ("ascending", "descending"):
        train = train.filtered_sorted(
            sort_key="duration",
            reverse=sorting == "descending",
            key_max_value=key_max,
            key_test=key_test,
        )
        # Sorted data must not be shuffled again by the loader.
        hparams.setdefault("train_dataloader_opts", {})["shuffle"] = False
    elif sorting == "random":
        if key_max or key_test:
            train = train.filtered_sorted(key_max_value=key_max, key_test=key_test)
    else:
        raise ValueError(f"sorting must be ascending, descending or random: {sorting}")
    valid = load(hparams["valid_csv"]).filtered_sorted(sort_key="duration")
    tests = hparams["test_csv"]
    if isinstance(tests, (str, Path)):
        tests = {Path(tests).stem: tests}
    elif isinstance(tests, list):
        tests = {Path(t).stem: t for t in tests}
    test = {
        name: load(path).filtered_sorted(sort_key="duration")
        for name, path in tests.items()
    }
    datasets = {"train": train, "valid": valid, "test": test}
    dynamic = hparams.get("dynamic_batching")
    if dynamic and replay_ratio > 0:
        raise ValueError(
            "dynamic_batching and replay_ratio > 0 do not combine: rehearsal builds "
            "its own batches (a fixed share of source utterances per batch). Set "
            "dynamic_batching: {} or replay_ratio: 0."
        )
    if hparams.get("replay_train_csv"):
        datasets.update(
            _replay_datasets(hparams, train, load, with_pipelines, replay_ratio)
        )
    if dynamic:
        opts = hparams.setdefault("train_dataloader_opts", {})
        # A DataLoader with a batch_sampler refuses these.
        for key in ("batch_size", "shuffle", "drop_last"):
            opts.pop(key, None)
        opts["batch_sampler"] = dynamic_batch_sampler(
            train,
            dynamic,
            sorting=sorting,
            seed=int(hparams.get("seed", 0)),
            epoch_counter=hparams.get("epoch_counter"),
        )
    return datasets


#: Keys ``dynamic_batching`` accepts (``DynamicBatchSampler``'s own arguments).
DYNAMIC_BATCHING_KEYS = (
    "max_batch_length",
    "num_buckets",
    "bucket_boundaries",
    "max_batch_ex",
    "shuffle",
    "batch_ordering",
    "drop_last",
)


class EpochDynamicBatchSampler(DynamicBatchSampler):
    """SpeechBrain's ``DynamicBatchSampler``, its epoch read from an epoch counter.

    A ``Brain`` calls ``set_epoch`` only on samplers it wraps itself (DDP or
    ``shuffle``), never on a ``batch_sampler`` given in the loader options: the
    sampler would deal the same batches every epoch, and a resumed run would
    skip batches of another order. Here every pass regenerates the batches of
    the epoch the counter is in, so they are a function of ``seed`` and the
    epoch only (SpeechBrain's ``SaveableDataLoader`` then skips the right ones
    after a resume).

    Arguments
    ---------
    *args, **kwargs
        ``DynamicBatchSampler``'s.
    epoch_counter : object, optional
        Anything with ``current`` (SpeechBrain's ``EpochCounter``). Without it,
        this is SpeechBrain's sampler unchanged.
    """

    def __init__(self, *args, epoch_counter=None, **kwargs) -> None:
        self.epoch_counter = epoch_counter
        super().__init__(*args, **kwargs)

    def __iter__(self):
        if self.epoch_counter is None:
            return super().__iter__()
        # set_epoch regenerates the batches; SpeechBrain's __iter__ would
        # regenerate them once more after the pass (for an epoch never set).
        self.set_epoch(int(self.epoch_counter.current))
        return iter(list(self._batches))


def quantile_boundaries(durations: Sequence[float], num_buckets: int) -> list[float]:
    """Bucket boundaries at equal-count quantiles of the utterances' durations.

    SpeechBrain's own ``num_buckets`` spreads the buckets over (0,
    ``max_batch_length``] along a log-normal curve: with batches of several
    clips, most of its buckets lie above the longest clip and stay empty, and
    the few that are used are wide (about 7 % padding with 20 buckets on 2-7 s
    clips and 56 s batches, against about 3 % with these).

    Arguments
    ---------
    durations : sequence of float
        Seconds of each training utterance.
    num_buckets : int
        How many buckets (fewer when durations repeat).

    Returns
    -------
    list of float
        Ascending right edges; the last is the longest duration.

    Example
    -------
    >>> quantile_boundaries([1.0, 2.0, 3.0, 4.0], 2)
    [2.5, 4.0]
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be positive, got {num_buckets}.")
    edges = np.quantile(
        np.asarray(durations, dtype=float), np.arange(1, num_buckets + 1) / num_buckets
    )
    return sorted({float(e) for e in edges if e > 0})


def dynamic_batch_sampler(
    dataset: DynamicItemDataset,
    settings: Mapping,
    sorting: str = "ascending",
    seed: int = 0,
    epoch_counter=None,
) -> EpochDynamicBatchSampler:
    """Duration-bucketed batches of at most ``max_batch_length`` seconds.

    SpeechBrain's ``DynamicBatchSampler`` on the ``duration`` column: each
    utterance goes to the bucket of the shortest boundary not below its
    duration, and a bucket of boundary ``b`` emits batches of
    ``max_batch_length // b`` utterances, so a padded batch never holds more
    than ``max_batch_length`` seconds (an utterance longer than that is a
    batch alone). Short clips thus come in larger batches than long ones.

    On 2 CPU cores this trains as fast per audio second as the default
    length-sorted batches (both pad 1-3 % of the frames) and 1.35x faster than
    shuffled ones (``sorting: random``, 32 % padding): what it adds over
    sorting is batches that change every epoch (``benchmarks/train_speed.py``).

    Arguments
    ---------
    dataset : DynamicItemDataset
        With a ``duration`` (seconds) in every row.
    settings : mapping
        ``max_batch_length`` (seconds, required); ``num_buckets`` (default 20:
        boundaries at quantiles of the durations, see
        :func:`quantile_boundaries`) or ``bucket_boundaries`` (seconds);
        optional ``max_batch_ex`` (utterances per batch at most), ``shuffle``
        (default True: new batches each epoch), ``batch_ordering``
        (``random``, ``ascending`` or ``descending``; default: ``sorting``'s
        direction), ``drop_last``.
    sorting : str
        The recipe's ``sorting``: sets the default ``batch_ordering``.
    seed : int
        With the epoch, fixes the batches.
    epoch_counter : object, optional
        The recipe's epoch counter (see :class:`EpochDynamicBatchSampler`).

    Returns
    -------
    EpochDynamicBatchSampler
        For ``train_dataloader_opts["batch_sampler"]``.

    Example
    -------
    >>> rows = {f"u{i}": {"duration": d} for i, d in enumerate([2, 2, 3, 6, 6, 7])}
    >>> settings = {"max_batch_length": 14, "num_buckets": 2, "shuffle": False}
    >>> sampler = dynamic_batch_sampler(DynamicItemDataset(rows), settings)
    >>> list(sampler)  # buckets up to 4.5 s (3 per batch) and 7 s (2 per batch)
    [[0, 1, 2], [3, 4], [5]]
    """
    unknown = sorted(set(settings) - set(DYNAMIC_BATCHING_KEYS))
    if unknown:
        raise ValueError(
            f"dynamic_batching has unknown keys {unknown}; it takes "
            f"{', '.join(DYNAMIC_BATCHING_KEYS)}."
        )
    kwargs = dict(settings)
    max_length = float(kwargs.pop("max_batch_length", 0) or 0)
    if max_length <= 0:
        raise ValueError(
            "dynamic_batching needs max_batch_length: the most seconds of padded "
            "audio in one batch (e.g. batch_size x max_duration)."
        )
    num_buckets = kwargs.pop("num_buckets", None)
    if not kwargs.get("bucket_boundaries"):
        durations = [float(dataset.data[i]["duration"]) for i in dataset.data_ids]
        kwargs["bucket_boundaries"] = quantile_boundaries(durations, num_buckets or 20)
    kwargs.setdefault("shuffle", True)
    kwargs.setdefault(
        "batch_ordering",
        sorting if sorting in ("ascending", "descending") else "random",
    )
    return EpochDynamicBatchSampler(
        dataset,
        max_length,
        length_func=lambda row: float(row["duration"]),
        seed=seed,
        epoch_counter=epoch_counter,
        **kwargs,
    )


def padding_fraction(
    batches: Sequence[Sequence[int]], lengths: Sequence[float]
) -> float:
    """Share of a padded epoch that is padding (each batch padded to its longest).

    Arguments
    ---------
    batches : sequence of sequences of int
        Indices into ``lengths``, one sequence per batch.
    lengths : sequence of float
        Length (seconds, frames, samples) of each utterance.

    Returns
    -------
    float
        In [0, 1): padded minus real length, over padded length.

    Example
    -------
    >>> padding_fraction([[0, 1], [2]], [1.0, 3.0, 2.0])
    0.25
    """
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1.0 - real / padded if padded else 0.0


#: Prefix of replayed source utterance ids (they may repeat target ids).
REPLAY_PREFIX = "replay_"


def _replay_datasets(hparams: dict, train, load, with_pipelines, ratio: float) -> dict:
    """Rehearsal: the union train set, its batch sampler, the source dev set.

    The union holds the target training rows (in their order) then the source
    ones (ids prefixed ``replay_``, filtered by ``max_duration`` and CTC fit as
    the target's are); a :class:`~xlt_plugin.data.replay.ReplayBatchSampler`
    mixes them by ``replay_ratio`` per batch and goes in
    ``train_dataloader_opts`` as its ``batch_sampler``.
    """
    from xlt_plugin.data.replay import ReplayBatchSampler

    out = {
        "replay_valid": load(hparams["replay_valid_csv"]).filtered_sorted(
            sort_key="duration"
        )
    }
    if ratio <= 0:
        return out
    source = load(hparams["replay_train_csv"])
    max_duration = hparams.get("max_duration")
    key_test = _ctc_fit_test(
        source, {**hparams, "train_csv": hparams["replay_train_csv"]}
    )
    source = source.filtered_sorted(
        sort_key="duration",
        key_max_value={"duration": max_duration} if max_duration else {},
        key_test=key_test,
    )

    # Copies of the rows without their "id" (DynamicItemDataset adds it to each
    # row, and refuses rows that have one): the union's ids are the keys.
    def row(dataset, utt):
        return {k: v for k, v in dataset.data[utt].items() if k != "id"}

    data = {utt: row(train, utt) for utt in train.data_ids}
    for utt in source.data_ids:
        data[REPLAY_PREFIX + utt] = row(source, utt)
    union = with_pipelines(DynamicItemDataset(data))
    n_target = len(train.data_ids)
    opts = hparams.setdefault("train_dataloader_opts", {})
    batch_size = int(opts.pop("batch_size", hparams.get("batch_size", 8)))
    opts.pop("shuffle", None)
    opts["batch_sampler"] = ReplayBatchSampler(
        range(n_target),
        range(n_target, len(data)),
        batch_size=batch_size,
        ratio=ratio,
        seed=int(hparams.get("seed", 0)),
        shuffle_target=hparams.get("sorting", "ascending") == "random",
        epoch_counter=hparams.get("epoch_counter"),
    )
    logger.info(
        "Rehearsal: %d target and %d source training utterances, %.0f%% of each "
        "batch from the source.",
        n_target,
        len(source.data_ids),
        100 * ratio,
    )
    out["train"] = union
    return out
