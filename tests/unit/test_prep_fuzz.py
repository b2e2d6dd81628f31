"""The Common Voice prep on damaged and fuzzed corpora: no crash, every row counted.

One small valid corpus is written once with soundfile (MP3, WAV, FLAC, OGG, a
stereo 48 kHz float WAV; no espeak). Hypothesis then derives a few hundred
mutated copies from it (clips cut, emptied, deleted or overwritten with random
bytes; tsv cells replaced with odd Unicode, long numbers, ``$name``, bytes that
are not UTF-8 or 200k-character fields; rows emptied, cut, lengthened,
duplicated; columns dropped or renamed; a byte-order mark) and preps each. The
prep may stop only with its documented error for a header without ``path`` or
``sentence``; otherwise every row is kept or skipped for a reason, and the
manifest loads in SpeechBrain.

The last tests pin the streamed prep's outputs to those of the prep it replaced
(which read every row into memory first), byte for byte, on a damaged corpus.
"""

import csv
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from speechbrain.dataio.dataio import load_data_csv
from speechbrain.utils.importutils import LazyModule

from xlt_plugin.data.commonvoice import (
    CV_COLUMNS,
    SKIP_REASONS,
    prepare_common_voice,
)
from xlt_plugin.tokens import foreign_characters

#: (clip name, seconds, rate, channels, soundfile subtype or None) of the corpus.
CLIPS = [
    ("c0.mp3", 1.2, 16000, 1, None),
    ("c1.wav", 1.0, 16000, 1, "PCM_16"),
    ("c2.flac", 1.1, 8000, 1, "PCM_24"),
    ("c3.wav", 1.0, 48000, 2, "FLOAT"),
    ("c4.ogg", 1.3, 16000, 1, None),
    ("c5.mp3", 1.4, 22050, 1, None),
]
SENTENCES = [
    "Hola, ¿qué tal?",
    "buenos días",
    "El niño come pan.",
    "sí señor",
    "¡Qué bien!",
    "mañana",
]
#: Characters that trouble text handling: combining marks, zero-width and
#: direction marks, right-to-left letters, NUL and other controls, separators
#: that are not newlines, astral and private-use code points, digits of other
#: scripts, quotes and SpeechBrain's variable sign.
ODD = (
    "\u0301\u0308\u0327\u200b\u200c\u200d\ufeff\u202e\u202d\u200f\u061c"
    "\u05d0\u05e9\u0627\u0644\x00\x01\x1f\x7f\x85\xa0\u2028\u2029\x0b\x0c"
    "\U0001d518\U0001f600\u5b57\u00df\u0130\u01c5\ufb01\ue000\U0010ffff\ufffe"
    "\u0663\u00b2\u00bd\u216b\"',; $%&@#-_."
)
#: Byte sequences that are not UTF-8: surrogates (as UTF-8 would spell them),
#: Latin-1, a lone continuation byte, an overlong slash, 0xFF.
NOT_UTF8 = [
    "\ud800".encode("utf-8", "surrogatepass"),
    "\udfff".encode("utf-8", "surrogatepass"),
    "España".encode("latin-1"),
    b"\x80",
    b"\xc0\xaf",
    b"\xff\xfe",
]
LANGUAGES = ["es", "es", "es", "ru", "zh-CN", "ta"]


def _keep_speechbrain_proxies_lazy() -> None:
    """Give SpeechBrain's not-yet-imported lazy modules ``__file__ = None``.

    Hypothesis reads ``__file__`` of every module in ``sys.modules`` (to draw
    constants from local code). On SpeechBrain's proxies of optional
    integrations (k2, flair, spacy, ...) that attempts the import, whose
    ImportError then fails the whole session. ``import speechbrain`` makes all
    of them, so once is enough.
    """
    for module in list(sys.modules.values()):
        if isinstance(module, LazyModule) and module.lazy_module is None:
            module.__file__ = None


_keep_speechbrain_proxies_lazy()


def _voice(seconds, rate, seed):
    """A loud harmonic tone with a syllable-rate envelope (speech enough here)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(110, 220)
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * y * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)).astype("float32")


def _write_clips(clips: Path, specs=CLIPS) -> None:
    clips.mkdir(parents=True, exist_ok=True)
    for seed, (name, seconds, rate, channels, subtype) in enumerate(specs):
        y = _voice(seconds, rate, seed)
        audio = np.stack([y, 0.5 * y], 1) if channels == 2 else y
        sf.write(clips / name, audio, rate, subtype=subtype)


def _row(i, path, sentence):
    values = {
        "client_id": f"speaker{i % 3}",
        "path": path,
        "sentence_id": f"s{i}",
        "sentence": sentence,
        "up_votes": "2",
        "down_votes": "0",
        "age": "twenties",
        "gender": "female_feminine",
        "accents": "España",
        "locale": "es",
    }
    return [values.get(c, "") for c in CV_COLUMNS]


def _base_rows() -> list[list]:
    pairs = enumerate(zip(CLIPS, SENTENCES, strict=True))
    return [_row(i, clip[0], sentence) for i, (clip, sentence) in pairs]


def _tsv_bytes(columns, rows, bom=False) -> bytes:
    """Tab-joined lines; a cell may be bytes (written as is)."""
    lines = []
    for cells in [columns, *rows]:
        raw = [c if isinstance(c, bytes) else c.encode() for c in cells]
        lines.append(b"\t".join(raw))
    return (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The valid corpus every mutation starts from: its folder."""
    folder = tmp_path_factory.mktemp("base")
    _write_clips(folder / "clips")
    rows = _base_rows()
    (folder / "train.tsv").write_bytes(_tsv_bytes(list(CV_COLUMNS), rows))
    report = prepare_common_voice(folder, folder / "save", "es", ["train"])
    assert report["splits"]["train"]["kept"] == len(CLIPS)  # a valid start
    return folder


# --------------------------------------------------------------- mutations
_cells = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"),
        max_size=30,
    ),
    st.lists(st.sampled_from(ODD + "abcñá"), max_size=30).map("".join),
    st.integers(20, 5000).map(lambda n: "9" * n),  # numbers num2words cannot spell
    st.from_regex(r"\$[a-z_]{1,8}", fullmatch=True),
    st.just(""),
    st.just(" "),
)
_clip_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.95)),
    st.tuples(st.just("random"), st.binary(min_size=1, max_size=1000)),
    st.tuples(
        st.just("splice"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=100)
    ),
    st.tuples(st.just("header"), st.binary(min_size=4, max_size=64)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=200)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("delete")),
    st.tuples(st.just("nan")),
    st.tuples(st.just("silence")),
    st.tuples(st.just("short")),
)
_row_index = st.integers(0, len(CLIPS) - 1)
_column = st.sampled_from(CV_COLUMNS)
_operations = st.one_of(
    st.tuples(st.just("cell"), _row_index, _column, _cells),
    st.tuples(st.just("bytes"), _row_index, _column, st.sampled_from(NOT_UTF8)),
    st.tuples(st.just("huge_cell"), _row_index, _column, st.integers(131_073, 300_000)),
    st.tuples(st.just("huge_row"), _row_index, st.integers(14, 5000)),
    st.tuples(st.just("drop_fields"), _row_index, st.integers(1, 13)),
    st.tuples(st.just("extra_fields"), _row_index, st.lists(_cells, min_size=1)),
    st.tuples(st.just("empty_row"), _row_index),
    st.tuples(st.just("blank_line"), _row_index),
    st.tuples(st.just("duplicate"), _row_index, _row_index),
    st.tuples(st.just("same_id"), _row_index, _row_index),
    st.tuples(st.just("drop_column"), _column),
    st.tuples(st.just("rename_column"), _column, _cells),
    st.tuples(st.just("bom")),
)
_clip_operations = st.tuples(st.just("clip"), _row_index, _clip_damage)


def _damage_clip(path: Path, damage, rng) -> None:
    kind, *args = damage
    if kind == "delete":
        path.unlink(missing_ok=True)
        return
    data = path.read_bytes() if path.exists() else b""
    path.unlink(missing_ok=True)  # a hard link to the base: never write through
    if kind == "truncate":
        data = data[: int(len(data) * args[0])]
    elif kind == "random":
        data = args[0]
    elif kind == "splice":
        at = int(len(data) * args[0])
        data = data[:at] + args[1] + data[at + len(args[1]) :]
    elif kind == "header":
        data = args[0] + data[len(args[0]) :]
    elif kind == "append":
        data += args[0]
    elif kind == "empty":
        data = b""
    elif kind in ("nan", "silence", "short"):  # WAV data, whatever the name
        y = _voice(0.1 if kind == "short" else 1.0, 16000, 0)
        if kind == "nan":
            y[rng.integers(0, len(y), 3)] = [np.nan, np.inf, -np.inf]
        sf.write(path, y * (kind != "silence"), 16000, "FLOAT", format="WAV")
        return
    path.write_bytes(data)


def _mutated(base: Path, folder: Path, operations) -> tuple[list, list, bool]:
    """Write a mutated copy of ``base``; return (columns, row lines, bom)."""
    (folder / "clips").mkdir(parents=True)
    for clip in (base / "clips").iterdir():
        os.link(clip, folder / "clips" / clip.name)
    columns = list(CV_COLUMNS)
    rows = _base_rows()
    rng = np.random.default_rng(0)
    bom = False
    for op, *args in operations:
        if op == "clip":
            _damage_clip(folder / "clips" / CLIPS[args[0]][0], args[1], rng)
        elif op in ("cell", "bytes") and args[1] in columns:
            row = rows[args[0] % len(rows)]
            if columns.index(args[1]) < len(row):
                row[columns.index(args[1])] = args[2]
        elif op == "huge_cell" and args[1] in columns:
            row = rows[args[0] % len(rows)]
            if columns.index(args[1]) < len(row):
                row[columns.index(args[1])] = "x" * int(args[2])
        elif op == "huge_row":
            rows[args[0] % len(rows)] += ["1"] * args[1]
        elif op == "drop_fields":
            row = rows[args[0] % len(rows)]
            del row[max(1, len(row) - args[1]) :]
        elif op == "extra_fields":
            rows[args[0] % len(rows)] += args[1]
        elif op == "empty_row":
            rows.insert(args[0] % len(rows), [""] * len(columns))
        elif op == "blank_line":
            rows.insert(args[0] % len(rows), [])
        elif op == "duplicate":
            rows.insert(args[1] % len(rows), list(rows[args[0] % len(rows)]))
        elif op == "same_id" and "path" in columns:  # c1.wav -> c1.flac, say
            donor = rows[args[0] % len(rows)]
            row = rows[args[1] % len(rows)]
            at = columns.index("path")
            if at < len(row) and at < len(donor) and isinstance(donor[at], str):
                stem = Path(donor[at]).stem
                name = f"{stem}{Path(str(row[at])).suffix or '.wav'}"
                if not (folder / "clips" / name).exists():
                    shutil.copyfile(base / "clips" / "c1.wav", folder / "clips" / name)
                row[at] = name
        elif op == "drop_column" and args[0] in columns:
            at = columns.index(args[0])
            del columns[at]
            for row in rows:
                del row[at : at + 1]
        elif op == "rename_column" and args[0] in columns:
            columns[columns.index(args[0])] = args[1]
        elif op == "bom":
            bom = True
    return columns, rows, bom


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # the same corpora on every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow],
)
@given(
    clip_damage=st.lists(_clip_operations, max_size=3),
    tsv_damage=st.lists(_operations, max_size=4),
    language=st.sampled_from(LANGUAGES),
)
def test_a_fuzzed_corpus_never_crashes_the_prep_and_every_row_is_counted(
    base, clip_damage, tsv_damage, language
):
    with tempfile.TemporaryDirectory() as tmp:
        folder, save = Path(tmp) / "cv", Path(tmp) / "save"
        columns, rows, bom = _mutated(base, folder, clip_damage + tsv_damage)
        (folder / "train.tsv").write_bytes(_tsv_bytes(columns, rows, bom))
        # A blank line is no row (nor is the header); every other line is one.
        expected_rows = sum(1 for row in rows if row and row != [""])
        if not {"path", "sentence"} <= set(columns):
            with pytest.raises(ValueError) as err:
                prepare_common_voice(folder, save, language, ["train"])
            assert "train.tsv: missing column(s)" in str(err.value)
            assert not (save / "train.csv").exists()
            event("header without path or sentence: refused")
            return
        report = prepare_common_voice(folder, save, language, ["train"])
        split = report["splits"]["train"]
        _check_outputs(save, split, expected_rows, language)
        for reason in split["skipped"]:  # --hypothesis-show-statistics lists them
            event(reason)
        event("some rows kept" if split["kept"] else "no row kept")


def _check_outputs(save: Path, split: dict, expected_rows: int, language: str):
    skipped = split["skipped"]
    assert split["rows"] == expected_rows
    assert split["kept"] + sum(skipped.values()) == expected_rows, split
    assert set(skipped) <= set(SKIP_REASONS)
    with open(save / "prep_skipped.tsv", encoding="utf-8", newline="") as f:
        listed = list(csv.DictReader(f, delimiter="\t"))
    assert len(listed) == sum(skipped.values())
    assert {r: sum(x["reason"] == r for x in listed) for r in skipped} == skipped
    assert json.loads((save / "prep_report.json").read_text(encoding="utf-8"))
    assert f"| train | {expected_rows} | {split['kept']} |" in (
        save / "prep_report.md"
    ).read_text(encoding="utf-8")
    # The manifest loads in SpeechBrain (unique IDs, no $variables) as written.
    manifest = load_data_csv(str(save / "train.csv"))
    assert len(manifest) == split["kept"]
    for row in manifest.values():
        assert math.isfinite(row["duration"]) and row["duration"] > 0
        assert Path(row["wav"]).is_file()
        assert row["wrd"] and not foreign_characters(row["wrd"], language)


# ------------------------------------------- what the fuzzing found, pinned
def _nan_wav(folder):
    y = _voice(1.0, 16000, 0)
    y[100] = np.nan
    (folder / "clips" / "c1.wav").unlink()  # a hard link to the base
    sf.write(folder / "clips" / "c1.wav", y, 16000, subtype="FLOAT")


@pytest.mark.parametrize(
    "column, value, reason, detail",
    [
        # Each of these crashed the prep that read the tsv in one go, or let a
        # row through that failed later, when training started.
        ("sentence", b"Espa\xf1a", "not_utf8", "b'Espa\\xf1a', not UTF-8"),
        ("path", "\ud800".encode("utf-8", "surrogatepass"), "not_utf8", "\\xed"),
        ("sentence", "x" * 200_000, "malformed_row", "field larger than field limit"),
        # Detail: why num2words failed, or the digits left unspelled.
        ("sentence", "tengo " + "1" * 30, "foreign_characters", ""),
        ("client_id", "$speaker", "malformed_row", "'$speaker'"),
        ("accents", "US$dollar", "malformed_row", "CSV loader"),
        ("path", "c0.wav", "duplicate_row", "same ID as 'c0.mp3'"),
        (None, _nan_wav, "undecodable_clip", "NaN or infinite"),
    ],
    ids=[
        "latin-1",
        "surrogate",
        "200k-field",
        "huge-number",
        "variable",
        "variable-in-text",
        "same-id",
        "nan-samples",
    ],
)
def test_what_the_fuzzing_found_is_a_counted_skip(
    base, tmp_path, column, value, reason, detail
):
    folder = tmp_path / "cv"
    columns, rows, _ = _mutated(base, folder, [])
    bad = 1
    if column is None:
        value(folder)
    else:
        rows[bad][columns.index(column)] = value
    if column == "path" and value == "c0.wav":  # c0.mp3 and c0.wav: one ID
        shutil.copyfile(folder / "clips" / "c1.wav", folder / "clips" / "c0.wav")
    (folder / "train.tsv").write_bytes(_tsv_bytes(columns, rows))
    report = prepare_common_voice(folder, tmp_path / "save", "es", ["train"])
    split = report["splits"]["train"]
    assert split["skipped"] == {reason: 1}
    assert split["kept"] == len(CLIPS) - 1
    (example,) = split["examples"][reason]
    assert example["line"] == bad + 2 and detail in example["detail"]
    _check_outputs(tmp_path / "save", split, len(CLIPS), "es")


def test_a_header_with_bytes_not_utf8_still_names_its_columns(base, tmp_path):
    folder = tmp_path / "cv"
    columns, rows, _ = _mutated(base, folder, [])
    columns[columns.index("variant")] = b"vari\xe9t\xe9"
    (folder / "train.tsv").write_bytes(_tsv_bytes(columns, rows))
    report = prepare_common_voice(folder, tmp_path / "save", "es", ["train"])
    assert report["splits"]["train"]["kept"] == len(CLIPS)
    saved = json.loads((tmp_path / "save" / "prep_report.json").read_text())
    assert "vari\\xe9t\\xe9" in saved["splits"]["train"]["columns"]


# ------------------------------------------------- streamed = read-at-once
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "prep_golden"


def _golden_corpus(folder: Path) -> None:
    """Three splits; train has a row for most skip reasons (a FLAC cut short
    loses sync: undecodable; a WAV cut short is read to where it ends)."""
    clips = folder / "clips"
    good = [
        ("g0.wav", 1.2, 16000, 1, "PCM_16"),
        ("g1.flac", 1.0, 8000, 1, "PCM_24"),
        ("g2.wav", 1.1, 48000, 2, "FLOAT"),
        ("g3.wav", 1.0, 16000, 1, "PCM_16"),
        ("g4.wav", 1.0, 16000, 1, "PCM_16"),
        ("g5.wav", 1.0, 16000, 1, "PCM_16"),
        ("g6.wav", 1.0, 22050, 1, "PCM_16"),
        ("long.wav", 3.0, 16000, 1, "PCM_16"),
        ("cut.flac", 2.0, 16000, 1, "PCM_16"),
        ("d0.wav", 1.0, 16000, 1, "PCM_16"),
        ("t0.flac", 1.3, 16000, 1, "PCM_16"),
    ]
    _write_clips(clips, good)
    data = (clips / "cut.flac").read_bytes()
    (clips / "cut.flac").write_bytes(data[: len(data) // 3])
    (clips / "empty.wav").write_bytes(b"")
    (clips / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(clips / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(clips / "short.wav", _voice(0.1, 16000, 9), 16000)
    train = [
        _row(0, "g0.wav", "Hola, ¿qué tal?"),
        _row(1, "g1.flac", "buenos días"),
        _row(2, "g2.wav", "El niño come pan."),
        _row(3, "missing.wav", "hola"),
        _row(4, "empty.wav", "hola"),
        _row(5, "noise.wav", "hola"),
        _row(6, "cut.flac", "hola"),
        _row(7, "silent.wav", "hola"),
        _row(8, "g3.wav", "  ¡ ! "),
        _row(9, "g4.wav", "hola Привет"),
        _row(10, "short.wav", "buenos días señor"),
        _row(11, "g5.wav", "sí\tseñor"),  # a stray tab: one field too many
        _row(12, "g0.wav", "Hola, ¿qué tal?"),
        _row(13, "long.wav", "hola"),
        [""] * 13,
        _row(14, "g6.wav", "sí"),
    ]
    train[-1][CV_COLUMNS.index("client_id")] = ""
    train[-1][CV_COLUMNS.index("accents")] = ""
    splits = {
        "train": train,
        "dev": [_row(0, "d0.wav", "mañana"), _row(1, "gone.wav", "mañana")],
        "test": [_row(0, "t0.flac", "¡Qué bien!")],
    }
    for split, rows in splits.items():
        (folder / f"{split}.tsv").write_bytes(_tsv_bytes(list(CV_COLUMNS), rows))


def test_the_streamed_prep_writes_what_the_read_at_once_prep_wrote(tmp_path):
    """Outputs of the prep before streaming (git 7c53ce9), kept in fixtures.

    ``prep_report.md`` differs from that prep's only by the ``not_utf8``
    column and the reworded ``malformed_row`` and ``duplicate_row`` reasons.
    """
    folder = tmp_path / "cv"
    _golden_corpus(folder)
    save = tmp_path / "save"
    prepare_common_voice(folder, save, "es", max_duration=2.5, jobs=2)
    for name in sorted(p.name for p in GOLDEN.iterdir()):
        made = (save / name).read_bytes().decode()
        made = made.replace(str(tmp_path.resolve()), "{root}")
        if name == "prep_report.json":  # the options hash covers the folder
            report = json.loads(made)
            made = made.replace(report["options_hash"], "{hash}")
        assert made == (GOLDEN / name).read_bytes().decode(), name


def test_a_data_folder_the_csv_loader_would_misread_is_refused(base, tmp_path):
    folder = tmp_path / "cv$HOME"  # as typed in a shell with single quotes
    _mutated(base, folder, [])
    (folder / "train.tsv").write_bytes(_tsv_bytes(list(CV_COLUMNS), _base_rows()))
    with pytest.raises(ValueError, match=r"'\$HOME' in its path"):
        prepare_common_voice(folder, tmp_path / "save", "es", ["train"])
    assert not (tmp_path / "save").exists()
