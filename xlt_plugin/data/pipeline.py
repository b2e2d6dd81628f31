"""The data pipeline every recipe shares: manifests -> SpeechBrain datasets.

Audio is read with SpeechBrain's ``read_audio`` (soundfile), down-mixed to mono and
resampled to the model's rate when a clip is not already at it. Text becomes
character tokens through the recipe's ``CTCTextEncoder``.

A clip that cannot be read stops training with an error naming the file (the prep
decodes every clip, so this means the file changed after the prep). Training rows
too short for their transcript under CTC *at the model's own time stride* are
dropped and counted here too: CTC's ``zero_infinity`` would otherwise turn them
into silent zero losses.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import speechbrain as sb
import torch
import torchaudio
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CTCTextEncoder

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
    settings, so runs with other settings never read stale features.

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
    """

    def __init__(self, folder, compute_features, settings: dict, sample_rate=16000):
        import hashlib
        import json

        key = json.dumps(settings, sort_keys=True).encode()
        self.folder = Path(folder) / hashlib.sha256(key).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.compute_features = compute_features
        self.sample_rate = sample_rate

    def __call__(self, utt_id: str, wav: str) -> torch.Tensor:
        """Features ``[frames, n_mels]`` (float32) of one clip."""
        import os

        path = self.folder / f"{utt_id}.pt"
        if path.exists():
            return torch.load(path, weights_only=True).float()
        with torch.no_grad():
            sig = load_audio(wav, self.sample_rate).unsqueeze(0)
            feats = self.compute_features(sig)[0].half()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(feats, tmp)
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
    than ``max_duration`` seconds if set.

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
    if hparams.get("replay_train_csv"):
        datasets.update(
            _replay_datasets(hparams, train, load, with_pipelines, replay_ratio)
        )
    return datasets


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
