"""The study report: tables and figures generated from the runs' own files.

Every number comes from a run folder (``metrics.jsonl``, ``remap_report.json``,
``model/``), never typed by hand. ``write_report(study_dir)`` writes the study's
``REPORT.md`` (with ``study.json`` saying what each run is); ``xlt report
RUN_DIR...`` writes a generic report for any run folders, e.g. real Common Voice
runs.

This module holds the statistics, tables, markdown and verdicts; run files are
read through :mod:`xlt_plugin.runs`, figures drawn by
:mod:`xlt_plugin.study.figures`, and the one number that needs a model run on
audio (forgetting) comes from :mod:`xlt_plugin.study.evaluate`.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import NamedTuple

import torch

from xlt_plugin.runs import (
    final_tests,
    model_dir,
    read_json,
    read_metrics,
    read_remap_report,
    stage_lines,
    trained_epochs,
    valid_curve,
    zero_shot_tests,
)
from xlt_plugin.study.evaluate import forgetting, source_scores
from xlt_plugin.study.figures import (
    convergence_figure,
    dev_cer_figure,
    pareto_figure,
)

SYNTHETIC_NOTE = (
    "All audio here is synthetic: espeak-ng voices written in Common Voice layout by "
    "`xlt synth`. The numbers show what the method does on this corpus; they are "
    "not Common Voice results."
)
# The tasks of the paper's sections (1-7); "remap" and "continual" are the plugin's.
PAPER_TASKS = {"language", "accent", "domain", "size", "freezing"}
# A from-scratch run whose best dev CER stays at or above this never learned (CTC's
# blank plateau): its convergence ratio says little beyond that.
UNLEARNED_CER = 90.0


# ------------------------------------------------------------------ run files
def parameter_count(folder: Path) -> int | None:
    """Parameters of the exported model (encoder + head)."""
    from xlt_plugin.pretrained import ENCODER_FILE, HEAD_FILE

    total = 0
    for name in (ENCODER_FILE, HEAD_FILE):
        path = model_dir(folder) / name
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        total += sum(
            t.numel()
            for k, t in state.items()
            if "running" not in k and not k.endswith("num_batches_tracked")
        )
    return total


def seconds_per_epoch(records: list[dict]) -> float | None:
    """Mean training seconds per epoch."""
    train = [r["seconds"] for r in stage_lines(records, "train")]
    return statistics.mean(train) if train else None


def epochs_to_reach(curve: list[dict], target: float) -> int | None:
    """First epoch whose dev CER is at or below ``target`` (None: never)."""
    for record in curve:
        if record["CER"] <= target + 1e-9:
            return record["epoch"]
    return None


def convergence_ratio(xfer: list[dict], scratch: list[dict]) -> dict:
    """Epochs transfer needs to reach scratch's best dev CER / epochs scratch needed.

    The same ratio in training seconds (each record's ``elapsed``, the run's
    cumulative training time) counts slower epochs, e.g. of a larger model.

    Arguments
    ---------
    xfer, scratch : list of dict
        Validation curves (:func:`valid_curve`).

    Returns
    -------
    dict
        ``target`` (scratch's best dev CER), ``scratch_epochs``, ``xfer_epochs``
        (None when never reached), ``ratio``, and ``scratch_seconds``,
        ``xfer_seconds``, ``seconds_ratio`` (None without ``elapsed``).

    Example
    -------
    >>> def curve(cers, seconds_per_epoch):
    ...     return [
    ...         {"epoch": e, "CER": c, "elapsed": seconds_per_epoch * e}
    ...         for e, c in enumerate(cers, start=1)
    ...     ]
    >>> r = convergence_ratio(curve([50, 35, 30], 20.0), curve([90, 60, 40], 10.0))
    >>> r["ratio"], r["seconds_ratio"]
    (0.6666666666666666, 1.3333333333333333)
    """
    keys = ("target", "scratch_epochs", "xfer_epochs", "ratio")
    keys += ("scratch_seconds", "xfer_seconds", "seconds_ratio")
    result = dict.fromkeys(keys)
    if not xfer or not scratch:
        return result
    target = min(r["CER"] for r in scratch)
    scratch_epochs = epochs_to_reach(scratch, target)
    xfer_epochs = epochs_to_reach(xfer, target)
    result.update(
        target=target,
        scratch_epochs=scratch_epochs,
        xfer_epochs=xfer_epochs,
        ratio=xfer_epochs / scratch_epochs if xfer_epochs else None,
    )
    scratch_seconds = _elapsed_at(scratch, scratch_epochs)
    xfer_seconds = _elapsed_at(xfer, xfer_epochs)
    result.update(scratch_seconds=scratch_seconds, xfer_seconds=xfer_seconds)
    if scratch_seconds and xfer_seconds:
        result["seconds_ratio"] = xfer_seconds / scratch_seconds
    return result


def _elapsed_at(curve: list[dict], epoch: int | None) -> float | None:
    """Cumulative training seconds at the end of ``epoch`` (None if unknown)."""
    for record in curve:
        if record["epoch"] == epoch:
            return record.get("elapsed")
    return None


# --------------------------------------------------------------------- corpora
def corpus_sizes(folder: Path) -> dict:
    """Utterances and minutes per split of a Common Voice-layout folder.

    Minutes are None when ``clip_durations.tsv`` misses a clip of the split.
    """
    durations = {}
    path = folder / "clip_durations.tsv"
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                durations[row["clip"]] = float(row["duration[ms]"]) / 1000
    sizes = {}
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        known = [durations[r["path"]] for r in rows if r["path"] in durations]
        minutes = round(sum(known) / 60, 1) if len(known) == len(rows) else None
        sizes[split] = {"utterances": len(rows), "minutes": minutes}
    return sizes


# ---------------------------------------------------------------------- format
def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


# ----------------------------------------------------------------------- study
class Study:
    """A study folder: ``study.json`` plus ``runs/<name>/``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "study.json").read_text())
        self.runs = {r["name"]: r for r in self.manifest["runs"]}
        self.records = {
            name: read_metrics(self.folder / "runs" / name) for name in self.runs
        }

    def path(self, name: str) -> Path:
        return self.folder / "runs" / name

    def select(self, **match) -> list[dict]:
        """Runs whose manifest fields equal ``match`` and that finished."""
        return [
            r
            for r in self.manifest["runs"]
            if all(r.get(k) == v for k, v in match.items())
            and final_tests(self.records[r["name"]])
        ]

    def final(self, run: dict, key: str = "CER", test_set: str | None = None):
        tests = final_tests(self.records[run["name"]])
        if test_set is not None:
            return tests[test_set][key] if test_set in tests else None
        return statistics.mean(t[key] for t in tests.values())

    def zero_shot(self, run: dict, key: str = "CER", test_set: str | None = None):
        tests = zero_shot_tests(self.records[run["name"]])
        if not tests:
            return None
        if test_set is not None:
            return tests[test_set][key] if test_set in tests else None
        return statistics.mean(t[key] for t in tests.values())

    def epochs(self, run: dict) -> int:
        return trained_epochs(self.records[run["name"]])

    def dev_cer(self, run: dict, epoch: int) -> float | None:
        """Dev CER after ``epoch`` epochs."""
        for record in valid_curve(self.records[run["name"]]):
            if record["epoch"] == epoch:
                return record["CER"]
        return None

    def remap(self, run: dict) -> dict | None:
        return read_remap_report(self.path(run["name"]))


def _variant_label(variant: str) -> str:
    return {
        "scratch": "from scratch",
        "xfer_none": "transfer, head re-initialised (NeMo/HF behaviour)",
        "xfer": "transfer, head remapped (xlt_plugin)",
        "frozen_bn": "frozen encoder, BatchNorm trainable",
        "staged": "staged unfreezing (top-down)",
        "layerwise": "layer-wise lr decay 0.8",
    }.get(variant, variant)


def _verdict(better: float | None, worse: float | None, text: str) -> str:
    """A claim line: holds when ``better`` is strictly below ``worse``."""
    if better is None or worse is None:
        return f"- **Not measured**: {text}"
    if abs(better - worse) < 1e-9:
        return f"- **No difference here**: {text}"
    return f"- **{'Holds' if better < worse else 'Does not hold'} here**: {text}"


def _language_section(study: Study, verdicts: list) -> list[str]:
    lines = ["## 1. Languages", ""]
    languages = sorted({r["language"] for r in study.select(task="language")})
    if not languages:
        return lines + ["No language runs finished.", ""]
    rows = []
    for lang in languages:
        by_variant = {}
        for variant in ("scratch", "xfer_none", "xfer"):
            runs = study.select(task="language", language=lang, variant=variant)
            by_variant[variant] = runs
            if not runs:
                continue
            remap = study.remap(runs[0])
            mapped = (
                f"{remap['copied'] + remap['averaged']}/{remap['n_target'] - 1}"
                if remap and variant != "scratch"
                else ""
            )
            rows.append(
                [
                    lang,
                    _variant_label(variant),
                    _mean_std([study.final(r) for r in runs]),
                    _mean_std([study.final(r, "WER") for r in runs]),
                    _mean_std([study.zero_shot(r) for r in runs])
                    if variant != "scratch"
                    else "",
                    _mean_std([study.dev_cer(r, 1) for r in runs]),
                    mapped,
                    str(study.epochs(runs[0])),
                    str(len(runs)),
                ]
            )
        if by_variant["scratch"] and by_variant["xfer"]:
            s = statistics.mean(study.final(r) for r in by_variant["scratch"])
            x = statistics.mean(study.final(r) for r in by_variant["xfer"])
            verdicts.append(
                _verdict(x, s, f"{lang}: transfer test CER {x:.1f} vs scratch {s:.1f}.")
            )
        if by_variant["xfer_none"] and by_variant["xfer"]:
            n = statistics.mean(study.final(r) for r in by_variant["xfer_none"])
            x = statistics.mean(study.final(r) for r in by_variant["xfer"])
            verdicts.append(
                _verdict(
                    x,
                    n,
                    f"{lang}: keeping shared rows (test CER {x:.1f}) beats "
                    f"re-initialising the head (test CER {n:.1f}).",
                )
            )
            early = [
                [study.dev_cer(r, 1) for r in by_variant[v]]
                for v in ("xfer", "xfer_none")
            ]
            if None not in early[0] + early[1]:
                x1, n1 = statistics.mean(early[0]), statistics.mean(early[1])
                verdicts.append(
                    _verdict(
                        x1,
                        n1,
                        f"{lang}: after one epoch, keeping shared rows gives dev CER "
                        f"{x1:.1f} vs {n1:.1f} with the head re-initialised.",
                    )
                )
    lines += _table(
        [
            "language",
            "run",
            "test CER",
            "test WER",
            "zero-shot CER",
            "dev CER after 1 epoch",
            "tokens mapped (of non-blank)",
            "epochs",
            "seeds",
        ],
        rows,
    )
    lines += [
        "Zero-shot: the transferred model with its remapped head, before any "
        "fine-tuning. Dev CER after 1 epoch shows how fast each start learns. "
        "Tokens mapped: target characters whose head row starts from "
        "a source row (copied or averaged); Cantonese text is made from Mandarin "
        "words through OpenCC, so its overlap with the Mandarin base is high by "
        "construction.",
        "",
    ]
    return lines


def _per_set_section(study: Study, task: str, title: str, verdicts: list) -> list:
    lines = [title, ""]
    xfers = study.select(task=task, variant="xfer")
    if not xfers:
        return lines + ["No runs finished.", ""]
    rows = []
    groups = sorted({r["data"] for r in xfers})
    for data in groups:
        xs = [r for r in xfers if r["data"] == data]
        ss = study.select(task=task, variant="scratch", data=data)
        sets = sorted(final_tests(study.records[xs[0]["name"]]))
        for test_set in sets:
            base = [study.zero_shot(r, "WER", test_set) for r in xs]
            tuned = [study.final(r, "WER", test_set) for r in xs]
            scratch = [study.final(r, "WER", test_set) for r in ss]
            with_lm = [
                final_tests(study.records[r["name"]], "beam+lm").get(test_set, {})
                for r in xs
            ]
            rows.append(
                [
                    test_set,
                    _mean_std(base),
                    _mean_std(tuned),
                    _mean_std([t.get("WER") for t in with_lm]),
                    _mean_std(scratch),
                    _mean_std([study.zero_shot(r, "CER", test_set) for r in xs]),
                    _mean_std([study.final(r, "CER", test_set) for r in xs]),
                    _mean_std([study.final(r, "CER", test_set) for r in ss]),
                ]
            )
            if scratch and tuned and None not in scratch + tuned:
                t, s = statistics.mean(tuned), statistics.mean(scratch)
                verdicts.append(
                    _verdict(
                        t,
                        s,
                        f"{task} '{test_set}': fine-tuned "
                        f"WER {t:.1f} vs scratch {s:.1f}.",
                    )
                )
    lines += _table(
        [
            "test set",
            "base as is WER",
            "fine-tuned WER",
            "fine-tuned + LM WER",
            "scratch WER",
            "base as is CER",
            "fine-tuned CER",
            "scratch CER",
        ],
        rows,
    )
    return lines


def _size_section(study: Study, verdicts: list) -> list[str]:
    lines = ["## 4. Larger base vs smaller base", ""]
    rows, smallest = [], None
    sizes = []
    for run in study.manifest["runs"]:
        if run["task"] == "size" and run["size"] not in sizes:
            sizes.append(run["size"])
    if not sizes:
        return lines + ["No size runs in this profile.", ""]
    for size in sizes:

        def cer_of(size=size, **match):
            runs = study.select(task="size", size=size, **match)
            if size == "all":  # the full-size language runs double as this size
                runs += study.select(task="language", language="es", **match)
            return [study.final(r) for r in runs]

        small = cer_of(variant="xfer", base="base_small")
        large = cer_of(variant="xfer", base="base_large")
        scratch = cer_of(variant="scratch")
        data = {
            r["data"]
            for r in study.manifest["runs"]
            if r["task"] == "size" and r["size"] == size
        }
        minutes = [_train_minutes(study, d) for d in data]
        rows.append(
            [
                size,
                _fmt(minutes[0] if minutes else None),
                _mean_std(scratch),
                _mean_std(small),
                _mean_std(large),
            ]
        )
        if smallest is None and small and large:
            smallest = (size, statistics.mean(small), statistics.mean(large))
    lines += _table(
        [
            "fine-tuning data",
            "train minutes",
            "scratch CER",
            "small-base transfer CER",
            "large-base transfer CER",
        ],
        rows,
    )
    bases = ("base_small", "base_large")
    params = {name: parameter_count(study.path(name)) for name in bases}
    english = {}
    for name in bases:
        runs = study.select(name=name)
        english[name] = study.final(runs[0]) if runs else None
    lines += [
        f"Base parameters: small {_fmt(params['base_small'])}, large "
        f"{_fmt(params['base_large'])}. English test CER of the bases themselves: "
        f"small {_fmt(english['base_small'])}, large {_fmt(english['base_large'])}"
        " (a larger base is only a better start if it is a better English model).",
        "",
    ]
    if smallest:
        size, s, lg = smallest
        verdicts.append(
            _verdict(
                lg,
                s,
                f"larger base at the smallest size ({size}): "
                f"CER {lg:.1f} vs smaller base {s:.1f}.",
            )
        )
    return lines


def _train_minutes(study: Study, data: str) -> float | None:
    corpus = study.manifest["corpora"].get(data)
    if not corpus:
        return None
    try:
        return corpus_sizes(Path(corpus["folder"]))["train"]["minutes"]
    except FileNotFoundError:
        return None


def _convergence_section(study: Study, figures: Path, verdicts: list) -> list[str]:
    lines = ["## 5. Convergence", ""]
    rows, unlearned = [], []
    tasks = []
    for run in study.manifest["runs"]:
        key = (run["task"], run["data"])
        if run["task"] in ("language", "accent", "domain") and key not in tasks:
            tasks.append(key)
    for task, data in tasks:
        runs = {
            v: study.select(task=task, data=data, variant=v, seed=1)
            for v in ("scratch", "xfer_none", "xfer")
        }
        if not runs["scratch"] or not runs["xfer"]:
            continue
        curves = {
            v: valid_curve(study.records[r[0]["name"]]) for v, r in runs.items() if r
        }
        ratio = convergence_ratio(curves["xfer"], curves["scratch"])
        rows.append(
            [
                f"{task} ({data})",
                _fmt(ratio["target"]),
                _fmt(ratio["scratch_epochs"]),
                _fmt(ratio["xfer_epochs"]) if ratio["xfer_epochs"] else "never",
                _fmt(ratio["ratio"], 2),
                _fmt(ratio["scratch_seconds"]),
                _fmt(ratio["xfer_seconds"]) if ratio["xfer_seconds"] else "never",
                _fmt(ratio["seconds_ratio"], 2),
            ]
        )
        if ratio["target"] is not None and ratio["target"] >= UNLEARNED_CER:
            unlearned.append(f"{task} ({data})")
        if ratio["ratio"] is not None:
            verdicts.append(
                _verdict(
                    ratio["ratio"],
                    1,
                    f"{task} ({data}): transfer reaches scratch's best dev CER "
                    f"({ratio['target']:.1f}) after {ratio['xfer_epochs']} of its "
                    f"epochs vs {ratio['scratch_epochs']} for scratch (ratio "
                    f"{ratio['ratio']:.2f}).",
                )
            )
        name = f"convergence_{task}_{data}.png"
        convergence_figure(
            [(_variant_label(v), curve) for v, curve in curves.items()],
            f"{task}: {data} (synthetic speech)",
            figures / name,
        )
        lines.append(f"![{task} {data}](figures/{name})")
        lines.append("")
    lines += _table(
        [
            "task",
            "scratch best dev CER",
            "scratch epochs to it",
            "transfer epochs to it",
            "ratio (epochs)",
            "scratch train seconds to it",
            "transfer train seconds to it",
            "ratio (seconds)",
        ],
        rows,
    )
    if unlearned:
        lines += [
            f"From scratch, {', '.join(unlearned)} never got below {UNLEARNED_CER}% "
            "dev CER in these epochs: there the ratio only says that transfer "
            "learned and scratch did not.",
            "",
        ]
    return lines


def _freezing_section(study: Study) -> list[str]:
    lines = ["## 6. Freezing ablation", ""]
    runs = study.select(task="freezing")
    if not runs:
        return lines + ["Not in this profile (run `make study`).", ""]
    full = study.select(task="language", language="es", variant="xfer")
    rows = []
    for label, group in [("xfer", full)] + [
        (v, [r for r in runs if r["variant"] == v])
        for v in dict.fromkeys(r["variant"] for r in runs)
    ]:
        if not group:
            continue
        name = "full fine-tuning" if label == "xfer" else _variant_label(label)
        secs = [seconds_per_epoch(study.records[r["name"]]) for r in group]
        first = stage_lines(study.records[group[0]["name"]], "train")
        rows.append(
            [
                name,
                _mean_std([study.final(r) for r in group]),
                _mean_std(secs),
                _fmt(first[0]["trainable_params"]),
            ]
        )
    return lines + _table(
        [
            "es transfer",
            "test CER",
            "seconds per epoch",
            "trainable parameters (epoch 1)",
        ],
        rows,
    )


def _forgetting_section(study: Study) -> list[str]:
    lines = ["## 7. Forgetting", ""]
    rows = []
    for xfer, base in study.manifest.get("forgetting", []):
        if not (
            final_tests(study.records.get(xfer, []))
            and final_tests(study.records.get(base, []))
        ):
            continue
        result = forgetting(study.path(base), study.path(xfer))
        rows.append(
            [
                xfer,
                base,
                _fmt(result["before"]["CER"]),
                _fmt(result["after"]["CER"]),
                str(result["before"]["utterances"]),
            ]
        )
    if not rows:
        return lines + ["No finished run pairs to measure.", ""]
    lines += _table(
        [
            "transfer run",
            "base",
            "English test CER before",
            "after (fine-tuned encoder, base's English head)",
            "utterances",
        ],
        rows,
    )
    return lines


# -------------------------------------------------------- standard of evidence
class Difference(NamedTuple):
    """``mean(a) - mean(b)`` over seeds, its standard error, and what counts."""

    diff: float | None
    se: float | None  # None: fewer than two seeds on a side
    sign: int  # -1: a lower by more than 2 SE, +1: higher, 0: neither


def compare_seeds(a: list[float], b: list[float]) -> Difference:
    """The study's standard of evidence for a difference between two seed sets.

    The difference of the seed means counts only where it exceeds twice its
    standard error, ``sqrt(var_a / n_a + var_b / n_b)`` (sample variances).
    With fewer than two seeds on a side there is no standard error, and no
    difference counts.

    Arguments
    ---------
    a, b : list of float
        One value per seed (None values are left out).

    Returns
    -------
    Difference
        ``diff`` (None without values), ``se`` and ``sign``.

    Example
    -------
    >>> compare_seeds([10.0, 10.2, 9.8], [12.0, 12.2, 11.8]).sign  # -2.0, SE 0.16
    -1
    >>> compare_seeds([10.0, 11.0, 9.0], [10.5, 11.5, 9.5]).sign  # -0.5, SE 0.82
    0
    >>> compare_seeds([12.0, 12.0], [10.0, 10.0])  # identical seeds: SE 0
    Difference(diff=2.0, se=0.0, sign=1)
    >>> compare_seeds([10.0], [12.0])  # one seed: not measurable
    Difference(diff=-2.0, se=None, sign=0)
    """
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if not a or not b:
        return Difference(None, None, 0)
    diff = statistics.mean(a) - statistics.mean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, None, 0)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    sign = 0
    if abs(diff) > 2 * se:
        sign = -1 if diff < 0 else 1
    return Difference(diff, se, sign)


def _evidence(d: Difference, text: str) -> str:
    """A claim line ("a is lower") by the standard of :func:`compare_seeds`.

    Example
    -------
    >>> _evidence(compare_seeds([1.0, 1.2], [3.0, 3.2]), "a is lower.")
    '- **Holds here**: a is lower. Difference -2.0 (SE 0.1).'
    """
    if d.diff is None:
        return f"- **Not measured**: {text}"
    word = {-1: "Holds here", 1: "Does not hold here", 0: "Not measurable here"}
    return f"- **{word[d.sign]}**: {text} Difference {_diff_text(d)}."


def _diff_text(d: Difference) -> str:
    if d.diff is None:
        return "n/a"
    return f"{d.diff:+.1f}" + (" (one seed)" if d.se is None else f" (SE {d.se:.1f})")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


# --------------------------------------------------------------- remap remedies
#: The start every remap variant is compared with.
REINIT = "xfer_none"


def _remap_label(study: Study, run: dict) -> str:
    """A remap variant's name and what it changes in the recipe."""
    if run["variant"] == REINIT:
        return f"{REINIT} (head re-initialised, remap_strategy: none)"
    if run["variant"] == "xfer":
        return "xfer (head remapped, the recipe as it is)"
    plain = study.select(
        task="remap", language=run["language"], size=run["size"], variant="xfer"
    )
    reference = plain[0]["overrides"] if plain else {}
    changed = {
        k: v
        for k, v in run["overrides"].items()
        if k not in ("seed", "number_of_epochs") and reference.get(k) != v
    }
    what = ", ".join(f"{k}: {v}" for k, v in changed.items())
    return f"{run['variant']} ({what})" if what else run["variant"]


def _bases_section(study: Study, verdicts: list) -> list[str]:
    """Issue 12: English test CER of bases of growing size, over seeds.

    The claim holds only where each larger base beats the next smaller one by
    more than twice the standard error of the seed means (:func:`compare_seeds`).
    """
    lines = ["## English bases by size", ""]
    runs = study.select(task="bases")
    if not runs:
        return lines + ["No base runs finished.", ""]
    sizes = list(dict.fromkeys(r["size"] for r in study.manifest["runs"]
                               if r["task"] == "bases"))  # fmt: skip
    cer, rows = {}, []
    for size in sizes:
        group = [r for r in runs if r["size"] == size]
        if not group:
            continue
        cer[size] = [study.final(r) for r in group]
        wer = [study.final(r, "WER") for r in group]
        seconds = [seconds_per_epoch(study.records[r["name"]]) for r in group]
        rows.append([
            f"`{size}`",
            _fmt(parameter_count(study.path(group[0]["name"])) or 0, 0),
            _mean_std([v for v in cer[size] if v is not None]),
            _mean_std([v for v in wer if v is not None]),
            _mean_std([v for v in seconds if v is not None]),
            str(len([v for v in cer[size] if v is not None])),
        ])  # fmt: skip
    lines += _table(
        ["encoder", "parameters", "test CER", "test WER", "s/epoch", "seeds"], rows
    )
    measured = [s for s in sizes if s in cer]
    pairs = list(zip(measured, measured[1:], strict=False))
    holds = []
    for smaller, larger in pairs:
        diff = compare_seeds(cer[smaller], cer[larger])  # > 0: larger is better
        holds.append(diff.sign == 1)
        se = "n/a" if diff.se is None else f"{diff.se:.2f}"
        diff_text = "n/a" if diff.diff is None else f"{diff.diff:.1f}"
        lines.append(
            f"- `{larger}` vs `{smaller}`: CER lower by {diff_text} (SE {se}): "
            + ("beyond 2 SE" if diff.sign == 1 else "not beyond 2 SE")
        )
    lines.append("")
    text = (
        "English test CER strictly decreases with base size ("
        + ", ".join(
            f"{s} {_mean_std([v for v in cer[s] if v is not None])}" for s in measured
        )
        + ")"
    )
    if len(pairs) == 0:
        verdicts.append(f"- **Not measured**: {text}.")
    else:
        verdicts.append(f"- **{'Holds' if all(holds) else 'Does not hold'} here**: "
                        f"{text}.")  # fmt: skip
    return lines


def _remap_section(study: Study, verdicts: list) -> list[str]:
    """Issue 13: language x size x variant, seeds, verdicts, the overall winner."""
    lines = ["## Remap remedies", ""]
    runs = study.select(task="remap")
    if not runs:
        return lines + ["No remap runs finished.", ""]
    cells = list(dict.fromkeys((r["language"], r["size"]) for r in runs))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    if REINIT in variants:  # the reference first
        variants.remove(REINIT)
        variants.insert(0, REINIT)
    labels = {}
    rows, cell_lines = [], []
    # variant -> per cell: Difference of test CER, zero-shot and epoch-1 dev CER
    # against the re-initialised head.
    against: dict[str, list[tuple]] = {v: [] for v in variants if v != REINIT}
    for lang, size in cells:
        group = {
            v: [r for r in runs if (r["language"], r["size"], r["variant"])
                == (lang, size, v)]
            for v in variants
        }  # fmt: skip
        data = next(g for g in group.values() if g)[0]["data"]
        minutes = _train_minutes(study, data)
        values = {}
        for variant in variants:
            if not group[variant]:
                continue
            labels.setdefault(variant, _remap_label(study, group[variant][0]))
            values[variant] = (
                [study.final(r) for r in group[variant]],
                [study.zero_shot(r) for r in group[variant]],
                [study.dev_cer(r, 1) for r in group[variant]],
            )
            test, zero, epoch1 = values[variant]
            rows.append(
                [
                    lang,
                    size if minutes is None else f"{size} ({minutes:.1f} min)",
                    labels[variant],
                    _mean_std(test),
                    _mean_std(zero),
                    _mean_std(epoch1),
                    str(len(group[variant])),
                ]
            )
        if REINIT not in values:
            continue
        ranked = sorted(values, key=lambda v: statistics.mean(values[v][0]))
        lower, same, higher = [], [], []
        for variant in values:
            if variant == REINIT:
                continue
            diffs = tuple(
                compare_seeds(values[variant][i], values[REINIT][i]) for i in range(3)
            )
            against[variant].append(((lang, size), diffs))
            d = diffs[0]
            text = f"{variant} ({_diff_text(d)})"
            (lower if d.sign < 0 else higher if d.sign > 0 else same).append(text)
        reinit = values[REINIT][0]
        cell_lines.append(
            f"- **{lang}, {size}**: lowest mean test CER {ranked[0]} "
            f"({statistics.mean(values[ranked[0]][0]):.1f}). Against the "
            f"re-initialised head ({_mean_std(reinit)}): lower by more than 2 SE: "
            f"{', '.join(lower) or 'none'}; higher by more than 2 SE: "
            f"{', '.join(higher) or 'none'}; no measurable difference: "
            f"{', '.join(same) or 'none'}."
        )
    lines += _table(
        [
            "language",
            "training data",
            "start",
            "test CER",
            "zero-shot CER",
            "dev CER after 1 epoch",
            "seeds",
        ],
        rows,
    )
    lines += [
        "Mean ± standard deviation over seeds. Zero-shot: the transferred model "
        "before any fine-tuning. Every size of a language is scored on the same "
        "dev and test sets. A difference counts only where the difference of the "
        "seed means exceeds twice its standard error (SE).",
        "",
        *cell_lines,
        "",
    ]
    lines += _remap_winner(against, labels, len(cells), verdicts)
    return lines


def _remap_winner(
    against: dict, labels: dict, n_cells: int, verdicts: list
) -> list[str]:
    """The overall table of each variant against the re-initialised head.

    ``against``: variant -> [((language, size), (test, zero-shot, epoch-1
    Differences against the re-initialised head)), ...].
    """
    rows, summary = [], {}
    for variant, cells in against.items():
        diffs = [d for _, d in cells]
        if not diffs:
            continue
        test = [d[0] for d in diffs]
        counts = {s: sum(1 for d in test if d.sign == s) for s in (-1, 0, 1)}
        zero = sum(1 for d in diffs if d[1].sign < 0)
        first = sum(1 for d in diffs if d[2].sign < 0)
        shift = _mean([d.diff for d in test])
        summary[variant] = (counts, zero, first, shift, len(diffs))
        rows.append(
            [
                labels[variant],
                str(counts[-1]),
                str(counts[0]),
                str(counts[1]),
                _fmt(shift, 2),
                f"{zero}/{len(diffs)}",
                f"{first}/{len(diffs)}",
            ]
        )
    if not rows:
        return ["No cell has the re-initialised head to compare with.", ""]
    lines = [
        "Each start against the re-initialised head, over the (language, size) "
        f"cells ({n_cells}):",
        "",
    ]
    lines += _table(
        [
            "start",
            "cells with lower test CER",
            "no measurable difference",
            "higher test CER",
            "mean test CER difference",
            "zero-shot lead (cells)",
            "first-epoch lead (cells)",
        ],
        rows,
    )
    # The bar: never worse than the re-initialised head's test CER (by the
    # standard of evidence) while keeping the zero-shot and first-epoch leads.
    meets = [
        v
        for v, (counts, zero, first, _, n) in summary.items()
        if counts[1] == 0 and zero == n and first == n and n == n_cells
    ]

    def key(v):
        counts, _, _, shift, _ = summary[v]
        return (counts[1], -counts[-1], shift if shift is not None else math.inf)

    if meets:
        winner = min(meets, key=key)
        lines.append(
            f"**Overall**: {labels[winner]} wins: in no cell is its test CER higher "
            "than the re-initialised head's by more than 2 SE, it keeps the "
            f"zero-shot and first-epoch leads in all {n_cells} cells, and its mean "
            f"test CER difference is {_fmt(summary[winner][3], 2)}"
            + (f" (also meeting that bar: {', '.join(m for m in meets if m != winner)})"
               if len(meets) > 1 else "")
            + "."
        )  # fmt: skip
    else:
        winner = min(summary, key=key)
        lines.append(
            "**Overall**: no start keeps the test CER at or below the "
            "re-initialised head's in every cell (within 2 SE) while keeping the "
            "zero-shot and first-epoch leads everywhere; the best measured is "
            f"{labels[winner]} (higher in {summary[winner][0][1]} cells, lower in "
            f"{summary[winner][0][-1]}, mean test CER difference "
            f"{_fmt(summary[winner][3], 2)})."
        )
    lines.append("")
    for variant in dict.fromkeys(["xfer", winner]):
        for (lang, size), (d, _, _) in against.get(variant, []):
            verdicts.append(
                _evidence(
                    d,
                    f"{lang}, {size}: {labels[variant]} ends below the "
                    "re-initialised head's test CER.",
                )
            )
    return lines


# ----------------------------------------------------------- continual learning
def _target(study: Study, run: dict, key: str) -> float | None:
    """Mean final test score over the run's test sets; an averaging run's
    averaged model (test sets ``*_averaged``) when it has one."""
    tests = final_tests(study.records[run["name"]])
    averaged = {k: v for k, v in tests.items() if k.endswith("_averaged")}
    chosen = averaged or tests
    return statistics.mean(t[key] for t in chosen.values()) if chosen else None


def _source(study: Study, run_name: str, base: str) -> dict:
    """The run's (or base's) scores on the base's English test set, cached.

    Kept in ``source_scores.json`` of the study folder, keyed by the run's
    model and the base's test manifest times, so a rerun of the report
    evaluates only what changed.
    """
    cache_path = study.folder / "source_scores.json"
    cache = read_json(cache_path) or {}
    model = model_dir(study.path(run_name)) / "config.json"
    test_csv = study.path(base) / "save" / "test.csv"
    stamp = f"{model.stat().st_mtime_ns}:{test_csv.stat().st_mtime_ns}:{base}"
    if cache.get(run_name, {}).get("stamp") != stamp:
        scores = source_scores(
            study.path(base), None if run_name == base else study.path(run_name)
        )
        cache[run_name] = {**scores, "stamp": stamp}
        cache_path.write_text(json.dumps(cache, indent=1) + "\n", encoding="utf-8")
    return cache[run_name]


def _continual_label(study: Study, variant: str, runs: list[dict]) -> str:
    over = runs[0]["overrides"] if runs else {}
    if variant.startswith("replay"):
        return f"rehearsal, {over.get('replay_ratio', 0):.0%} of each batch English"
    if variant == "average":
        alphas = []
        for run in runs:
            config = read_json(model_dir(study.path(run["name"])) / "config.json")
            alpha = (config or {}).get("metadata", {}).get("averaging", {})
            alphas.append(_fmt(alpha.get("alpha"), 1))
        return f"weight averaging with the base (alpha {', '.join(alphas)})"
    if variant == "adapters":
        return f"adapters (dim {over.get('adapter_dim')})"
    return {
        "full": "full fine-tuning",
        "scratch": "from scratch (no base)",
    }.get(variant, _variant_label(variant))


def _trainable(study: Study, runs: list[dict]) -> str:
    """Trainable parameters in the first epoch (-> the last, when they change)."""
    if not runs:
        return "n/a"
    train = stage_lines(study.records[runs[0]["name"]], "train")
    if not train:
        return "n/a"
    first, last = train[0]["trainable_params"], train[-1]["trainable_params"]
    return str(first) if first == last else f"{first} -> {last}"


def _continual_section(study: Study, figures: Path, verdicts: list) -> list[str]:
    """Issue 14: per task, each method's target and English scores, cost, figure."""
    lines = ["## Continuous learning", ""]
    runs = study.select(task="continual")
    if not runs:
        return lines + ["No continual-learning runs finished.", ""]
    lines += [
        "Target: the task's test set (mean over its test sets: the accents are "
        "scored one by one); English: the base's own English test set, scored "
        "with each run's whole model (`model/`: adapters and averaged weights "
        "included). WER and CER in %, mean ± standard deviation over seeds. "
        "Trainable parameters in the first epoch (-> the last, when a schedule "
        "changes them).",
        "",
    ]
    for data in dict.fromkeys(r["data"] for r in runs):
        task_runs = [r for r in runs if r["data"] == data]
        with_base = [r for r in task_runs if r.get("base")]
        if not with_base:
            continue
        base = with_base[0]["base"]
        corpus = study.manifest["corpora"].get(data, {})
        what = corpus.get("domain") or corpus.get("accents") or data
        lines += _continual_task(study, data, what, base, task_runs, figures, verdicts)
    return lines


def _continual_task(
    study: Study,
    data: str,
    what: str,
    base: str,
    runs: list[dict],
    figures: Path,
    verdicts: list,
) -> list[str]:
    lines = [f"### {data} ({what})", ""]
    methods = list(dict.fromkeys(r["variant"] for r in runs))
    if "scratch" in methods:  # a reference: last, after the methods
        methods.append(methods.pop(methods.index("scratch")))
    groups = {m: [r for r in runs if r["variant"] == m] for m in methods}
    scores = {}  # method -> lists of target WER, target CER, English WER, CER
    base_runs = study.select(name=base)
    full = groups.get("full", [])
    if base_runs:
        english = _source(study, base, base)
        zero = [zero_shot_tests(study.records[r["name"]]) for r in full]
        scores["base"] = (
            [_mean([t["WER"] for t in z.values()]) for z in zero if z],
            [_mean([t["CER"] for t in z.values()]) for z in zero if z],
            [english["WER"]],
            [english["CER"]],
        )
    for method, group in groups.items():
        sources = [_source(study, r["name"], base) for r in group]
        scores[method] = (
            [_target(study, r, "WER") for r in group],
            [_target(study, r, "CER") for r in group],
            [s["WER"] for s in sources],
            [s["CER"] for s in sources],
        )
    base_target = _mean(scores.get("base", ([],))[0])
    base_english = _mean(scores.get("base", ([], [], []))[2])
    full_target = _mean(scores.get("full", ([],))[0])
    gain = None
    if base_target is not None and full_target is not None:
        gain = base_target - full_target
    rows, numbers = [], {}
    for method, (t_wer, t_cer, s_wer, s_cer) in scores.items():
        group = groups.get(method, [])
        rel = share = None
        if base_english and _mean(s_wer) is not None and method != "base":
            rel = 100 * (_mean(s_wer) - base_english) / base_english
        if gain and gain > 0 and method not in ("base", "scratch"):
            share = 100 * (base_target - _mean(t_wer)) / gain
        numbers[method] = (rel, share)
        label = (
            "base as is (zero-shot)"
            if method == "base"
            else _continual_label(study, method, group)
        )
        secs = [seconds_per_epoch(study.records[r["name"]]) for r in group]
        rows.append(
            [
                label,
                _mean_std(t_wer),
                _mean_std(t_cer),
                _mean_std(s_wer),
                _mean_std(s_cer),
                _fmt(rel, 1),
                _fmt(share, 0),
                _trainable(study, group) if group else "n/a",
                _mean_std(secs) if group else "n/a",
                str(len(group)) if group else "",
            ]
        )
    lines += _table(
        [
            "method",
            "target WER",
            "target CER",
            "English WER",
            "English CER",
            "English WER vs base (% rel.)",
            "share of full fine-tuning's target gain (%)",
            "trainable parameters",
            "s/epoch",
            "seeds",
        ],
        rows,
    )
    lines.append(_goal_line(numbers, base_english, base_target, full_target))
    lines.append("")
    points = [
        (
            "base as is" if m == "base" else _continual_label(study, m, groups[m]),
            _mean_sd(t_wer),
            _mean_sd(s_wer),
        )
        for m, (t_wer, _, s_wer, _) in scores.items()
        if _mean(t_wer) is not None and _mean(s_wer) is not None
    ]
    if points:
        name = f"continual_{data}.png"
        pareto_figure(
            points,
            f"{data} ({what}): target vs English, bars ±1 sd over seeds",
            figures / name,
            xlabel="target test WER (%)",
            ylabel="English (base's test set) WER (%)",
        )
        lines += [f"![continual {data}](figures/{name})", ""]
    full_english = scores.get("full", ([], [], []))[2]
    for method, (_, _, s_wer, _) in scores.items():
        if method in ("base", "full", "scratch") or not full_english:
            continue
        d = compare_seeds(s_wer, full_english)
        verdicts.append(
            _evidence(
                d,
                f"{data}: {_continual_label(study, method, groups[method])} keeps "
                f"more English than full fine-tuning (English test WER "
                f"{_fmt(_mean(s_wer))} vs {_fmt(_mean(full_english))}).",
            )
        )
    return lines


def _mean_sd(values: list) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value) of the values."""
    values = [v for v in values if v is not None]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def _goal_line(numbers: dict, english, target, full) -> str:
    """Which methods keep English within 5 % of the base with >= 90 % of the gain."""
    if english is None or target is None or full is None:
        return "Not measured: the base's or full fine-tuning's scores are missing."
    candidates = {
        m: v for m, v in numbers.items() if m not in ("base", "scratch", "full")
    }
    both = [
        m
        for m, (rel, share) in candidates.items()
        if rel is not None and share is not None and rel <= 5 and share >= 90
    ]

    def text(m):
        rel, share = candidates[m]
        return f"{m} ({_fmt(rel, 1)} % English WER, {_fmt(share, 0)} % of the gain)"

    head = (
        f"English within 5 % relative of the base (WER {english:.1f}) and at least "
        f"90 % of full fine-tuning's target gain (WER {target:.1f} -> {full:.1f}), "
        "on seed means: "
    )
    if both:
        return head + ", ".join(text(m) for m in both) + "."
    rest = ", ".join(text(m) for m in candidates) or "no method measured"
    return head + f"none. The methods: {rest}."


def _setup_section(study: Study) -> list[str]:
    lines = ["## Setup", "", SYNTHETIC_NOTE, ""]
    rows = []
    for name, corpus in study.manifest["corpora"].items():
        try:
            sizes = corpus_sizes(Path(corpus["folder"]))
        except FileNotFoundError:
            continue
        what = corpus.get("accents") or corpus.get("domain") or ""
        rows.append(
            [
                name,
                corpus["locale"],
                what,
                *(
                    f"{sizes[s]['utterances']} / {_fmt(sizes[s]['minutes'])}"
                    for s in ("train", "dev", "test")
                ),
            ]
        )
    lines += _table(
        ["corpus", "locale", "accents / domain", "train (utt / min)", "dev", "test"],
        rows,
    )
    rows = []
    for run in study.manifest["runs"]:
        records = study.records[run["name"]]
        if not final_tests(records):
            rows.append(
                [run["name"], run["recipe"], run["hparams"], "not finished", "", "", ""]
            )
            continue
        rows.append(
            [
                run["name"],
                run["recipe"],
                run["hparams"],
                _fmt(parameter_count(study.path(run["name"]))),
                str(study.epochs(run)),
                str(run["seed"]),
                _fmt(sum(r["seconds"] for r in stage_lines(records, "train")), 0),
            ]
        )
    lines += _table(
        ["run", "recipe", "hparams", "parameters", "epochs", "seed", "train seconds"],
        rows,
    )
    lines += [
        "Each run is the recipe command in `runs/<run>/log.txt` (first line); its "
        "per-epoch numbers are in `runs/<run>/metrics.jsonl`.",
        "",
    ]
    return lines


def write_report(study_dir: str | Path) -> Path:
    """Write ``REPORT.md`` and ``figures/`` for a study folder.

    Arguments
    ---------
    study_dir : path
        A folder written by :func:`xlt_plugin.study.runner.run_study`.

    Returns
    -------
    Path
        The report.
    """
    study = Study(study_dir)
    figures = study.folder / "figures"
    figures.mkdir(exist_ok=True)
    tasks = {run["task"] for run in study.manifest["runs"]}
    own = [task for task in ("bases", "remap", "continual") if task in tasks]
    # A profile of only the plugin's own measurements has none of the paper's
    # sections (they would all read "no runs"); every other profile has them all.
    paper = not own or bool(tasks & PAPER_TASKS)
    verdicts: list[str] = []
    body = []
    if paper:
        body += _language_section(study, verdicts)
        body += _per_set_section(study, "accent", "## 2. Accents", verdicts)
        body += _per_set_section(study, "domain", "## 3. Domains", verdicts)
        body += _size_section(study, verdicts)
        body += _convergence_section(study, figures, verdicts)
        body += _freezing_section(study)
        body += _forgetting_section(study)
    plugin_verdicts: list[str] = []
    if "bases" in own:
        body += _bases_section(study, plugin_verdicts)
    if "remap" in own:
        body += _remap_section(study, plugin_verdicts)
    if "continual" in own:
        body += _continual_section(study, figures, plugin_verdicts)
    head = [
        f"# Cross-language transfer study ({study.manifest['profile']} profile)",
        "",
        study.manifest.get("description", ""),
        "",
        SYNTHETIC_NOTE,
        "",
    ]
    if paper:
        head += [
            "## The paper's claims, here",
            "",
            *(verdicts or ["- No comparison finished."]),
            "",
        ]
    if own:
        head += [
            "## The plugin's own claims, here",
            "",
            "A claim holds only where the difference of the seed means exceeds "
            "twice its standard error; it does not hold where it is reversed by "
            "that margin, and is not measurable here otherwise.",
            "",
            *(plugin_verdicts or ["- No comparison finished."]),
            "",
        ]
    report = study.folder / "REPORT.md"
    text = "\n".join(head + body + _setup_section(study))
    report.write_text(text, encoding="utf-8")
    return report


def write_run_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """A generic report for any run folders (no ``study.json`` needed).

    One row per run (language, pretrained_path, remap, zero-shot and final test
    CER/WER, epochs) and one dev-CER curve figure with every run.

    Arguments
    ---------
    run_dirs : list of paths
        Recipe output folders.
    out : path
        Folder for ``REPORT.md`` and ``figures/``.

    Returns
    -------
    Path
    """
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for folder in map(Path, run_dirs):
        records = read_metrics(folder)
        if not records:
            raise FileNotFoundError(f"{folder} has no metrics.jsonl: not a run folder")
        config = {}
        if (model_dir(folder) / "config.json").exists():
            config = json.loads((model_dir(folder) / "config.json").read_text())
        meta = config.get("metadata", {})
        tests, zero = final_tests(records), zero_shot_tests(records)

        def mean(d, k):
            return statistics.mean(t[k] for t in d.values()) if d else None

        r = read_remap_report(folder)
        mapped = f"{r['copied'] + r['averaged']}/{r['n_target'] - 1}" if r else ""
        rows.append(
            [
                folder.name,
                meta.get("language", ""),
                meta.get("pretrained_path", "") or "scratch",
                mapped,
                _fmt(mean(zero, "CER")),
                _fmt(mean(tests, "CER")),
                _fmt(mean(tests, "WER")),
                str(trained_epochs(records)),
            ]
        )
        curves.append((folder.name, valid_curve(records)))
    dev_cer_figure(curves, out / "figures" / "dev_cer.png")
    lines = ["# Runs", ""]
    lines += _table(
        [
            "run",
            "language",
            "pretrained",
            "tokens mapped",
            "zero-shot CER",
            "test CER",
            "test WER",
            "epochs",
        ],
        rows,
    )
    lines += ["![dev CER per epoch](figures/dev_cer.png)", ""]
    report = out / "REPORT.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
