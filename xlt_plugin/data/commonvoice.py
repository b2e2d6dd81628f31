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
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
    "malformed_row": "the row has more or fewer tab-separated fields than the header",
    "duplicate_row": "the clip is listed twice in the same tsv (the first is kept)",
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
    """

    frames: int
    header_frames: int
    sample_rate: int
    channels: int
    loudest_db: float

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
        window = max(1, round(rate * window_seconds))
        frames, loudest = 0, 0.0
        # Whole windows per block, so windows never straddle two blocks. Not
        # f.blocks(): it trusts the header's length and pads a cut-off file.
        while True:
            block = f.read(window * 1024, dtype="float32", always_2d=True)
            if not len(block):
                break
            mono = block.mean(axis=1, dtype=np.float64)
            frames += len(mono)
            whole = len(mono) // window * window
            if whole:
                energy = np.square(mono[:whole]).reshape(-1, window).mean(axis=1)
                loudest = max(loudest, float(energy.max()))
            if whole < len(mono):
                loudest = max(loudest, float(np.square(mono[whole:]).mean()))
    db = 10 * math.log10(loudest) if loudest > 0 else _FLOOR_DB
    return ClipStats(frames, header_frames, rate, channels, max(db, _FLOOR_DB))


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
    they are reused, like SpeechBrain's own preps.

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
    save_folder.mkdir(parents=True, exist_ok=True)
    # Read every tsv first: a broken column set stops the prep before any work.
    tables = {s: read_tsv(data_folder / f"{s}.tsv") for s in splits}
    jobs = jobs or min(4, os.cpu_count() or 1)
    report = {"options": options, "options_hash": digest, "splits": {}}
    skipped_rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for split in splits:
            report["splits"][split], skipped = _prepare_split(
                data_folder, save_folder, split, tables[split], language, options, pool
            )
            skipped_rows += skipped
    _write_skipped(save_folder / "prep_skipped.tsv", skipped_rows)
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


def read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    """Read a Common Voice tsv (tab separated, no quoting), checking its columns.

    A row with more fields than the header gets its extra fields under the key
    ``None``; one with fewer gets ``None`` values (the prep counts both as
    ``malformed_row``).

    Arguments
    ---------
    path : Path
        The tsv file.

    Returns
    -------
    (columns, rows)

    Example
    -------
    >>> tsv = getfixture("tmp_path") / "train.tsv"
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
    # utf-8-sig: a tsv re-saved by a spreadsheet starts with a byte-order mark.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
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
        return columns, list(reader)


def _prepare_split(data_folder, save_folder, split, table, language, options, pool):
    """One split: returns (its report, its skipped rows)."""
    columns, rows = table
    counts: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    skipped: list[dict] = []

    def skip(reason, line, row, detail=""):
        counts[reason] += 1
        entry = {"line": line, "path": row.get("path"), "detail": detail}
        if len(examples[reason]) < _EXAMPLES_KEPT:
            examples[reason].append(entry)
        skipped.append({"split": split, "reason": reason, **entry})

    # Pass 1, no decoding: the row, its file and its text.
    pending, seen = [], set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if None in row or None in row.values():
            fields = sum(v is not None for k, v in row.items() if k is not None)
            fields += len(row.get(None) or [])
            skip(
                "malformed_row",
                line,
                row,
                f"{fields} fields, header has {len(columns)}",
            )
            continue
        if row["path"] in seen:
            skip("duplicate_row", line, row)
            continue
        seen.add(row["path"])
        clip = data_folder / "clips" / row["path"]
        if not row["path"] or not clip.is_file():
            skip("missing_clip", line, row, str(clip))
            continue
        if clip.stat().st_size == 0:
            skip("empty_clip", line, row)
            continue
        text = normalize_text(row["sentence"], language)
        if not text.strip():
            skip("empty_sentence", line, row, repr(row["sentence"]))
            continue
        foreign = foreign_characters(text, language)
        if foreign:
            skip("foreign_characters", line, row, "".join(sorted(foreign)))
            continue
        pending.append((line, row, clip, text))

    # Pass 2: decode each remaining clip once (in threads), then judge its audio.
    kept_rows, total_seconds = [], 0.0
    for (line, row, clip, text), stats in zip(
        pending, pool.map(_safe_clip_stats, [p[2] for p in pending]), strict=True
    ):
        if isinstance(stats, str):
            skip("undecodable_clip", line, row, stats)
            continue
        if stats.frames == 0:
            skip("undecodable_clip", line, row, "no audio frames")
            continue
        if 0 < stats.header_frames < 2**62 and (
            stats.frames < _MIN_DECODED_SHARE * stats.header_frames
        ):
            skip(
                "truncated_clip",
                line,
                row,
                f"{stats.frames} of {stats.header_frames} frames decoded",
            )
            continue
        if stats.loudest_db < options["silence_db"]:
            skip("silent_clip", line, row, f"loudest {stats.loudest_db:.1f} dBFS")
            continue
        duration = stats.duration
        if options["max_duration"] and duration > options["max_duration"]:
            skip("too_long", line, row, f"{duration:.2f} s")
            continue
        frames = encoder_frames(
            duration, options["frames_per_second"], options["time_stride"]
        )
        if frames < ctc_min_frames(text):
            skip(
                "too_short_for_transcript",
                line,
                row,
                f"{frames} frames for {ctc_min_frames(text)} labels",
            )
            continue
        total_seconds += duration
        kept_rows.append(
            {
                "ID": Path(row["path"]).stem,
                "duration": f"{duration:.3f}",
                "wav": str(clip.resolve()),
                "spk_id": row.get("client_id") or "unknown",
                "wrd": text,
                "accents": row.get("accents") or row.get("accent") or "",
                "locale": row.get("locale") or language,
                "sentence_domain": row.get("sentence_domain") or "",
            }
        )
    csv_path = save_folder / f"{split}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(kept_rows)
    os.replace(tmp, csv_path)
    report = {
        "tsv": str(data_folder / f"{split}.tsv"),
        "columns": columns,
        "rows": len(rows),
        "kept": len(kept_rows),
        "hours": round(total_seconds / 3600, 4),
        "skipped": dict(sorted(counts.items())),
        "examples": dict(examples),
    }
    return report, skipped


def _safe_clip_stats(path: Path) -> ClipStats | str:
    """``clip_stats``, or why it failed (libsndfile's words), for the report."""
    try:
        return clip_stats(path)
    except Exception as err:  # any decoder failure is the clip's, not ours
        return f"{type(err).__name__}: {err}"[:200]


def _write_skipped(path: Path, skipped: list[dict]) -> None:
    fields = ["split", "line", "path", "reason", "detail"]
    tmp = path.with_suffix(".tsv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t")
        writer.writeheader()
        for entry in skipped:
            clean = {k: str(entry[k] or "").replace("\t", " ") for k in fields}
            writer.writerow({k: v.replace("\n", " ") for k, v in clean.items()})
    os.replace(tmp, path)


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
    | train | 3 | 2 | 0.001 | 0 | 0 | 0 | 0 | 0 | 0 | 1 | 0 | 0 | 0 | 0 |
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
