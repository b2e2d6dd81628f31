"""Your own data (a CSV/TSV/JSONL of ``path, text``) as a Common Voice folder.

The domain recipe, like every recipe, reads a Common Voice-layout folder. This
module writes one from a plain manifest, so a user's own recordings go through the
same prep (text normalisation, counted skips, prep report) as Common Voice does:
nothing about the recipes changes.

Columns (names are case-insensitive; the first two are required):

- ``path`` (or ``file``, ``audio``, ``wav``): an audio file, absolute or relative to
  the manifest's folder;
- ``text`` (or ``sentence``, ``transcript``, ``wrd``): its transcript;
- ``speaker`` (or ``client_id``, ``spk_id``), optional: speakers are kept disjoint
  across splits, as in Common Voice;
- ``split``, optional: ``train``/``dev``/``test`` (``valid`` and ``validation``
  count as ``dev``); without it, the split is drawn from the seed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from pathlib import Path

from xlt_plugin.data.commonvoice import CV_COLUMNS, CV_SPLITS

ALIASES = {
    "path": ("path", "file", "audio", "wav", "audio_filepath"),
    "text": ("text", "sentence", "transcript", "wrd"),
    "speaker": ("speaker", "client_id", "spk_id"),
    "split": ("split",),
}
SPLIT_NAMES = {
    "train": "train",
    "dev": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
}


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV, TSV or JSONL manifest with canonical keys.

    Arguments
    ---------
    path : path
        ``.csv``, ``.tsv`` or ``.jsonl`` (one JSON object a line, e.g. NeMo's
        manifests with ``audio_filepath`` and ``text``).

    Returns
    -------
    list of dict
        Keys ``path`` (absolute), ``text``, ``speaker``, ``split``, ``line``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if path.suffix == ".jsonl" or path.suffix == ".json":
        raw = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {n}: not JSON ({err})") from None
    else:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with open(path, encoding="utf-8", newline="") as f:
            raw = list(csv.DictReader(f, delimiter=delimiter))
    rows = []
    for n, record in enumerate(raw, 2 if path.suffix in (".csv", ".tsv") else 1):
        lower = {str(k).strip().lower(): v for k, v in record.items()}
        row = {"line": n}
        for key, names in ALIASES.items():
            row[key] = next(
                (lower[x] for x in names if lower.get(x) not in (None, "")), None
            )
        for key in ("path", "text"):
            if row[key] is None:
                raise ValueError(
                    f"{path} row {n}: no {key!r} column (accepted names: "
                    f"{', '.join(ALIASES[key])}); found {sorted(lower)}"
                )
        audio = Path(row["path"])
        row["path"] = str(audio if audio.is_absolute() else path.parent / audio)
        if row["split"] is not None:
            split = SPLIT_NAMES.get(str(row["split"]).strip().lower())
            if split is None:
                raise ValueError(
                    f"{path} row {n}: split {row['split']!r} is not one of "
                    f"{sorted(SPLIT_NAMES)}"
                )
            row["split"] = split
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} has no rows")
    return rows


def _assign_splits(rows: list[dict], dev: float, test: float, seed: int) -> None:
    """Give rows without a split one, by speaker (disjoint) or by row."""
    todo = [r for r in rows if r["split"] is None]
    groups = sorted({r["speaker"] or r["path"] for r in todo})
    random.Random(seed).shuffle(groups)
    n_test = max(1, round(test * len(groups))) if test > 0 else 0
    n_dev = max(1, round(dev * len(groups))) if dev > 0 else 0
    split_of = {}
    for i, group in enumerate(groups):
        split_of[group] = (
            "test" if i < n_test else "dev" if i < n_test + n_dev else ("train")
        )
    for row in todo:
        row["split"] = split_of[row["speaker"] or row["path"]]


def manifest_to_common_voice(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    locale: str = "en",
    domain: str = "",
    dev: float = 0.1,
    test: float = 0.1,
    seed: int = 1,
) -> dict:
    """Write ``train/dev/test/validated.tsv`` (Common Voice v17 columns) for a manifest.

    Clips stay where they are (``path`` holds absolute paths, which the Common
    Voice prep joins onto ``clips/`` unchanged). Tabs and newlines in transcripts
    become spaces (the tsv format has no quoting).

    Arguments
    ---------
    manifest : path
        CSV, TSV or JSONL (see the module docstring).
    out_dir : path
        The Common Voice-layout folder to write (a recipe's ``--data_folder``).
    locale : str
        Written to the ``locale`` column.
    domain : str
        Written to ``sentence_domain`` (the domain recipe scores per value).
    dev, test : float
        Shares of speakers (or rows, without speakers) for dev and test, for rows
        without a ``split``.
    seed : int
        Seed of that split.

    Returns
    -------
    dict
        Rows per split.
    """
    rows = read_manifest(manifest)
    _assign_splits(rows, dev, test, seed)
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    counts = {}
    lines_by_split = {}
    for split in CV_SPLITS:
        lines = ["\t".join(CV_COLUMNS)]
        for row in (r for r in rows if r["split"] == split):
            text = " ".join(str(row["text"]).split())
            speaker = row["speaker"] or ""
            client = hashlib.sha512(speaker.encode()).hexdigest() if speaker else ""
            values = {
                "client_id": client,
                "path": row["path"],
                "sentence_id": hashlib.sha256(text.encode()).hexdigest(),
                "sentence": text,
                "sentence_domain": domain,
                "locale": locale,
            }
            lines.append("\t".join(values.get(c, "") for c in CV_COLUMNS))
        lines_by_split[split] = lines
        counts[split] = len(lines) - 1
        (out / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    validated = lines_by_split["train"] + lines_by_split["dev"][1:]
    validated += lines_by_split["test"][1:]
    (out / "validated.tsv").write_text("\n".join(validated) + "\n", encoding="utf-8")
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"{manifest}: the {', '.join(empty)} split(s) would be empty; add rows, "
            "a `split` column, or raise --dev/--test"
        )
    return counts
