"""Common Voice (any locale, any recent release) -> SpeechBrain CSV manifests.

Unlike SpeechBrain's own Common Voice prep, this one keeps Cyrillic, Han and accented
Latin letters, keeps short Chinese sentences, normalises text with the same function
the token inventories use (:func:`xlt_plugin.tokens.normalize_text`), keeps the
``accents``, ``locale`` and ``sentence_domain`` columns, and never drops a row
silently: every skipped row is counted by reason in ``prep_report.json`` (with the
first few examples) and summarised in ``prep_report.md``.

Durations come from the clip headers (``soundfile.info``); no clip is decoded here,
so the prep stays fast on a 100k-row release.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import soundfile as sf

from xlt_plugin.tokens import foreign_characters, normalize_text

logger = logging.getLogger(__name__)

#: Columns the prep needs; every other Common Voice column is optional.
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
    "missing_clip": "the clip listed in the tsv is not in clips/",
    "empty_clip": "the clip file has zero bytes",
    "undecodable_clip": "the clip could not be read (corrupt or unknown format)",
    "empty_sentence": "the sentence is empty after normalisation",
    "foreign_characters": "the sentence has characters outside the language",
    "too_short_for_transcript": (
        "the clip has fewer encoder frames than CTC needs for its transcript"
    ),
    "too_long": "the clip is longer than max_duration",
}
_EXAMPLES_KEPT = 5


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


def _options_hash(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def prepare_common_voice(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    language: str,
    splits: Iterable[str] = ("train", "dev", "test"),
    frames_per_second: float = 100.0,
    time_stride: int = 2,
    max_duration: float | None = None,
    skip_prep: bool = False,
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
        Where ``train.csv``, ... and ``prep_report.{json,md}`` go.
    language : str
        Common Voice locale (``es``, ``ru``, ``zh-HK``, ...): picks the text
        normalisation and the letters that count as the language's.
    splits : iterable of str
        The tsv files to read (``train`` reads ``train.tsv``).
    frames_per_second : float
        Feature frames per second (100 for a 10 ms hop).
    time_stride : int
        Encoder time downsampling; with ``frames_per_second`` it decides which clips
        are too short for their transcript under CTC.
    max_duration : float, optional
        Clips longer than this (seconds) are skipped and counted.
    skip_prep : bool
        Do nothing (return the existing report, if any).

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
    report = {"options": options, "options_hash": digest, "splits": {}}
    for split in splits:
        report["splits"][split] = _prepare_split(
            data_folder, save_folder, split, language, options
        )
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (save_folder / "prep_report.md").write_text(report_markdown(report))
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

    Arguments
    ---------
    path : Path
        The tsv file.

    Returns
    -------
    (columns, rows)
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: a Common Voice folder has train.tsv, dev.tsv and "
            "test.tsv beside clips/."
        )
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; found {columns}. A Common "
                f"Voice tsv needs at least {list(REQUIRED_COLUMNS)} (tab separated, "
                "header on the first line)."
            )
        return columns, list(reader)


def _prepare_split(data_folder, save_folder, split, language, options) -> dict:
    columns, rows = read_tsv(data_folder / f"{split}.tsv")
    counts: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    kept_rows = []
    total_seconds = 0.0

    def skip(reason, line, row, detail=""):
        counts[reason] += 1
        if len(examples[reason]) < _EXAMPLES_KEPT:
            examples[reason].append(
                {"line": line, "path": row.get("path"), "detail": detail}
            )

    for line, row in enumerate(rows, start=2):  # line 1 is the header
        clip = data_folder / "clips" / (row.get("path") or "")
        if not row.get("path") or not clip.is_file():
            skip("missing_clip", line, row, str(clip))
            continue
        if clip.stat().st_size == 0:
            skip("empty_clip", line, row)
            continue
        try:
            info = sf.info(str(clip))
            duration = info.frames / info.samplerate
        except Exception as err:  # libsndfile says why; keep its words
            skip("undecodable_clip", line, row, str(err)[:200])
            continue
        if duration <= 0:
            skip("undecodable_clip", line, row, "no audio frames")
            continue
        text = normalize_text(row.get("sentence") or "", language)
        if not text.strip():
            skip("empty_sentence", line, row, repr(row.get("sentence")))
            continue
        foreign = foreign_characters(text, language)
        if foreign:
            skip("foreign_characters", line, row, "".join(sorted(foreign)))
            continue
        if options["max_duration"] and duration > options["max_duration"]:
            skip("too_long", line, row, f"{duration:.2f} s")
            continue
        frames = int(duration * options["frames_per_second"]) // options["time_stride"]
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
                "spk_id": row.get("client_id", "") or "unknown",
                "wrd": text,
                "accents": row.get("accents", "") or "",
                "locale": row.get("locale", "") or language,
                "sentence_domain": row.get("sentence_domain", "") or "",
            }
        )
    csv_path = save_folder / f"{split}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(kept_rows)
    os.replace(tmp, csv_path)
    return {
        "tsv": str(data_folder / f"{split}.tsv"),
        "columns": columns,
        "rows": len(rows),
        "kept": len(kept_rows),
        "hours": round(total_seconds / 3600, 4),
        "skipped": dict(sorted(counts.items())),
        "examples": dict(examples),
    }


def report_markdown(report: dict) -> str:
    """The prep report as a Markdown table (rows per split and skip reason).

    Arguments
    ---------
    report : dict
        What :func:`prepare_common_voice` returns.

    Returns
    -------
    str
    """
    lines = [
        "# Common Voice prep report",
        "",
        f"Language `{report['options']['language']}`, data "
        f"`{report['options']['data_folder']}`.",
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
