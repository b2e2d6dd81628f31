"""The report's section on continuous learning (issue 14).

Per task, each method's target and English scores, cost and Pareto figure, the
goal line and claims; then which method to use when, over the tasks. The
English scores are made here (:func:`cached_source_scores`, cached in each run's
folder).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

from xlt_plugin.runs import (
    final_tests,
    metrics_path,
    model_dir,
    read_json,
    stage_lines,
    zero_shot_tests,
)
from xlt_plugin.study.evaluate import source_scores
from xlt_plugin.study.evidence import _evidence, compare_seeds
from xlt_plugin.study.figures import pareto_figure
from xlt_plugin.study.markdown import _fmt, _mean, _mean_std, _table, _variant_label
from xlt_plugin.study.reader import (
    Study,
    seconds_per_epoch,
)

# ----------------------------------------------------------- continual learning
#: The measures of every target and English score, in table order.
MEASURES = ("WER", "CER")
#: Full fine-tuning's target gain (points of WER or CER) below which no share of
#: it is taken: a few points are what one seed's luck moves on a task's small
#: test set, and a share of them says nothing (the accents: WER 93.8 -> 92.6 gave
#: "shares" from -135 % to 274 %). Such a task is left out of the goal.
MIN_GAIN = 5.0


def _target(study: Study, run: dict, key: str) -> float | None:
    """Mean final test score over the run's test sets; an averaging run's
    averaged model (test sets ``*_averaged``) when it has one."""
    tests = final_tests(study.records[run["name"]])
    averaged = {k: v for k, v in tests.items() if k.endswith("_averaged")}
    chosen = averaged or tests
    return statistics.mean(t[key] for t in chosen.values()) if chosen else None


#: Each run's English scores, in its own folder (a task view shares the run's
#: folder, and ``xlt pack`` carries it with the run).
SOURCE_SCORES_FILE = "source_scores.json"


def _digest(path: Path) -> str:
    """SHA-1 of a file's bytes; "" when it is missing."""
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.exists() else ""


def cached_source_scores(
    study: Study, run_name: str, base: str, encoder_only=False
) -> dict:
    """The run's (or base's) scores on the base's English test set, cached.

    Kept in the run folder's ``source_scores.json``, keyed by the base and the
    way it is scored (``encoder_only``: the run's encoder under the base's head,
    a run in another language) and stamped with the run's and the base's
    ``metrics.jsonl`` contents: a retrained run or base is scored again; a run
    folder copied or checked out elsewhere (new file times, weights left out by
    ``xlt pack``) keeps its scores.
    """
    folder = study.path(run_name)
    cache_path = folder / SOURCE_SCORES_FILE
    cache = read_json(cache_path) or {}
    key = f"{base}:{'encoder' if encoder_only else 'model'}"
    stamp = (
        _digest(metrics_path(folder)) + ":" + _digest(metrics_path(study.path(base)))
    )
    if cache.get(key, {}).get("stamp") != stamp:
        scores = source_scores(
            study.path(base),
            None if run_name == base else folder,
            encoder_only=encoder_only,
        )
        cache[key] = {**scores, "stamp": stamp}
        cache_path.write_text(json.dumps(cache, indent=1) + "\n", encoding="utf-8")
    return cache[key]


def _continual_label(
    study: Study, variant: str, runs: list[dict], over_tasks: bool = False
) -> str:
    """A method's name in the tables; an averaging run's with the alphas its
    runs chose (``over_tasks``: their range, runs of several tasks)."""
    over = runs[0]["overrides"] if runs else {}
    if variant.startswith("replay"):
        return f"rehearsal, {over.get('replay_ratio', 0):.0%} of each batch English"
    if variant.startswith("average"):
        alphas = []
        for run in runs:
            config = read_json(model_dir(study.path(run["name"])) / "config.json")
            alpha = (config or {}).get("metadata", {}).get("averaging", {})
            alphas.append(alpha.get("alpha"))
        batchnorm = over.get("average_batchnorm", "average")
        statistics_text = ", BatchNorm re-estimated" if batchnorm == "recompute" else ""
        chosen = ", ".join(_fmt(a, 1) for a in alphas)
        known = [a for a in alphas if a is not None]
        if over_tasks and len(set(known)) > 1:  # the range, compared as numbers
            chosen = f"{_fmt(min(known), 1)} to {_fmt(max(known), 1)}, chosen per task"
        return f"weight averaging with the base{statistics_text} (alpha {chosen})"
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


def continual_section(study: Study, figures: Path, verdicts: list) -> list[str]:
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
    numbers: dict[str, dict] = {}  # task -> method -> (English % rel., share)
    labels: dict[str, str] = {}  # method -> its name over the tasks
    for data in dict.fromkeys(r["data"] for r in runs):
        task_runs = [r for r in runs if r["data"] == data]
        with_base = [r for r in task_runs if r.get("base")]
        if not with_base:
            continue
        base = with_base[0]["base"]
        corpus = study.manifest["corpora"].get(data, {})
        what = (corpus.get("domain") or corpus.get("accents")
                or f"language {corpus.get('locale') or data}")  # fmt: skip
        numbers[data] = {}
        lines += _continual_task(
            study, data, what, base, task_runs, figures, verdicts, numbers[data]
        )
    for m in dict.fromkeys(m for task in numbers.values() for m in task):
        # Over the tasks: an averaging run's alphas are those of every task's runs.
        group = [r for r in runs if r["variant"] == m and r["data"] in numbers]
        labels[m] = _continual_label(study, m, group, over_tasks=True)
    return lines + _continual_overview(numbers, labels)


def _continual_overview(numbers: dict[str, dict], labels: dict) -> list[str]:
    """Which method when, over the tasks: forgetting and target gain per method.

    ``numbers``: task -> method -> (English change against the base, % rel.;
    share of full fine-tuning's target gain, %), on seed means, each the worse
    of WER and CER.

    Example
    -------
    >>> numbers = {"a": {"full": (100.0, 100.0), "adapters": (2.0, 92.0)},
    ...            "b": {"full": (80.0, 100.0), "adapters": (4.0, 70.0)},
    ...            "c": {"full": (10.0, None), "adapters": (3.0, None)}}
    >>> lines = _continual_overview(numbers, {"full": "full", "adapters": "ad"})
    >>> lines[7]  # c: no gain to share, in the English mean only
    '| ad | 1 of 2 | 3.0 | 81 |'
    >>> lines[-2]
    '- Both at once (the goal in every task with a gain to share): none.'
    """
    methods = [m for m in dict.fromkeys(m for t in numbers.values() for m in t)
               if m not in ("base", "scratch")]  # fmt: skip
    if len(numbers) < 2 or not methods:
        return []
    rows, means = [], {}
    # Tasks where full fine-tuning gained enough to take shares of (MIN_GAIN).
    assessed = [t for t in numbers.values() if (t.get("full") or (0, None))[1]]
    for m in methods:
        pairs = [t[m] for t in numbers.values() if m in t]
        rel = _mean([r for r, _ in pairs if r is not None])
        share = _mean([s for _, s in pairs if s is not None])
        judged = [(r, s) for r, s in pairs if r is not None and s is not None]
        met = sum(1 for r, s in judged if r <= 5 and s >= 90)
        means[m] = (rel, share, met, len(judged))
        rows.append([labels.get(m, m), f"{met} of {len(judged)}", _fmt(rel, 1),
                     _fmt(share, 0)])  # fmt: skip
    lines = ["### Which method when (over the tasks)", ""]
    lines += [
        "Per task, a method's English change and share of the gain are the "
        "worse of its WER and CER numbers (where the base's English WER is near "
        "100 %, WER hardly moves as a model forgets; CER does). Shares and the "
        f"goal count only tasks where full fine-tuning gained {MIN_GAIN:.0f} "
        "points or more on the target "
        f"({len(assessed)} of {len(numbers)} here).",
        "",
    ]
    lines += _table(
        ["method", "tasks meeting the goal (English within 5 %, >= 90 % of the "
         "gain)", "English vs base, % rel. (mean over tasks)",
         "share of full fine-tuning's gain, % (mean over tasks)"], rows,
    )  # fmt: skip
    others = [m for m in methods if m != "full"]
    kept = [m for m in others if means[m][0] is not None]
    gained = [m for m in others if means[m][1] is not None]
    goal = [m for m in others if assessed and means[m][2] == len(assessed)]
    if kept:
        best = min(kept, key=lambda m: means[m][0])
        lines.append(f"- Keeps the most English: {labels.get(best, best)} "
                     f"({_fmt(means[best][0], 1)} % rel. on average).")  # fmt: skip
    if gained:
        best = max(gained, key=lambda m: means[m][1])
        lines.append(f"- Closest to full fine-tuning on the target: "
                     f"{labels.get(best, best)} ({_fmt(means[best][1], 0)} % of its "
                     "gain on average).")  # fmt: skip
    lines.append(
        "- Both at once (the goal in every task with a gain to share): "
        + (", ".join(labels.get(m, m) for m in goal) or "none")
        + "."
    )
    return lines + [""]


def _continual_task(
    study: Study,
    data: str,
    what: str,
    base: str,
    runs: list[dict],
    figures: Path,
    verdicts: list,
    numbers: dict,
) -> list[str]:
    """One task's table, goal line, Pareto figure and claims; ``numbers`` gets
    each method's (English WER change, % rel.; share of full's gain, %)."""
    lines = [f"### {data} ({what})", ""]
    methods = list(dict.fromkeys(r["variant"] for r in runs))
    if "scratch" in methods:  # a reference: last, after the methods
        methods.append(methods.pop(methods.index("scratch")))
    groups = {m: [r for r in runs if r["variant"] == m] for m in methods}
    scores = {}  # method -> lists of target WER, target CER, English WER, CER
    base_runs = study.select(name=base)
    # Another language: each encoder is scored under the base's English head, and
    # scratch (no English encoder to keep) has no English column.
    base_language = base_runs[0].get("language") if base_runs else None
    other_language = any(r.get("language") != base_language for r in runs)
    full = groups.get("full", [])
    if base_runs:
        english = cached_source_scores(study, base, base)
        zero = [zero_shot_tests(study.records[r["name"]]) for r in full]
        scores["base"] = (
            [_mean([t["WER"] for t in z.values()]) for z in zero if z],
            [_mean([t["CER"] for t in z.values()]) for z in zero if z],
            [english["WER"]],
            [english["CER"]],
        )
    for method, group in groups.items():
        if other_language and method == "scratch":
            sources = []
        else:
            sources = [
                cached_source_scores(
                    study, r["name"], base, encoder_only=other_language
                )
                for r in group
            ]
        scores[method] = (
            [_target(study, r, "WER") for r in group],
            [_target(study, r, "CER") for r in group],
            [s["WER"] for s in sources],
            [s["CER"] for s in sources],
        )
    # Per measure (WER, CER): the base's target and English scores, full's target.
    # Both count: where the base's English WER is near 100 %, WER hardly moves
    # when a model forgets (CER does), and a goal met in WER alone says little.
    base_target, base_english, full_target = {}, {}, {}
    for i, key in enumerate(MEASURES):
        base_target[key] = _mean(scores.get("base", ([], []))[i])
        base_english[key] = _mean(scores.get("base", ([], [], [], []))[2 + i])
        full_target[key] = _mean(scores.get("full", ([], []))[i])
    labels = {m: _continual_label(study, m, g) for m, g in groups.items()}
    rows = []
    for method, method_scores in scores.items():
        t_wer, t_cer, s_wer, s_cer = method_scores
        group = groups.get(method, [])
        rel, share = {}, {}
        for i, key in enumerate(MEASURES):
            target, english = _mean(method_scores[i]), _mean(method_scores[2 + i])
            rel[key] = share[key] = None
            if base_english[key] and english is not None and method != "base":
                rel[key] = 100 * (english - base_english[key]) / base_english[key]
            gain = None
            if base_target[key] is not None and full_target[key] is not None:
                gain = base_target[key] - full_target[key]
            if gain and gain >= MIN_GAIN and method not in ("base", "scratch"):
                share[key] = 100 * (base_target[key] - target) / gain
        numbers[method] = (_worst(rel.values(), max), _worst(share.values(), min))
        label = "base as is (zero-shot)" if method == "base" else labels[method]
        secs = [seconds_per_epoch(study.records[r["name"]]) for r in group]
        rows.append(
            [
                label,
                _mean_std(t_wer),
                _mean_std(t_cer),
                _mean_std(s_wer),
                _mean_std(s_cer),
                " / ".join(_fmt(rel[k], 1) for k in MEASURES),
                " / ".join(_fmt(share[k], 0) for k in MEASURES),
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
            "English vs base (% rel., WER / CER)",
            "share of full fine-tuning's target gain (%, WER / CER)",
            "trainable parameters",
            "s/epoch",
            "seeds",
        ],
        rows,
    )
    lines.append(_goal_line(numbers, base_english, base_target, full_target, labels))
    lines.append("")
    panels = []
    for i, key in enumerate(MEASURES):
        points = [
            (
                "base as is" if m == "base" else labels[m],
                _mean_sd(values[i]),
                _mean_sd(values[2 + i]),
            )
            for m, values in scores.items()
            if _mean(values[i]) is not None and _mean(values[2 + i]) is not None
        ]
        panels.append((points, f"target test {key} (%)",
                       f"English (base's test set) {key} (%)"))  # fmt: skip
    if panels[0][0]:
        name = f"continual_{data}.png"
        pareto_figure(
            panels,
            f"{data} ({what}): target vs English, bars ±1 sd over seeds",
            figures / name,
        )
        lines += [f"![continual {data}](figures/{name})", ""]
    full_scores = scores.get("full", ([], [], [], []))
    for method, values in scores.items():
        if method in ("base", "full", "scratch") or not full_scores[2]:
            continue
        label = labels[method]
        for i, key in enumerate(MEASURES):
            english, full_english = values[2 + i], full_scores[2 + i]
            verdicts.append(
                _evidence(
                    compare_seeds(english, full_english),
                    f"{data}: {label} keeps more English than full fine-tuning "
                    f"(English test {key} {_fmt(_mean(english))} vs "
                    f"{_fmt(_mean(full_english))}).",
                )
            )
    return lines


def _mean_sd(values: list) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value) of the values."""
    values = [v for v in values if v is not None]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd


def _worst(values, pick) -> float | None:
    """``pick`` (max for forgetting, min for a share of the gain) of the values
    that were measured; None when none was."""
    measured = [v for v in values if v is not None]
    return pick(measured) if measured else None


def _goal_line(
    numbers: dict, english: dict, target: dict, full: dict, labels: dict | None = None
) -> str:
    """Which methods keep English within 5 % of the base with >= 90 % of the gain.

    ``numbers``: method -> (English change, % rel.; share of full's gain, %), each
    the worse of WER and CER; ``english``, ``target``, ``full``: measure -> the
    base's English score, the base's and full fine-tuning's target scores;
    ``labels``: method -> its name in the table.
    """
    if any(None in (english.get(k), target.get(k), full.get(k)) for k in MEASURES):
        return "Not measured: the base's or full fine-tuning's scores are missing."
    gains = {k: target[k] - full[k] for k in MEASURES}
    if all(g < MIN_GAIN for g in gains.values()):
        return (
            "Not assessed: full fine-tuning's target gain here ("
            + ", ".join(f"{k} {g:.1f}" for k, g in gains.items())
            + f" points) is under {MIN_GAIN:.0f} points in both measures, too "
            "little for a share of it to mean anything; the English columns "
            "still say what each method costs."
        )
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
        name = (labels or {}).get(m, m)
        return f"{name} ({_fmt(rel, 1)} % English, {_fmt(share, 0)} % of the gain)"

    def scores(of: dict, to: dict | None = None) -> str:
        return ", ".join(
            f"{k} {of[k]:.1f}" + (f" -> {to[k]:.1f}" if to else "") for k in MEASURES
        )

    head = (
        f"English within 5 % relative of the base ({scores(english)}) and at "
        f"least 90 % of full fine-tuning's target gain ({scores(target, full)}), "
        "both in WER and in CER, on seed means (each method's worse measure): "
    )
    if both:
        return head + ", ".join(text(m) for m in both) + "."
    rest = ", ".join(text(m) for m in candidates) or "no method measured"
    return head + f"none. The methods: {rest}."
