"""Common Voice (any locale, any release) -> SpeechBrain CSV manifests.

Unlike SpeechBrain's own Common Voice prep, this one keeps Cyrillic, Han and accented
Latin letters, keeps short Chinese sentences, normalises text with the same function
the token inventories use (:func:`xlt_plugin.tokens.normalize_text`), keeps the
``accents``, ``locale`` and ``sentence_domain`` columns, and never drops a row
silently: every skipped row is counted by reason in ``prep_report.json`` (with the
first few examples), summarised in ``prep_report.md`` and listed one per line in
``prep_skipped.tsv``.

Every clip is decoded once, here (MP3 decodes at thousands of times real time, so a
100k-row release takes minutes): a clip that would crash or poison training later
(corrupt, cut off, silent) is caught and counted now, and durations are the decoded
ones, right for any rate, channel count or sample format.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from xlt_plugin.tokens import foreign_characters, normalize_text

logger = logging.getLogger(__name__)

#: Columns of a Common Voice v17 split file (``train.tsv``, ...), in order.
CV_COLUMNS = (
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
)
#: The split files of a release, ``<split>.tsv``.
CV_SPLITS = ("train", "dev", "test")
#: Common Voice v17 vocabularies of the ``age`` and ``gender`` columns.
CV_AGES = ("teens", "twenties", "thirties", "fourties", "fifties", "sixties")
CV_GENDERS = ("male_masculine", "female_feminine")
#: Written by ``xlt synth`` beside the tsv files: the corpus is synthetic, and how
#: it was made. Readers (``xlt export``'s model card) look for it, not at voices.
SYNTH_MARKER = "xlt_synth.json"
#: Columns the prep needs; every other Common Voice column is optional (older
#: releases lack ``sentence_id``, ``sentence_domain``, ``variant``, and call
#: ``accents`` ``accent``).
REQUIRED_COLUMNS = ("path", "sentence")
#: Columns written to each manifest, SpeechBrain's five first.
MANIFEST_COLUMNS = (
    "ID",
    "duration",
    "wav",
    "spk_id",
    "wrd",
    "accents",
    "locale",
    "sentence_domain",
)
#: Why a row can be skipped; each reason is counted in the report.
SKIP_REASONS = {
    "malformed_row": (
        "the row has more or fewer tab-separated fields than the header, a field "
        "over 131072 characters, or a $name SpeechBrain's CSV loader would misread"
    ),
    "not_utf8": "the row holds bytes that are not UTF-8 (re-save the tsv as UTF-8)",
    "duplicate_row": (
        "the clip, or another with the same ID (its name without extension), is "
        "listed earlier in the same tsv (the first is kept)"
    ),
    "missing_clip": "the clip listed in the tsv is not in clips/",
    "empty_clip": "the clip file has zero bytes",
    "undecodable_clip": "the clip could not be decoded (corrupt or unknown format)",
    "truncated_clip": "the clip decodes to much less audio than its header says",
    "silent_clip": "the loudest 25 ms of the clip is below silence_db",
    "empty_sentence": "the sentence is empty after normalisation",
    "foreign_characters": "the sentence has characters outside the language",
    "too_short_for_transcript": (
        "the clip has fewer encoder frames than CTC needs for its transcript"
    ),
    "too_long": "the clip is longer than max_duration",
}
#: Rows kept in the report as examples, per reason (all are in prep_skipped.tsv).
_EXAMPLES_KEPT = 5
#: A clip decoding to less than this share of its header's frames is cut off.
_MIN_DECODED_SHARE = 0.9
#: dBFS floor (digital silence would be minus infinity, which JSON cannot hold).
_FLOOR_DB = -200.0
#: Clips handed to the decoding threads at a time, per thread: while they decode
#: one batch the next is read and checked; memory holds two batches, whatever the
#: size of the release, and the threads rarely wait for the reader.
_BATCH_PER_JOB = 256
#: How Common Voice writes its tsv files: tabs, no quoting.
_TSV_DIALECT = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
#: What reading a tsv with errors="surrogateescape" makes of bytes not UTF-8.
_SURROGATE_ESCAPES = re.compile("[\udc80-\udcff]")
#: What ``speechbrain.dataio.dataio.load_data_csv`` replaces in every value.
_LOADER_VARIABLE = re.compile(r"\$[\w.]+")
#: Columns of ``prep_skipped.tsv``.
_SKIPPED_FIELDS = ["split", "line", "path", "reason", "detail"]


def ctc_min_frames(labels: str) -> int:
    """Frames CTC needs to emit ``labels``: one per label plus a blank per repeat.

    Arguments
    ---------
    labels : str
        The label sequence (characters).

    Returns
    -------
    int

    Example
    -------
    >>> ctc_min_frames("hello")  # 'll' needs a blank between the two l's
    6
    """
    repeats = sum(1 for a, b in zip(labels, labels[1:], strict=False) if a == b)
    return len(labels) + repeats


def encoder_frames(
    duration: float, frames_per_second: float = 100.0, time_stride: int = 2
) -> int:
    """Encoder output frames for a clip, counted conservatively (rounded down).

    The prep and the data pipeline both use this, so a manifest made with the
    model's stride never loses a row to the pipeline's own check.

    Arguments
    ---------
    duration : float
        Seconds of audio.
    frames_per_second : float
        Feature frames per second (``1000 / hop_length`` in ms).
    time_stride : int
        The encoder's time downsampling (``QuartzNet.time_stride``).

    Returns
    -------
    int

    Example
    -------
    >>> encoder_frames(1.0), encoder_frames(1.0, time_stride=4)
    (50, 25)
    """
    return int(duration * frames_per_second) // int(time_stride)


@dataclass(frozen=True)
class ClipStats:
    """What decoding a clip once tells: its true length and how loud it gets.

    Arguments
    ---------
    frames : int
        Frames actually decoded.
    header_frames : int
        Frames the file's header announces (an estimate for some MP3s).
    sample_rate : int
    channels : int
    loudest_db : float
        RMS level (dBFS, mono down-mix) of the loudest 25 ms window.
    nonfinite : int
        Frames holding a NaN or infinite sample (a damaged float WAV/FLAC): one
        such clip turns a whole batch's loss into NaN.
    """

    frames: int
    header_frames: int
    sample_rate: int
    channels: int
    loudest_db: float
    nonfinite: int = 0

    @property
    def duration(self) -> float:
        """Decoded seconds."""
        return self.frames / self.sample_rate


def clip_stats(path: str | os.PathLike, window_seconds: float = 0.025) -> ClipStats:
    """Decode a clip once, block by block, measuring its length and loudness.

    Arguments
    ---------
    path : path
        Any file soundfile reads (mp3, wav, flac, ogg; any rate, channels, format).
    window_seconds : float
        Window of the loudness measure.

    Returns
    -------
    ClipStats

    Raises
    ------
    soundfile.LibsndfileError, RuntimeError
        When the file cannot be opened or decoded to the end.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> path = getfixture("tmp_path") / "tone.wav"
    >>> t = np.arange(8000) / 8000
    >>> sf.write(path, np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, 1), 8000)
    >>> s = clip_stats(path)
    >>> s.duration, s.channels, round(s.loudest_db)
    (1.0, 2, -9)
    """
    with sf.SoundFile(str(path)) as f:
        rate, channels, header_frames = f.samplerate, f.channels, f.frames
        if rate <= 0 or channels <= 0:  # a damaged header; durations divide by rate
            raise RuntimeError(f"header says {rate} Hz, {channels} channels")
        window = max(1, round(rate * window_seconds))
        frames, loudest, nonfinite = 0, 0.0, 0
        # Whole windows per block, so windows never straddle two blocks. Not
        # f.blocks(): it trusts the header's length and pads a cut-off file.
        while True:
            block = f.read(window * 1024, dtype="float32", always_2d=True)
            if not len(block):
                break
            mono = block.mean(axis=1, dtype=np.float64)
            frames += len(mono)
            # A NaN or infinity in any channel makes the down-mix non-finite.
            nonfinite += len(mono) - int(np.count_nonzero(np.isfinite(mono)))
            whole = len(mono) // window * window
            if whole:
                energy = np.square(mono[:whole]).reshape(-1, window).mean(axis=1)
                loudest = max(loudest, float(energy.max()))
            if whole < len(mono):
                loudest = max(loudest, float(np.square(mono[whole:]).mean()))
    db = 10 * math.log10(loudest) if loudest > 0 else _FLOOR_DB
    db = max(db, _FLOOR_DB)
    return ClipStats(frames, header_frames, rate, channels, db, nonfinite)


def _options_hash(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def prepare_common_voice(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    language: str,
    splits: Iterable[str] = CV_SPLITS,
    frames_per_second: float = 100.0,
    time_stride: int = 2,
    max_duration: float | None = None,
    skip_prep: bool = False,
    silence_db: float = -50.0,
    jobs: int | None = None,
) -> dict:
    """Write ``<split>.csv`` manifests and a prep report for a Common Voice folder.

    Runs once: if the manifests and the report were written with the same options
    they are reused, like SpeechBrain's own preps. Rows are streamed from the tsv
    to the manifest (256 clips per thread decode at a time), so memory hardly
    grows with the size of the release (``benchmarks/prep_memory.py``).

    Arguments
    ---------
    data_folder : path
        A Common Voice locale folder (``train.tsv``, ``dev.tsv``, ``test.tsv``,
        ``clips/``), real or made by ``xlt synth``.
    save_folder : path
        Where ``train.csv``, ..., ``prep_report.{json,md}`` and
        ``prep_skipped.tsv`` go.
    language : str
        Common Voice locale (``es``, ``ru``, ``zh-HK``, ...): picks the text
        normalisation and the letters that count as the language's.
    splits : iterable of str
        The tsv files to read (``train`` reads ``train.tsv``).
    frames_per_second : float
        Feature frames per second (100 for a 10 ms hop).
    time_stride : int
        Encoder time downsampling (the model's ``time_stride``); with
        ``frames_per_second`` it decides which clips are too short for their
        transcript under CTC.
    max_duration : float, optional
        Clips longer than this (seconds) are skipped and counted.
    skip_prep : bool
        Do nothing (return the existing report, if any).
    silence_db : float
        A clip whose loudest 25 ms window is quieter than this (dBFS) is silent.
    jobs : int, optional
        Threads decoding clips (libsndfile releases the GIL); default up to 4.

    Returns
    -------
    dict
        The report: per split, rows read, rows kept, skips per reason, examples.

    Raises
    ------
    FileNotFoundError
        No data folder, or a split's tsv is missing.
    ValueError
        A tsv header without ``path`` or ``sentence``, or a data folder whose path
        SpeechBrain's CSV loader would misread (``$name``). Nothing is written.
    """
    data_folder, save_folder = Path(data_folder), Path(save_folder)
    splits = list(splits)
    report_path = save_folder / "prep_report.json"
    if skip_prep:
        return json.loads(report_path.read_text()) if report_path.exists() else {}
    options = {
        "data_folder": str(data_folder.resolve()),
        "language": language,
        "splits": splits,
        "frames_per_second": frames_per_second,
        "time_stride": time_stride,
        "max_duration": max_duration,
        "silence_db": silence_db,
    }
    digest = _options_hash(options)
    if report_path.exists() and all(
        (save_folder / f"{s}.csv").exists() for s in splits
    ):
        report = json.loads(report_path.read_text())
        if report.get("options_hash") == digest:
            logger.info("Common Voice manifests in %s are up to date.", save_folder)
            return report
    if not data_folder.is_dir():
        raise FileNotFoundError(
            f"data_folder {data_folder} does not exist. Point it at a Common Voice "
            "locale folder (with train.tsv, dev.tsv, test.tsv, clips/), or make one: "
            f"`xlt synth --lang {language} --out {data_folder} --utterances 600`."
        )
    clips = str((data_folder / "clips").resolve())
    if _LOADER_VARIABLE.search(clips):
        raise ValueError(
            f"The clips folder {clips} has {_LOADER_VARIABLE.search(clips)[0]!r} in "
            "its path: SpeechBrain's CSV loader would read it as a variable in every "
            "manifest row. Move the data, or link it from a path without '$'."
        )
    save_folder.mkdir(parents=True, exist_ok=True)
    # Every tsv header is checked first: a broken column set stops the prep before
    # any work. The rows themselves are read as they are prepared.
    tables = {s: read_tsv(data_folder / f"{s}.tsv") for s in splits}
    jobs = jobs or min(4, os.cpu_count() or 1)
    report = {"options": options, "options_hash": digest, "splits": {}}
    skipped_path = save_folder / "prep_skipped.tsv"
    skipped_tmp = skipped_path.with_suffix(".tsv.tmp")
    with (
        ThreadPoolExecutor(max_workers=jobs) as pool,
        open(skipped_tmp, "w", encoding="utf-8", newline="") as skipped_file,
    ):
        csv.DictWriter(skipped_file, _SKIPPED_FIELDS, delimiter="\t").writeheader()
        for split in splits:
            report["splits"][split] = _prepare_split(
                data_folder,
                save_folder,
                split,
                tables[split],
                language,
                options,
                pool,
                skipped_file,
                batch_size=_BATCH_PER_JOB * jobs,
            )
    os.replace(skipped_tmp, skipped_path)
    # The report is written last: its hash is what marks the manifests complete.
    (save_folder / "prep_report.md").write_text(report_markdown(report))
    tmp = report_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, report_path)
    for split, rep in report["splits"].items():
        logger.info(
            "%s: kept %d of %d rows (%s)",
            split,
            rep["kept"],
            rep["rows"],
            ", ".join(f"{k} {v}" for k, v in rep["skipped"].items()) or "no skips",
        )
    return report


class TsvRow(NamedTuple):
    """One row of a tsv, as :func:`read_tsv` streams it.

    Arguments
    ---------
    line : int
        Its line in the file (the header is line 1).
    values : dict
        Column -> value, by position (a short row lacks the last columns).
    problem : tuple of str, optional
        ``(skip reason, detail)`` when the line is not a usable row.
    """

    line: int
    values: dict
    problem: tuple[str, str] | None


def read_tsv(path: Path) -> tuple[list[str], Iterator[TsvRow]]:
    """Check a Common Voice tsv's header now; return its columns and rows, streamed.

    Tab separated, no quoting, header on the first line. The rows are read as
    the iterator is consumed, so a release of any size fits in memory. A row
    with more or fewer fields than the header, or a field longer than
    ``csv.field_size_limit()``, has the problem ``malformed_row``; one holding
    bytes that are not UTF-8 (kept as surrogate escapes, so one bad row does not
    stop the file) has ``not_utf8``. Blank lines are not rows.

    Arguments
    ---------
    path : Path
        The tsv file.

    Returns
    -------
    (columns, rows)
        The header, and an iterator of :class:`TsvRow`.

    Raises
    ------
    FileNotFoundError, ValueError
        No such file; a header without the columns the prep needs.

    Example
    -------
    >>> tsv = getfixture("tmp_path") / "train.tsv"
    >>> _ = tsv.write_bytes(b"path\\tsentence\\na.mp3\\thola\\nb.mp3\\n\\nc\\t\\xff\\n")
    >>> columns, rows = read_tsv(tsv)
    >>> for row in rows:
    ...     print(row.line, row.values.get("path"), row.problem)
    2 a.mp3 None
    3 b.mp3 ('malformed_row', '1 fields, header has 2')
    5 c ('not_utf8', "column 'sentence' holds b'\\\\xff', not UTF-8: re-save the \
tsv as UTF-8")
    >>> _ = tsv.write_text("client_id\\tpath\\ttext\\nc\\ta.mp3\\thola\\n")
    >>> read_tsv(tsv)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...train.tsv: missing column(s) ['sentence']; found ['client_id', \
'path', 'text']...
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: a Common Voice folder has train.tsv, dev.tsv and "
            "test.tsv beside clips/."
        )
    with _open_tsv(path) as f:
        try:
            columns = next(csv.reader(f, **_TSV_DIALECT), [])
        except csv.Error as err:  # e.g. a header longer than the csv field limit
            raise ValueError(
                f"{path}: the header line cannot be read ({err}). The first line of "
                "a Common Voice tsv names its columns, tab separated."
            ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
            if close:
                hints.append(f"rename column {close[0]!r} to {name!r}")
        if len(columns) == 1 and "," in columns[0]:
            hints.append("the file looks comma-separated; Common Voice uses tabs")
        hint = f" Fix: {'; '.join(hints)}." if hints else ""
        raise ValueError(
            f"{path}: missing column(s) {missing}; found {columns}. A Common "
            f"Voice tsv needs at least {list(REQUIRED_COLUMNS)} (tab separated, "
            f"header on the first line).{hint}"
        )
    return columns, _tsv_rows(path, columns)


def _open_tsv(path: Path):
    # utf-8-sig: a tsv re-saved by a spreadsheet starts with a byte-order mark.
    # surrogateescape: bytes that are not UTF-8 are their row's problem, counted,
    # instead of a UnicodeDecodeError that stops the whole prep.
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _tsv_rows(path: Path, columns: list[str]) -> Iterator[TsvRow]:
    with _open_tsv(path) as f:
        reader = csv.reader(f, **_TSV_DIALECT)
        next(reader, None)  # the header, checked by read_tsv
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # a field over the limit: the line is consumed
                yield TsvRow(reader.line_num, {}, ("malformed_row", str(err)))
                continue
            if not fields:
                continue  # a blank line (csv.DictReader skips them too)
            values = dict(zip(columns, fields, strict=False))
            problem = None
            if len(fields) != len(columns):
                detail = f"{len(fields)} fields, header has {len(columns)}"
                problem = ("malformed_row", detail)
            else:
                text = "\t".join(fields)
                if not text.isascii() and _SURROGATE_ESCAPES.search(text):
                    problem = ("not_utf8", _not_utf8_detail(values))
            yield TsvRow(reader.line_num, values, problem)


def _not_utf8_detail(values: dict) -> str:
    for column, value in values.items():
        if _SURROGATE_ESCAPES.search(value):
            raw = value.encode("utf-8", "surrogateescape")
            bad = _SURROGATE_ESCAPES.search(value)[0].encode("utf-8", "surrogateescape")
            start = max(0, raw.index(bad) - 10)
            return (
                f"column {column!r} holds {raw[start : start + 30]!r}, not UTF-8: "
                "re-save the tsv as UTF-8"
            )
    return "not UTF-8"


def _printable(text: str | None) -> str | None:
    """``text`` with bytes that were not UTF-8 written as ``\\xNN`` (outputs are
    UTF-8, which cannot hold the surrogate escapes the tsv reader keeps them as)."""
    if text is None or text.isascii() or not _SURROGATE_ESCAPES.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _loader_variable(values: dict) -> str:
    """Why SpeechBrain's CSV loader would choke on a manifest row, or ``""``.

    ``load_data_csv`` replaces ``$name`` in every value and raises a KeyError for
    a name it was not given, when training starts.
    """
    for column, value in values.items():
        found = _LOADER_VARIABLE.search(value)
        if found:
            return (
                f"column {column!r} holds {found[0]!r}, which SpeechBrain's CSV "
                "loader reads as a variable: remove the '$' in the tsv"
            )
    return ""


def _prepare_split(
    data_folder,
    save_folder,
    split,
    table,
    language,
    options,
    pool,
    skipped_file,
    batch_size,
):
    """One split, streamed: writes its manifest and skipped rows, returns its report.

    Skips found by decoding are written after the split's other skips (from a
    temporary file), the order of the prep that read every row before decoding.
    """
    columns, rows = table
    skipped = csv.DictWriter(skipped_file, _SKIPPED_FIELDS, delimiter="\t")
    counts: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    late = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
    late_skipped = csv.DictWriter(late, _SKIPPED_FIELDS, delimiter="\t")

    def skip(reason, line, row, detail="", writer=skipped):
        counts[reason] += 1
        path = _printable(row.get("path"))
        entry = {"line": line, "path": path, "detail": _printable(detail)}
        if len(examples[reason]) < _EXAMPLES_KEPT:
            examples[reason].append(entry)
        writer.writerow(_skipped_fields({"split": split, "reason": reason, **entry}))

    def judge(line, row, clip, text, labels, stem, decoding):
        """Pass 2, once a clip is decoded: its audio; keep the row or skip it."""
        nonlocal kept, total_seconds
        stats = decoding.result()
        if isinstance(stats, str):
            skip("undecodable_clip", line, row, stats, late_skipped)
            return
        if stats.frames == 0:
            skip("undecodable_clip", line, row, "no audio frames", late_skipped)
            return
        if stats.nonfinite:
            detail = f"{stats.nonfinite} frames hold NaN or infinite samples"
            skip("undecodable_clip", line, row, detail, late_skipped)
            return
        if 0 < stats.header_frames < 2**62 and (
            stats.frames < _MIN_DECODED_SHARE * stats.header_frames
        ):
            detail = f"{stats.frames} of {stats.header_frames} frames decoded"
            skip("truncated_clip", line, row, detail, late_skipped)
            return
        if stats.loudest_db < options["silence_db"]:
            detail = f"loudest {stats.loudest_db:.1f} dBFS"
            skip("silent_clip", line, row, detail, late_skipped)
            return
        duration = stats.duration
        if options["max_duration"] and duration > options["max_duration"]:
            skip("too_long", line, row, f"{duration:.2f} s", late_skipped)
            return
        frames = encoder_frames(
            duration, options["frames_per_second"], options["time_stride"]
        )
        if frames < ctc_min_frames(text):
            detail = f"{frames} frames for {ctc_min_frames(text)} labels"
            skip("too_short_for_transcript", line, row, detail, late_skipped)
            return
        total_seconds += duration
        kept += 1
        manifest.writerow(
            {
                "ID": stem,
                "duration": f"{duration:.3f}",
                "wav": str(clip.resolve()),
                "wrd": text,
                **labels,
            }
        )

    def hand_out(batch, decoding):
        """Start decoding ``batch`` (emptied), judge ``decoding``; the new one."""
        started = [(*item, pool.submit(_safe_clip_stats, item[2])) for item in batch]
        batch.clear()
        for item in decoding:
            judge(*item)
        return started

    csv_path = save_folder / f"{split}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    n_rows = kept = 0
    total_seconds = 0.0
    # The first row of an ID (a clip's name without extension) keeps it: the
    # manifest's IDs must be unique. Leading spaces do not count: SpeechBrain's
    # CSV loader strips them.
    ids: dict[str, str] = {}
    batch: list = []  # rows past pass 1, their clips not handed out yet
    decoding: list = []  # the batch before, its clips decoding
    with open(tmp, "w", encoding="utf-8", newline="") as f, late:
        manifest = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        manifest.writeheader()
        # Pass 1, no decoding: the row, its file and its text. The clips of the
        # rows that pass are decoded in threads, a batch at a time, while the
        # next batch goes through pass 1; rows are judged in their order.
        for line, row, problem in rows:
            n_rows += 1
            if problem:
                skip(problem[0], line, row, problem[1])
                continue
            path = row["path"]
            labels = {
                "spk_id": row.get("client_id") or "unknown",
                "accents": row.get("accents") or row.get("accent") or "",
                "locale": row.get("locale") or language,
                "sentence_domain": row.get("sentence_domain") or "",
            }
            variable = _loader_variable({"path": path, **labels})
            if variable:
                skip("malformed_row", line, row, variable)
                continue
            stem = Path(path).stem
            key = stem.lstrip(" ")
            first = ids.get(key)
            if first is not None:
                detail = "" if first == path else f"same ID as {first!r}"
                skip("duplicate_row", line, row, detail)
                continue
            ids[key] = path
            clip = data_folder / "clips" / path
            if not path or not clip.is_file():
                skip("missing_clip", line, row, str(clip))
                continue
            if clip.stat().st_size == 0:
                skip("empty_clip", line, row)
                continue
            try:
                text = normalize_text(row["sentence"], language)
            except Exception as err:
                if not any(c.isdigit() for c in row["sentence"]):
                    raise
                # num2words cannot spell every number (Spanish stops below 10**27,
                # Russian at 10**36, any language at 4300 digits): unspeakable
                # digits are characters outside the language.
                detail = f"a number num2words cannot spell: {type(err).__name__}"
                skip("foreign_characters", line, row, detail)
                continue
            if not text.strip():
                skip("empty_sentence", line, row, repr(row["sentence"]))
                continue
            foreign = foreign_characters(text, language)
            if foreign:
                skip("foreign_characters", line, row, "".join(sorted(foreign)))
                continue
            batch.append((line, row, clip, text, labels, stem))
            if len(batch) >= batch_size:
                decoding = hand_out(batch, decoding)
        decoding = hand_out(batch, decoding)
        hand_out(batch, decoding)
        late.seek(0)
        shutil.copyfileobj(late, skipped_file)
    os.replace(tmp, csv_path)
    return {
        "tsv": str(data_folder / f"{split}.tsv"),
        "columns": [_printable(c) for c in columns],
        "rows": n_rows,
        "kept": kept,
        "hours": round(total_seconds / 3600, 4),
        "skipped": dict(sorted(counts.items())),
        "examples": dict(examples),
    }


def _safe_clip_stats(path: Path) -> ClipStats | str:
    """``clip_stats``, or why it failed (libsndfile's words), for the report."""
    try:
        return clip_stats(path)
    except Exception as err:  # any decoder failure is the clip's, not ours
        return f"{type(err).__name__}: {err}"[:200]


def _skipped_fields(entry: dict) -> dict:
    """A ``prep_skipped.tsv`` row: no tabs or line breaks inside a field."""
    clean = {}
    for k in _SKIPPED_FIELDS:
        value = str(entry[k] or "")
        clean[k] = value.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return clean


def report_markdown(report: dict) -> str:
    """The prep report as a Markdown table (rows per split and skip reason).

    Arguments
    ---------
    report : dict
        What :func:`prepare_common_voice` returns.

    Returns
    -------
    str

    Example
    -------
    >>> rep = {"options": {"language": "es", "data_folder": "cv/es"}, "splits": {
    ...     "train": {"rows": 3, "kept": 2, "hours": 0.001,
    ...               "skipped": {"silent_clip": 1}}}}
    >>> print(report_markdown(rep).splitlines()[6])
    | train | 3 | 2 | 0.001 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 1 | 0 | 0 | 0 | 0 |
    """
    lines = [
        "# Common Voice prep report",
        "",
        f"Language `{report['options']['language']}`, data "
        f"`{report['options']['data_folder']}`. Every skipped row is listed in "
        "`prep_skipped.tsv` (split, tsv line, clip, reason, detail).",
        "",
        "| split | rows | kept | hours | " + " | ".join(SKIP_REASONS) + " |",
        "|---" * (4 + len(SKIP_REASONS)) + "|",
    ]
    for split, rep in report["splits"].items():
        cells = [str(rep["skipped"].get(r, 0)) for r in SKIP_REASONS]
        lines.append(
            f"| {split} | {rep['rows']} | {rep['kept']} | {rep['hours']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Reasons:", ""]
    lines += [f"- `{k}`: {v}" for k, v in SKIP_REASONS.items()]
    return "\n".join(lines) + "\n"
