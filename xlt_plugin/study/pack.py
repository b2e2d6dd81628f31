"""A study's record without its corpora and checkpoints: keep it, share it, go on.

A long study outlives the machine it started on only if its finished runs do.
``xlt pack STUDY --out PACK`` copies what the report reads and what a rerun needs
to reuse a finished run: ``study.json``, and of each finished run its top-level
files (metrics, logs, hyperparameters, definition, cached English scores), the
prep reports of ``save/`` and ``model/`` without its weights, except for the
bases, whose weights their transfers load (and whose test manifests score the
English of those transfers). Corpora (made again from their definitions by
``xlt study``), checkpoints and unfinished runs are left out. ``xlt unpack PACK
--out STUDY`` puts a pack back into a study folder, pointing its manifests at
the new place; ``xlt study --out STUDY`` then reuses every packed run and trains
the rest, and ``xlt report STUDY`` reports.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from xlt_plugin.runs import is_finished, read_json

#: What a pack says about itself (its origin, for :func:`unpack_study`).
PACK_FILE = "PACK.json"
#: ``save/`` files a pack keeps: the prep reports (what was dropped, and why),
#: and of a base its manifests too (its test set scores the English of the runs
#: that start from it).
SAVE_SUFFIXES = (".json", ".md", ".tsv")
BASE_SAVE_SUFFIXES = (*SAVE_SUFFIXES, ".csv")
#: Top-level files a pack leaves out: SpeechBrain's copy of the training script
#: (~28 KB a run, the same as the recipe in the repository at that commit).
LEFT_OUT = ("recipe.py",)
#: ``model/`` files a pack keeps of a run that no other run starts from.
MODEL_SUFFIXES = (".json", ".md", ".txt", ".yaml")


def _copy_files(source: Path, dest: Path, suffixes: tuple | None = None) -> int:
    """Copy the regular files directly in ``source`` (with ``suffixes``, if
    given; not hidden ones, a run's lock, nor :data:`LEFT_OUT`) into ``dest``;
    returns their bytes."""
    size = 0
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name in LEFT_OUT:
            continue
        if suffixes and path.suffix not in suffixes:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / path.name)
        size += path.stat().st_size
    return size


def corpus_digest(folder: str | Path) -> str:
    """SHA-1 over a corpus's transcripts (``*.tsv``) and audio (``clips/``).

    A corpus made again from its definition on another machine should be the
    same bytes; this says whether it is (runs trained on two versions of a
    corpus would be mixed in one table).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "clips").mkdir()
    >>> _ = (tmp / "train.tsv").write_text("path\\tsentence\\n")
    >>> before = corpus_digest(tmp)
    >>> _ = (tmp / "clips" / "a.mp3").write_bytes(b"0")
    >>> corpus_digest(tmp) != before
    True
    """
    folder = Path(folder)
    digest = hashlib.sha1()
    for path in sorted([*folder.glob("*.tsv"), *folder.glob("clips/*")]):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pack_study(study: str | Path, out: str | Path) -> dict:
    """Copy the record of a study's finished runs into ``out``.

    Arguments
    ---------
    study : path
        A study folder (``xlt study --out``: ``study.json``, ``runs/``).
    out : path
        The pack's folder; packing into it again updates it (new runs added,
        packed runs refreshed).

    Returns
    -------
    dict
        ``packed`` and ``unfinished`` (run names), ``bytes`` copied, and
        ``corpora_changed``: the corpora whose bytes differ from those the pack
        recorded before (:func:`corpus_digest`; made again elsewhere, and not
        the same).

    Example
    -------
    >>> import json
    >>> from xlt_plugin.runs import append_metrics, metrics_path
    >>> tmp = getfixture("tmp_path")
    >>> runs = [{"name": "base", "base": None}, {"name": "xfer", "base": "base"}]
    >>> _ = (tmp / "s").mkdir(), (tmp / "s" / "study.json").write_text(
    ...     json.dumps({"runs": runs}))
    >>> for name in ("base", "xfer"):
    ...     (tmp / "s" / "runs" / name / "model").mkdir(parents=True)
    ...     for file in ("config.json", "model.ckpt"):
    ...         _ = (tmp / "s" / "runs" / name / "model" / file).write_text("{}")
    ...     append_metrics(metrics_path(tmp / "s" / "runs" / name),
    ...                    {"stage": "test", "zero_shot": False})
    >>> pack_study(tmp / "s", tmp / "p")["packed"]
    ['base', 'xfer']
    >>> sorted(p.name for p in (tmp / "p" / "runs").glob("*/model/*"))
    ['config.json', 'config.json', 'model.ckpt']
    """
    study, out = Path(study), Path(out)
    manifest = read_json(study / "study.json")
    if manifest is None:
        raise ValueError(
            f"{study} is not a study folder (no study.json): give the --out of "
            "an `xlt study` run"
        )
    bases = {run.get("base") for run in manifest["runs"]} - {None}
    packed, unfinished, size = [], [], 0
    runs_dir = study / "runs"
    for folder in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if not folder.is_dir():
            continue
        if not is_finished(folder):
            unfinished.append(folder.name)
            continue
        dest = out / "runs" / folder.name
        if dest.exists():  # a pack refreshed: drop what the run no longer has
            shutil.rmtree(dest)
        size += _copy_files(folder, dest)
        base = folder.name in bases
        if (folder / "save").is_dir():
            kept = BASE_SAVE_SUFFIXES if base else SAVE_SUFFIXES
            size += _copy_files(folder / "save", dest / "save", kept)
        size += _copy_files(folder / "model", dest / "model", None if base else
                            MODEL_SUFFIXES)  # fmt: skip
        packed.append(folder.name)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(study / "study.json", out / "study.json")
    before = (read_json(out / PACK_FILE) or {}).get("corpora", {})
    corpora = {
        name: corpus_digest(corpus["folder"])
        for name, corpus in manifest.get("corpora", {}).items()
        if Path(corpus["folder"]).is_dir()
    }
    changed = [n for n, d in corpora.items() if before.get(n, d) != d]
    about = {"study_folder": str(study.resolve()), "runs": packed,
             "corpora": {**before, **corpora}}  # fmt: skip
    (out / PACK_FILE).write_text(json.dumps(about, indent=1) + "\n", encoding="utf-8")
    return {"packed": packed, "unfinished": unfinished, "bytes": size,
            "corpora_changed": changed}  # fmt: skip


def unpack_study(pack: str | Path, out: str | Path) -> list[str]:
    """Put a pack's runs into the study folder ``out``; returns their names.

    Run folders already in ``out`` are kept as they are (a folder there may
    hold more than the pack: its checkpoints). The runs' ``save/*.csv``
    manifests name audio under the packed study's folder; they are rewritten
    to name it under ``out``, where ``xlt study --out`` makes the corpora again.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> (tmp / "p" / "runs" / "a" / "save").mkdir(parents=True)
    >>> _ = (tmp / "p" / "runs" / "a" / "save" / "test.csv").write_text(
    ...     "ID,wav\\n1,/old/study/data/en/clips/1.mp3\\n")
    >>> _ = (tmp / "p" / "study.json").write_text("{}")
    >>> _ = (tmp / "p" / "PACK.json").write_text('{"study_folder": "/old/study"}')
    >>> unpack_study(tmp / "p", tmp / "new")
    ['a']
    >>> (tmp / "new" / "runs" / "a" / "save" / "test.csv").read_text().split()[1]
    '1,...new/data/en/clips/1.mp3'
    """
    pack, out = Path(pack), Path(out)
    about = read_json(pack / PACK_FILE)
    if about is None:
        raise ValueError(f"{pack} is not a pack (no {PACK_FILE}): make one with "
                         "`xlt pack STUDY --out DIR`")  # fmt: skip
    old, new = about["study_folder"].rstrip("/"), str(out.resolve())
    restored = []
    for folder in sorted((pack / "runs").iterdir()):
        dest = out / "runs" / folder.name
        if dest.exists():
            continue
        shutil.copytree(folder, dest)
        for manifest in (dest / "save").glob("*.csv"):
            text = manifest.read_text(encoding="utf-8")
            manifest.write_text(text.replace(old + "/", new + "/"), encoding="utf-8")
        restored.append(folder.name)
    if not (out / "study.json").exists():
        shutil.copy2(pack / "study.json", out / "study.json")
    return restored
