"""The study report: tables and figures generated from the runs' own files.

Every number comes from a run folder (``metrics.jsonl``, ``remap_report.json``,
``model/``), never typed by hand. ``write_report(study_dir)`` writes the study's
``REPORT.md`` (with ``study.json`` saying what each run is); ``xlt report
RUN_DIR...`` writes a generic report for any run folders, e.g. real Common Voice
runs.

This module holds the paper's sections (1-7), the setup tables and the verdicts;
the plugin's own sections are in :mod:`xlt_plugin.study.remap_section`,
:mod:`xlt_plugin.study.continual_section` and
:mod:`xlt_plugin.study.regime_sections`. The
study folder is read by :mod:`xlt_plugin.study.reader` (run files through
:mod:`xlt_plugin.runs`), cells formatted by :mod:`xlt_plugin.study.markdown`,
figures drawn by :mod:`xlt_plugin.study.figures`, and the one number that needs
a model run on audio (forgetting) comes from :mod:`xlt_plugin.study.evaluate`.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
from pathlib import Path

from xlt_plugin.runs import (
    IMPROVING_RATE,
    IMPROVING_WINDOW,
    final_tests,
    model_dir,
    read_metrics,
    read_remap_report,
    stage_lines,
    trained_epochs,
    valid_curve,
    zero_shot_tests,
)
from xlt_plugin.study.continual_section import cached_source_scores, continual_section
from xlt_plugin.study.evidence import _evidence, compare_seeds
from xlt_plugin.study.figures import convergence_figure, dev_cer_figure
from xlt_plugin.study.markdown import _fmt, _mean_std, _table, _variant_label
from xlt_plugin.study.reader import (
    NOT_LEARNED_CER,
    PAUSED_EPOCH_FACTOR,
    Study,
    _train_minutes,
    convergence_ratio,
    corpus_sizes,
    epochs_cell,
    not_learned,
    parameter_count,
    seconds_per_epoch,
)
from xlt_plugin.study.regime_sections import (
    augment_section,
    bases_section,
    difficulty_section,
)
from xlt_plugin.study.remap_section import remap_section

SYNTHETIC_NOTE = (
    "All audio here is synthetic: espeak-ng voices written in Common Voice layout by "
    "`xlt synth`. The numbers show what the method does on this corpus; they are "
    "not Common Voice results."
)
# Measured (issue 17): the first edition's demo from a fresh clone on a second
# machine of the same kind.
REPRODUCIBILITY_NOTE = (
    "Reproducibility: a run is repeatable on one machine (same seed, same numbers), "
    "but not bit for bit across machines: a fresh clone's `make demo` (its first "
    "edition, clean speech) on a second machine of the same kind gave every claim "
    "the same direction with other "
    "numbers (Spanish from scratch 13.0 vs 13.9 test CER, re-initialised head 9.6 "
    "vs 9.9, medical WER 8.7 vs 7.6), differences of about the seed spread. "
    "Compare a number with its seed spread, not with its last digit."
)
#: The paper's three claims, the headings its verdicts are listed under.
PAPER_CLAIMS = (
    "1. Transfer beats training from scratch (languages, accents, domains)",
    "2. A larger base is better, even on small data",
    "3. Transfer converges faster",
)
#: The plugin's own claims, by what they are about.
OWN_CLAIMS = (
    "The remapped head (rows of shared tokens kept)",
    "The remapped head without a remedy (the recipes before issue 13)",
    "Freezing",
    "Continuous learning (adapting without forgetting)",
    "The regime: bases by size, augmentation, clean vs realistic speech",
)
# The tasks of the paper's sections (1-7); "remap" and "continual" are the plugin's.
PAPER_TASKS = {"language", "accent", "domain", "size", "freezing"}


def _claim(better: list, worse: list, text: str) -> str:
    """A claim line: ``better`` (per seed) is lower than ``worse`` (per seed).

    The study's standard (:func:`compare_seeds`): holds only where the difference
    of the seed means exceeds twice its standard error, does not hold where it is
    reversed by that margin, and is not measurable otherwise; with one seed a
    side, the line says so and gives the direction only.

    Example
    -------
    >>> _claim([5.0, 5.2], [7.0, 7.1], "transfer beats scratch.")
    '- **Holds here**: transfer beats scratch. Difference -2.0 (SE 0.1).'
    >>> _claim([5.0], [7.0], "transfer is better.")
    '- **Not measurable here** (one seed; the direction agrees): transfer is better.'
    >>> _claim([7.0], [7.0], "transfer is better.")
    '- **Not measurable here** (one seed; the direction is a tie): transfer is better.'
    """
    d = compare_seeds(better, worse)
    if d.diff is None:
        return f"- **Not measured**: {text}"
    if d.se is None:
        direction = (
            "agrees" if d.diff < 0 else "disagrees" if d.diff > 0 else "is a tie"
        )
        return (
            f"- **Not measurable here** (one seed; the direction {direction}): {text}"
        )
    return _evidence(d, text)


def _still_improving(study: Study, runs: list[dict], who: str) -> str:
    """A caveat for a claim against ``runs`` that stopped while still learning
    (:meth:`Study.still_improving`); empty when every seed had converged."""
    rates = [study.still_improving(r) for r in runs]
    late = [r for r in rates if r is not None]
    if not late:
        return ""
    return (
        f" Caveat: {who} was still improving when it stopped ({len(late)} of "
        f"{len(runs)} seeds; dev CER falling {max(late):.1f} points per epoch over "
        f"its last {IMPROVING_WINDOW} epochs), so this margin overstates the "
        "difference."
    )


def _language_section(study: Study, verdicts: list, own: list) -> list[str]:
    """Each language from scratch, with the head re-initialised and remapped.

    Transfer vs scratch goes to the paper's ``verdicts``, the remapped head vs the
    re-initialised one to the plugin's (``own``).
    """
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
                    epochs_cell(study, runs),
                    str(len(runs)),
                ]
            )
        final = {v: [study.final(r) for r in runs] for v, runs in by_variant.items()}
        if final["scratch"] and final["xfer"]:
            x, s = statistics.mean(final["xfer"]), statistics.mean(final["scratch"])
            verdicts.append(
                _claim(
                    final["xfer"],
                    final["scratch"],
                    f"{lang}: transfer test CER {x:.1f} vs scratch {s:.1f}."
                    + _still_improving(study, by_variant["scratch"], "scratch")
                    + not_learned(study, by_variant["scratch"], "scratch"),
                )
            )
        if final["xfer_none"] and final["xfer"]:
            x, n = statistics.mean(final["xfer"]), statistics.mean(final["xfer_none"])
            own.append(
                _claim(
                    final["xfer"],
                    final["xfer_none"],
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
                own.append(
                    _claim(
                        early[0],
                        early[1],
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
        'Epochs marked "still improving": runs whose dev CER was still falling '
        f"by {100 * IMPROVING_RATE:g} % of its value per epoch or more over their "
        f"last {IMPROVING_WINDOW} epochs (a least-squares fit; n of the seeds). "
        "Tokens mapped: target characters whose head row starts from "
        "a source row (copied or averaged); Cantonese text is made from Mandarin "
        "words through OpenCC, so its overlap with the Mandarin base is high by "
        "construction.",
        "",
    ]
    return lines


def _per_set_section(
    study: Study, task: str, title: str, verdicts: list, own: list
) -> list:
    """Accents or domains: per test set, the base as is, fine-tuned and scratch.

    With ``xfer_none`` runs (the head re-initialised), a column and the
    plugin's claim (``own``) that its head beats them.
    """
    lines = [title, ""]
    xfers = study.select(task=task, variant="xfer")
    if not xfers:
        return lines + ["No runs finished.", ""]
    reinit = bool(study.select(task=task, variant="xfer_none"))
    rows = []
    groups = sorted({r["data"] for r in xfers})
    for data in groups:
        xs = [r for r in xfers if r["data"] == data]
        ss = study.select(task=task, variant="scratch", data=data)
        nones = study.select(task=task, variant="xfer_none", data=data)
        sets = sorted(final_tests(study.records[xs[0]["name"]]))
        for test_set in sets:
            base = [study.zero_shot(r, "WER", test_set) for r in xs]
            tuned = [study.final(r, "WER", test_set) for r in xs]
            scratch = [study.final(r, "WER", test_set) for r in ss]
            none = [study.final(r, "WER", test_set) for r in nones]
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
                    *([_mean_std(none)] if reinit else []),
                    _mean_std([study.zero_shot(r, "CER", test_set) for r in xs]),
                    _mean_std([study.final(r, "CER", test_set) for r in xs]),
                    _mean_std([study.final(r, "CER", test_set) for r in ss]),
                ]
            )
            for other, claims, text, caveat in (
                (scratch, verdicts, "fine-tuned WER {t:.1f} vs scratch {o:.1f}.",
                 _still_improving(study, ss, "scratch")
                 + not_learned(study, ss, "scratch")),
                (none, own, "the remapped head's WER {t:.1f} vs {o:.1f} with the "
                 "head re-initialised.", ""),
            ):  # fmt: skip
                if other and tuned and None not in other + tuned:
                    t, o = statistics.mean(tuned), statistics.mean(other)
                    line = f"{task} '{test_set}': {text.format(t=t, o=o)}{caveat}"
                    claims.append(_claim(tuned, other, line))
    lines += _table(
        [
            "test set",
            "base as is WER",
            "fine-tuned WER",
            "fine-tuned + LM WER",
            "scratch WER",
            *(["head re-initialised WER"] if reinit else []),
            "base as is CER",
            "fine-tuned CER",
            "scratch CER",
        ],
        rows,
    )
    return lines


def _base_groups(study: Study, bases: list[str]) -> dict[str, list[str]]:
    """Bases grouped by what they are (corpus and encoder), labelled for tables.

    A ladder gives each seed of a transfer its own base of a size (seed k from
    base seed k), so that a size is compared over its bases' training and not
    through one instance; one base alone keeps its run name as its label.
    """
    groups: dict[tuple, list[str]] = {}
    for name in bases:
        run = study.runs.get(name)
        key = (run["data"], run["variant"]) if run else (name,)
        groups.setdefault(key, []).append(name)
    labels = {}
    for key, names in groups.items():
        label = names[0] if len(names) == 1 else key[-1]
        labels[f"{label} ({key[0]})" if label in labels else label] = names
    return labels


def _size_section(study: Study, verdicts: list) -> list[str]:
    """Transfers from bases of growing size at each fine-tuning size.

    The bases are every base a ``size`` run transfers from, grouped by encoder
    (one base per seed, or one for all seeds) and ordered by parameters; where
    that is one base only (the small profiles), the Spanish language runs at
    ``all`` bring the other. A claim compares each size with the next larger
    one, at every fine-tuning size where both were measured.
    """
    lines = ["## 4. Larger base vs smaller base", ""]
    planned = [r for r in study.manifest["runs"] if r["task"] == "size"]
    sizes = list(dict.fromkeys(r["size"] for r in planned))
    if not sizes:
        return lines + ["No size runs in this profile.", ""]
    spanish = [
        r
        for r in study.manifest["runs"]
        if r["task"] == "language" and r["language"] == "es"
    ]

    transfers = [r for r in planned if r["variant"] == "xfer"]
    # With one base of its own, the size task borrows the language runs' base;
    # with more, a language run's base (trained on another corpus, scored on
    # another English test set) would only blur the ladder.
    borrow = len(_base_groups(study, [r["base"] for r in transfers])) < 2
    if borrow and "all" in sizes:
        transfers += [r for r in spanish if r["variant"] == "xfer"]
    groups = _base_groups(study, list(dict.fromkeys(r["base"] for r in transfers)))

    def cer_of(size, bases=None, **match):
        runs = study.select(task="size", size=size, **match)
        if size == "all":  # the full-size language runs double as this size
            runs += study.select(task="language", language="es", **match)
        return [study.final(r) for r in runs if bases is None or r["base"] in bases]

    params = {g: parameter_count(study.path(names[0])) for g, names in groups.items()}
    labels = sorted(groups, key=lambda g: params[g] or 0)
    rows, measured_sizes = [], []
    for size in sizes:
        data = {r["data"] for r in planned if r["size"] == size}
        minutes = [_train_minutes(study, d) for d in data]
        by_base = {g: cer_of(size, groups[g], variant="xfer") for g in labels}
        rows.append(
            [
                size,
                _fmt(minutes[0] if minutes else None),
                _mean_std(cer_of(size, variant="scratch")),
                *(_mean_std(by_base[g]) for g in labels),
            ]
        )
        if sum(bool(v) for v in by_base.values()) > 1:
            measured_sizes.append((size, by_base))

    def header(group):
        names = groups[group]
        one = "" if len(names) == 1 else f"; its {len(names)} bases, one per seed"
        return f"transfer CER from `{group}` ({_fmt(params[group])} params{one})"

    lines += _table(
        ["fine-tuning data", "train minutes", "scratch CER", *map(header, labels)],
        rows,
    )
    english = {}
    for group in labels:
        values = [study.final(r) for n in groups[group] for r in study.select(name=n)]
        english[group] = _mean_std(values) if values else "n/a"
    lines += [
        "English test CER of the bases themselves: "
        + ", ".join(f"`{g}` {english[g]}" for g in labels)
        + " (a larger base is only a better start if it is a better English model).",
        "",
    ]
    for size, by_base in measured_sizes:
        measured = [g for g in labels if by_base[g]]
        for small, large in itertools.pairwise(measured):
            verdicts.append(
                _claim(
                    by_base[large],
                    by_base[small],
                    f"larger base at {size} of fine-tuning data: `{large}` CER "
                    f"{statistics.mean(by_base[large]):.1f} vs `{small}` "
                    f"{statistics.mean(by_base[small]):.1f}.",
                )
            )
    return lines


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
            v: study.select(task=task, data=data, variant=v)
            for v in ("scratch", "xfer_none", "xfer")
        }
        if not runs["scratch"] or not runs["xfer"]:
            continue
        curves = {  # variant -> seed -> validation curve
            v: {r["seed"]: valid_curve(study.records[r["name"]]) for r in group}
            for v, group in runs.items()
        }
        # Each transfer seed against the scratch run of the same seed.
        paired = sorted(set(curves["xfer"]) & set(curves["scratch"]))
        ratios = [
            convergence_ratio(curves["xfer"][seed], curves["scratch"][seed])
            for seed in paired
        ]
        if not ratios:
            continue

        def column(key, ratios=ratios):
            return [r[key] for r in ratios if r[key] is not None]

        never = sum(r["xfer_epochs"] is None for r in ratios)
        reached = _mean_std(column("xfer_epochs")) + (f", {never} never" * bool(never))
        rows.append(
            [
                f"{task} ({data})",
                _mean_std(column("target")),
                _mean_std(column("scratch_epochs")),
                reached,
                _mean_std(column("ratio"), 2),
                _mean_std(column("scratch_seconds")),
                _mean_std(column("xfer_seconds")),
                _mean_std(column("seconds_ratio"), 2),
                str(len(ratios)),
            ]
        )
        # A scratch run that never learned: the ratio says little beyond that.
        if min(column("target") or [0.0]) >= NOT_LEARNED_CER:
            unlearned.append(f"{task} ({data})")
        scratch = [r for r in runs["scratch"] if r["seed"] in paired]
        caveat = not_learned(study, scratch, "scratch")
        verdicts.append(_convergence_verdict(task, data, ratios, caveat))
        name = f"convergence_{task}_{data}.png"
        convergence_figure(
            [(_variant_label(v), list(c.values())) for v, c in curves.items() if c],
            f"{task}: {data} (synthetic speech; bands: the seeds' range)",
            figures / name,
        )
        lines.append(f"![{task} {data}](figures/{name})")
        lines.append("")
    if not rows:
        return lines + ["No transfer finished beside a scratch run of its seed.", ""]
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
            "seeds",
        ],
        rows,
    )
    if unlearned:
        lines += [
            f"From scratch, {', '.join(unlearned)} never got below "
            f"{NOT_LEARNED_CER:.0f} % dev CER in these epochs: there the ratio only "
            "says that transfer learned and scratch did not.",
            "",
        ]
    return lines


def _convergence_verdict(
    task: str, data: str, ratios: list[dict], caveat: str = ""
) -> str:
    """Transfer converges faster, by :func:`_claim`'s standard (epochs to target).

    The epochs transfer needs to reach each seed's scratch best dev CER are
    compared with the epochs scratch needed (:func:`compare_seeds`; one seed
    gives the direction only); a seed whose transfer never got there counts as
    the run's full length, and the line says how many did not. ``caveat`` ends
    the claim's text (e.g. :func:`not_learned`'s).
    """
    ratios = [r for r in ratios if r["scratch_epochs"]]
    if not ratios:
        return f"- **Not measured**: {task} ({data}): transfer converges faster."
    xfer = [r["xfer_epochs"] or r["xfer_trained"] for r in ratios]
    scratch = [r["scratch_epochs"] for r in ratios]
    never = sum(r["xfer_epochs"] is None for r in ratios)
    mean_ratio = statistics.mean(x / s for x, s in zip(xfer, scratch, strict=True))
    seeds = f"{len(ratios)} seed{'s' * (len(ratios) > 1)}"
    if never:
        seeds += f", {never} never reached it: counted at its full length"
    return _claim(
        xfer,
        scratch,
        f"{task} ({data}): transfer reaches each seed's scratch best dev CER "
        f"({statistics.mean(r['target'] for r in ratios):.1f} on average) in "
        f"{statistics.mean(xfer):.1f} epochs vs {statistics.mean(scratch):.1f} for "
        f"scratch ({seeds}; mean ratio {mean_ratio:.2f})." + caveat,
    )


def _freezing_section(study: Study, claims: list) -> list[str]:
    """Spanish transfer with each freezing option against full fine-tuning: the
    table, and a claim per option (its test CER against full fine-tuning's)."""
    lines = ["## 6. Freezing ablation", ""]
    runs = study.select(task="freezing")
    if not runs:
        planned = any(r["task"] == "freezing" for r in study.manifest["runs"])
        return lines + [
            "No freezing runs finished." if planned
            else "Not in this profile (run `make study`).",
            "",
        ]  # fmt: skip
    full = study.select(task="language", language="es", variant="xfer")
    full_cer = [study.final(r) for r in full]
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
        cer = [study.final(r) for r in group]
        rows.append(
            [name, _mean_std(cer), _mean_std(secs), _fmt(first[0]["trainable_params"])]
        )
        if label != "xfer" and full:
            claims.append(
                _claim(
                    cer,
                    full_cer,
                    f"es: {name} ends below full fine-tuning's test CER "
                    f"({statistics.mean(cer):.1f} vs {statistics.mean(full_cer):.1f}).",
                )
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
    """The base's English test scores before and after each transfer, over seeds.

    "After" runs the transfer's encoder under the base's own head (the scores
    are cached with the continual section's, :func:`cached_source_scores`). The
    English-to-English tasks (accents, domains) score their whole fine-tuned
    model in the continuous-learning section.
    """
    lines = ["## 7. Forgetting", ""]
    groups: dict[tuple[str, str], list[str]] = {}
    for xfer, base in study.manifest.get("forgetting", []):
        if final_tests(study.records.get(xfer, [])) and final_tests(
            study.records.get(base, [])
        ):
            groups.setdefault((re.sub(r"_s\d+$", "", xfer), base), []).append(xfer)
    rows = []
    for (name, base), runs in groups.items():
        before = cached_source_scores(study, base, base)
        after = [
            cached_source_scores(study, run, base, encoder_only=True) for run in runs
        ]
        rows.append([
            f"{name} ({len(runs)} seeds)" if len(runs) > 1 else runs[0], base,
            _fmt(before["CER"]), _mean_std([a["CER"] for a in after]),
            _fmt(before["WER"]), _mean_std([a["WER"] for a in after]),
            str(before["utterances"]),
        ])  # fmt: skip
    if not rows:
        return lines + ["No finished run pairs to measure.", ""]
    lines += _table(
        [
            "transfer",
            "base",
            "English test CER before",
            "after (fine-tuned encoder, base's English head)",
            "English test WER before",
            "after",
            "utterances",
        ],
        rows,
    )
    return lines + [
        "After: mean ± sd over seeds. For the accents and domains, whose "
        "fine-tuned model keeps the English head, the continuous-learning "
        "section gives its English test WER and CER per method.",
        "",
    ]


def _hparams(run: dict) -> str:
    """A run's hparams file, with the encoder it was given if it overrides it.

    The bases of a ladder share one YAML; without the preset a reader would take
    a 0.10M-parameter base for the file's own encoder.

    Example
    -------
    >>> _hparams({"hparams": "quartznet_small.yaml",
    ...           "overrides": {"encoder_preset": "quartznet_tiny"}})
    'quartznet_small.yaml (encoder_preset: quartznet_tiny)'
    >>> _hparams({"hparams": "es_xfer.yaml", "overrides": {}})
    'es_xfer.yaml'
    """
    preset = run.get("overrides", {}).get("encoder_preset")
    return f"{run['hparams']} (encoder_preset: {preset})" if preset else run["hparams"]


def _setup_section(study: Study) -> list[str]:
    lines = ["## Setup", "", SYNTHETIC_NOTE, ""]
    rows = []
    for name, corpus in study.manifest["corpora"].items():
        try:
            sizes = corpus_sizes(study.corpus_folder(name))
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
                [run["name"], run["recipe"], _hparams(run), "not finished", "", "", ""]
            )
            continue
        rows.append(
            [
                run["name"],
                run["recipe"],
                _hparams(run),
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
    # One count per run folder (a run under a second name is the same folder).
    paused = {study.path(n): k for n, k in study.paused.items() if k}
    if paused:
        lines += [
            f"Training seconds here count {sum(paused.values())} paused epochs of "
            f"{len(paused)} runs (each over {PAUSED_EPOCH_FACTOR:g} times its run's "
            "median: the study was stopped mid-epoch) at their run's median, in "
            "seconds per epoch and seconds to a dev CER alike; `metrics.jsonl` "
            "keeps the clock as it ran.",
            "",
        ]
    return lines


#: Each verdict line's opening (see :func:`_claim` and :func:`_evidence`).
VERDICTS = {
    "holds": "- **Holds here**",
    "does not hold": "- **Does not hold here**",
    "not measurable": "- **Not measurable here**",
    "not measured": "- **Not measured**",
}


def _claims_summary(groups: dict[str, list[str]]) -> list[str]:
    """A table: per group of claims, how many hold, do not, are not measurable
    (one row a group, empty ones included).

    Example
    -------
    >>> lines = _claims_summary({"1. Transfer": ["- **Holds here**: a.",
    ...                          "- **Not measurable here** (one seed): b."]})
    >>> lines[2]
    '| 1. Transfer | 1 | 0 | 1 | 0 |'
    """
    rows = [
        [title, *(str(sum(c.startswith(v) for c in claims)) for v in VERDICTS.values())]
        for title, claims in groups.items()
    ]
    return _table(["claims", *VERDICTS], rows)


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
    own = [
        task
        for task in ("bases", "augment", "difficulty", "remap", "continual")
        if task in tasks
    ]
    # A profile of only the plugin's own measurements has none of the paper's
    # sections (they would all read "no runs"); every other profile has them all.
    paper = not own or bool(tasks & PAPER_TASKS)
    # The claims by what they are about (the report's first two sections).
    paper_claims: dict[str, list[str]] = {title: [] for title in PAPER_CLAIMS}
    own_claims: dict[str, list[str]] = {title: [] for title in OWN_CLAIMS}
    scratch, sizes, speed = paper_claims.values()
    head_rows, head_without_remedy, freezing, continual, regime = own_claims.values()
    body = []
    if paper:
        body += _language_section(study, scratch, head_rows)
        for task, title in (("accent", "## 2. Accents"), ("domain", "## 3. Domains")):
            body += _per_set_section(study, task, title, scratch, head_rows)
        body += _size_section(study, sizes)
        body += _convergence_section(study, figures, speed)
        body += _freezing_section(study, freezing)
        body += _forgetting_section(study)
    if "bases" in own:
        body += bases_section(study, regime)
    if "augment" in own:
        body += augment_section(study, regime)
    if "difficulty" in own:
        body += difficulty_section(study, regime)
    if "remap" in own:
        body += remap_section(study, head_rows, head_without_remedy)
    if "continual" in own:
        body += continual_section(study, figures, continual)
    # A task view (``xlt report --task``) is named "PROFILE: TASK, TASK".
    profile, _, tasks = study.manifest["profile"].partition(": ")
    scope = f"{profile} profile" + (f", its {tasks} runs" if tasks else "")
    head = [
        f"# Cross-language transfer study ({scope})",
        "",
        study.manifest.get("description", ""),
        "",
        SYNTHETIC_NOTE,
        "",
        REPRODUCIBILITY_NOTE,
        "",
    ]
    standard = (
        "A claim holds only where the difference of the seed means exceeds twice "
        "its standard error; it does not hold where it is reversed by that margin, "
        "and is not measurable here otherwise (with one seed, the line gives the "
        "direction only)."
    )
    # Every claim of the paper has its row (zeros: nothing measured it here).
    groups = {**(paper_claims if paper else {})}
    groups.update({title: claims for title, claims in own_claims.items() if claims})
    if any(groups.values()):
        head += ["## In short", "", *_claims_summary(groups)]
    if paper:
        head += ["## The paper's claims, here", "", standard, ""]
        for title, claims in paper_claims.items():
            head += [f"**{title}**", "", *(claims or ["- No comparison finished."])]
            head += [""]
    if own or any(own_claims.values()):
        head += ["## The plugin's own claims, here", "", standard, ""]
        for title, claims in own_claims.items():
            if claims:
                head += [f"**{title}**", "", *claims, ""]
        if not any(own_claims.values()):
            head += ["- No comparison finished.", ""]
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
