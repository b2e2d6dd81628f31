"""The report's sections on the study's regime (issue 12).

Bases of growing size (per language), augmentation and dropout on vs off, and
clean vs realistic speech, each with its verdicts by the standard of
:mod:`xlt_plugin.study.evidence`.
"""

from __future__ import annotations

import itertools

from xlt_plugin.study.evidence import _diff_text, _evidence, compare_seeds
from xlt_plugin.study.markdown import _fmt, _mean, _mean_std, _table
from xlt_plugin.study.reader import (
    Study,
    epochs_cell,
    not_learned,
    parameter_count,
    seconds_per_epoch,
)

#: Section titles of the base ladders, by the bases' language.
LANGUAGE_NAMES = {"en": "English", "zh-CN": "Mandarin"}


def bases_section(study: Study, verdicts: list) -> list[str]:
    """Issue 12: test CER of bases of growing size, over seeds, per language.

    The claim holds only where each larger base beats the next smaller one by
    more than twice the standard error of the seed means (:func:`compare_seeds`).
    """
    planned = [r for r in study.manifest["runs"] if r["task"] == "bases"]
    languages = list(dict.fromkeys(r.get("language", "en") for r in planned))
    lines = []
    for language in languages or ["en"]:
        name = LANGUAGE_NAMES.get(language, language)
        sizes = list(dict.fromkeys(r["size"] for r in planned
                                   if r.get("language", "en") == language))  # fmt: skip
        runs = [
            r for r in study.select(task="bases") if r.get("language", "en") == language
        ]
        lines += _ladder_section(study, name, sizes, runs, verdicts)
    return lines


def _ladder_section(
    study: Study, name: str, sizes: list, runs: list, verdicts: list
) -> list[str]:
    lines = [f"## {name} bases by size", ""]
    if not runs:
        return lines + ["No base runs finished.", ""]
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
            ", ".join(_fmt(v) for v in cer[size]),
            _mean_std([v for v in wer if v is not None]),
            _mean_std([v for v in seconds if v is not None]),
            epochs_cell(study, group),
            str(len([v for v in cer[size] if v is not None])),
        ])  # fmt: skip
    lines += _table(
        ["encoder", "parameters", "test CER", "test CER per seed", "test WER",
         "s/epoch", "epochs", "seeds"], rows,
    )  # fmt: skip
    measured = [s for s in sizes if s in cer]
    signs = []
    for smaller, larger in itertools.pairwise(measured):
        diff = compare_seeds(cer[smaller], cer[larger])  # > 0: larger is better
        signs.append(diff.sign)
        verdict = "beyond 2 SE" if diff.sign else (
            "one seed: no SE" if diff.se is None else "not beyond 2 SE")  # fmt: skip
        direction = "lower" if diff.diff >= 0 else "higher"
        lines.append(
            f"- `{larger}` vs `{smaller}`: CER {direction} by {_fmt(abs(diff.diff))} "
            f"(SE {_fmt(diff.se, 2)}): {verdict}"
        )
    lines.append("")
    text = (
        f"{name} test CER strictly decreases with base size ("
        + ", ".join(
            f"{s} {_mean_std([v for v in cer[s] if v is not None])}" for s in measured
        )
        + ")"
    )
    unfinished = [s for s in sizes if s not in cer]
    if unfinished or not signs:
        verdicts.append(
            f"- **Not measured**: {text}; not finished: {', '.join(unfinished)}."
            if unfinished
            else f"- **Not measured**: {text}."
        )
    else:
        # Holds where every larger base is better beyond 2 SE; does not hold
        # where one is worse by that margin; not measurable otherwise.
        word = ("Holds" if all(v == 1 for v in signs)
                else "Does not hold" if -1 in signs else "Not measurable")  # fmt: skip
        verdicts.append(f"- **{word} here**: {text}.")
    return lines


def difficulty_section(study: Study, verdicts: list) -> list[str]:
    """Issue 12: Spanish test CER, clean vs realistic, scratch vs transfer."""
    lines = ["## Clean vs realistic speech (Spanish)", ""]
    runs = study.select(task="difficulty")
    if not runs:
        return lines + ["No difficulty runs finished.", ""]
    corpora = study.manifest["corpora"]
    lines += [
        "Test CER in %, mean ± standard deviation over seeds. Both sides read the "
        "same sentences (the 10-minute subset is the same clips, shorter when "
        "clean); only the acoustics differ. Transfer: from an English base "
        "trained on the English corpus of the same conditions. Realistic - "
        "clean: how much harder the realistic corpus is, in CER points (SE of "
        "the difference of the seed means).",
        "",
    ]
    # cer[(size, variant)][conditions]: test CER per seed.
    cer: dict[tuple, dict[str, list]] = {}
    scratch_runs: dict[tuple, list[dict]] = {}  # (size, conditions): its runs
    for r in runs:
        conditions = corpora.get(r["data"], {}).get("conditions")
        cell = cer.setdefault((r["size"], r["variant"]), {})
        cell.setdefault(conditions, []).append(study.final(r))
        if r["variant"] == "scratch":
            scratch_runs.setdefault((r["size"], conditions), []).append(r)
    rows, gaps, seeds = [], [], []
    for size in ("10min", "all"):
        for variant, start in (("scratch", "from scratch"), ("xfer", "transfer")):
            cell = cer.get((size, variant))
            if not cell:
                continue
            clean, realistic = cell.get("clean", []), cell.get("realistic", [])
            rows.append([size, start, _mean_std(clean), _mean_std(realistic),
                         _diff_text(compare_seeds(realistic, clean))])  # fmt: skip
            seeds.append(
                f"- {size}, {start}: clean {', '.join(map(_fmt, clean)) or 'n/a'}; "
                f"realistic {', '.join(map(_fmt, realistic)) or 'n/a'}"
            )
        for conditions in ("clean", "realistic"):
            xfer = cer.get((size, "xfer"), {}).get(conditions, [])
            scratch = cer.get((size, "scratch"), {}).get(conditions, [])
            if not (xfer or scratch):
                continue
            d = compare_seeds(xfer, scratch)
            gaps.append(f"- {conditions}, {size}: transfer - scratch {_diff_text(d)}")
            verdicts.append(
                _evidence(
                    d,
                    f"Spanish, {conditions}, {size}: transfer (test CER "
                    f"{_fmt(_mean(xfer))}) beats scratch ({_fmt(_mean(scratch))})."
                    + not_learned(
                        study, scratch_runs.get((size, conditions), []), "scratch"
                    ),
                )
            )
    lines += _table(
        ["training data", "start", "clean", "realistic", "realistic - clean"], rows
    )
    return lines + [
        "Test CER per seed:",
        "",
        *seeds,
        "",
        "What transfer gains over scratch, per corpus (negative: transfer is better):",
        "",
        *gaps,
        "",
    ]


def augment_section(study: Study, verdicts: list) -> list[str]:
    """Issue 12: test CER with augmentation (or dropout) against neither, per
    model, over seeds."""
    title = "## Augmentation on vs off"
    runs = study.select(task="augment")
    if not runs:
        return [title, "", "No augmentation runs finished.", ""]
    lines = [
        title,
        "",
        "Test CER in %, mean ± standard deviation over seeds; training seconds per "
        "epoch (each augmented batch is trained with its original). Each change "
        "is measured alone against the same model without it.",
        "",
    ]
    # (with, without, what the comparison is, the claim's verb phrase)
    changes = [
        ("on", "off", "augmentation", "augmentation helps"),
        ("dropout", "off", "dropout", "dropout helps"),
        ("on", "off_long", "augmentation, against twice the epochs without",
         "augmentation helps more than twice the epochs without it, for"),
    ]  # fmt: skip
    rows = []
    for language in dict.fromkeys(r["language"] for r in runs):
        cer, seconds = {}, {}
        for label in ("off", "on", "dropout", "off_long"):
            group = [r for r in runs if r["language"] == language
                     and r["variant"] == label]  # fmt: skip
            cer[label] = [study.final(r) for r in group]
            seconds[label] = [
                v for r in group
                if (v := seconds_per_epoch(study.records[r["name"]])) is not None
            ]  # fmt: skip
        what = "English base" if language == "en" else f"{language} transfer"
        size = next(r["size"] for r in runs if r["language"] == language)
        model = what if size in (None, "base") else f"{what} ({size})"
        for label, without, change, claim in changes:
            if not (cer[label] and cer[without]):
                continue
            d = compare_seeds(cer[label], cer[without])
            rows.append([
                model, change, _mean_std(cer[without]),
                _mean_std(cer[label]), _diff_text(d), _mean_std(seconds[without]),
                _mean_std(seconds[label]),
            ])  # fmt: skip
            verdicts.append(
                _evidence(
                    d,
                    f"{claim} the {model}: test CER "
                    f"{_fmt(_mean(cer[label]))} with vs {_fmt(_mean(cer[without]))} "
                    "without.",
                )
            )
    return lines + _table(
        ["model", "change", "without", "with", "with - without", "s/epoch without",
         "s/epoch with"], rows,
    )  # fmt: skip
