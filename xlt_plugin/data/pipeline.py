"""The data pipeline every recipe shares: manifests -> SpeechBrain datasets.

Audio is read with SpeechBrain's ``read_audio`` (soundfile), down-mixed to mono and
resampled to the model's rate when a clip is not already at it. Text becomes
character tokens through the recipe's ``CTCTextEncoder``.
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
    info = sb.dataio.dataio.read_audio_info(path)
    sig = sb.dataio.dataio.read_audio(path)
    if sig.dim() == 2:  # [samples, channels]
        sig = sig.mean(dim=1)
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


def make_datasets(hparams: dict, tokenizer: CTCTextEncoder) -> dict:
    """Train/valid/test ``DynamicItemDataset``s with ``sig``, ``tokens``, ``wrd``.

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

    Returns
    -------
    dict
        ``{"train": ds, "valid": ds, "test": {name: ds}}``.
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

    def load(csv_file):
        ds = DynamicItemDataset.from_csv(csv_path=str(csv_file))
        ds.add_dynamic_item(audio_pipeline)
        ds.add_dynamic_item(text_pipeline)
        ds.set_output_keys(["id", "sig", "tokens", "wrd"])
        return ds

    max_duration = hparams.get("max_duration")
    train = load(hparams["train_csv"])
    sorting = hparams.get("sorting", "ascending")
    key_max = {"duration": max_duration} if max_duration else {}
    if sorting in ("ascending", "descending"):
        train = train.filtered_sorted(
            sort_key="duration", reverse=sorting == "descending", key_max_value=key_max
        )
        # Sorted data must not be shuffled again by the loader.
        hparams.setdefault("train_dataloader_opts", {})["shuffle"] = False
    elif sorting == "random":
        if key_max:
            train = train.filtered_sorted(key_max_value=key_max)
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
    return {"train": train, "valid": valid, "test": test}
