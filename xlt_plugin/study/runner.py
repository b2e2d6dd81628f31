"""The study: the paper's three findings, re-measured end to end on one machine.

``xlt study --profile demo`` (what ``make demo`` runs) synthesizes the corpora,
pretrains the English bases, runs every transfer and its from-scratch baseline
through the real recipes (each run is ``python recipes/<R>/train.py <yaml> ...``,
exactly what a user types), then writes ``REPORT.md`` and its figures.

Runs are scheduled as a small dependency graph over ``jobs`` slots (default two,
one thread each: on 2 CPU cores two 1-thread runs side by side beat one 2-thread
run). A rerun skips finished runs and resumes an interrupted one from its last
checkpoint (the recipes do that by themselves).

What a study runs is a profile (:mod:`xlt_plugin.study.profiles`); this
module makes its corpora, runs it, and writes its manifest and report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from xlt_plugin.resources import recipes_folder
from xlt_plugin.runs import final_tests, is_finished, read_metrics, trained_epochs
from xlt_plugin.study.estimates import describe, planned_epochs
from xlt_plugin.study.profiles import PROFILES, SEEDED
from xlt_plugin.study.profiles import gpu_profile as gpu_profile  # for gpu_check.sh
from xlt_plugin.study.spec import (
    CORPUS_REF,
    FEATURES_FOLDER,
    FEATURES_REF,
    Corpus,
    Profile,
    Run,
)

logger = logging.getLogger(__name__)

# The folder this xlt_plugin is imported from (a checkout, or site-packages): the
# recipe subprocesses import the same package. The recipes: resources.py.
IMPORT_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- definitions
DEFINITION = "study_definition.json"


def definition_mismatch(folder: Path, definition: dict) -> str | None:
    """Why ``folder`` belongs to another definition of its corpus or run.

    A rerun reuses finished folders by name; after a profile changes, that would
    mix results of the old definition into the new report without a word.

    Arguments
    ---------
    folder : Path
        A corpus or run folder of a study.
    definition : dict
        What the profile says now (``asdict`` of a Corpus or Run).

    Returns
    -------
    str or None
        The differences and what to do; None when the same, or when the folder
        keeps no definition (folders of older versions).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_definition(folder, {"name": "es", "utterances": 300})
    >>> definition_mismatch(folder, {"name": "es", "utterances": 300}) is None
    True
    >>> "utterances: 300 -> 500" in definition_mismatch(
    ...     folder, {"name": "es", "utterances": 500})
    True
    """
    path = Path(folder) / DEFINITION
    if not path.exists():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    new = json.loads(json.dumps(definition))  # int keys become strings, as saved
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if not changed or _only_names_what_it_used(Path(folder), old, new):
        return None
    return (
        f"{folder} was made by another definition ({'; '.join(changed)}): delete "
        "it to make it again with the profile's current one"
    )


def _only_names_what_it_used(folder: Path, old: dict, new: dict) -> bool:
    """True when ``new`` differs from ``old`` only by overrides it adds, each equal
    to what the run used (its ``hyperparams.yaml``, written by SpeechBrain with
    the overrides applied).

    A profile that pins a recipe default before the default changes (e.g.
    ``head_calibration: none`` for the "remap as it was" start) names what the
    finished runs already trained with: they stay the same runs.
    """
    # A field the older definition lacks (a field added since) reads as None.
    rest = (set(old) | set(new)) - {"overrides"}
    before, after = old.get("overrides") or {}, new.get("overrides") or {}
    if any(old.get(k) != new.get(k) for k in rest) or any(
        after.get(k, object()) != v for k, v in before.items()
    ):
        return False
    used = _hyperparameters_used(folder)
    added = {k: v for k, v in after.items() if k not in before}
    return bool(added) and all(k in used and used[k] == v for k, v in added.items())


def _hyperparameters_used(folder: Path) -> dict:
    """The plain top-level values of a run folder's ``hyperparams.yaml`` (tagged
    ones such as ``!ref`` read as absent); empty when there is none."""
    import yaml

    path = folder / "hyperparams.yaml"
    if not path.exists():
        return {}

    class _PlainValues(yaml.SafeLoader):
        pass

    tagged = object()
    _PlainValues.add_multi_constructor("!", lambda *_: tagged)
    values = yaml.load(path.read_text(encoding="utf-8"), Loader=_PlainValues) or {}
    return {k: v for k, v in values.items() if v is not tagged}


def write_definition(folder: Path, definition: dict) -> None:
    """Keep the definition a corpus or run folder was made by."""
    path = Path(folder) / DEFINITION
    path.write_text(json.dumps(definition, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------- corpora
def make_corpora(profile: Profile, data_dir: Path, jobs: int = 2) -> dict:
    """Synthesize (or reuse) every corpus of the profile; name -> folder.

    A reused folder made by another definition of its corpus stops the study
    with the differences (see :func:`definition_mismatch`).
    """
    from xlt_plugin.synth.corpus import synthesize_corpus

    folders = {}
    for corpus in profile.corpora:
        out = data_dir / corpus.name
        folders[corpus.name] = out
        if (out / "validated.tsv").exists():
            why = definition_mismatch(out, asdict(corpus))
            if why:
                raise ValueError(f"Corpus {corpus.name}: {why}.")
            continue
        if corpus.subset_of:
            make_subset(folders[corpus.subset_of], out, corpus.train_utterances)
            write_definition(out, asdict(corpus))
            continue
        logger.info("Synthesizing %s (%d utterances)", corpus.name, corpus.utterances)
        synthesize_corpus(
            out,
            corpus.locale,
            corpus.utterances,
            seed=corpus.seed,
            accents=corpus.accents,
            domain=corpus.domain,
            vocab_size=corpus.vocab_size,
            conditions=corpus.conditions,
            jobs=jobs,
            progress=True,
        )
        write_definition(out, asdict(corpus))
    return folders


def make_subset(parent: Path, out: Path, train_utterances: int) -> Path:
    """A Common Voice folder with the first N training rows of ``parent``.

    Dev and test are the parent's; clips are symlinked, not copied.

    Arguments
    ---------
    parent : Path
        A Common Voice-layout folder.
    out : Path
        The subset folder to write.
    train_utterances : int
        Training rows to keep.

    Returns
    -------
    Path
    """
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "clips").symlink_to((parent / "clips").resolve(), target_is_directory=True)
    rows = {}
    for split in ("train", "dev", "test"):
        lines = (parent / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        if split == "train":
            if len(lines) - 1 < train_utterances:
                raise ValueError(
                    f"{parent}/train.tsv has {len(lines) - 1} rows, fewer than the "
                    f"{train_utterances} asked for"
                )
            lines = lines[: train_utterances + 1]
        rows[split] = lines
        (tmp / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    validated = rows["train"] + rows["dev"][1:] + rows["test"][1:]
    (tmp / "validated.tsv").write_text("\n".join(validated) + "\n", encoding="utf-8")
    if (parent / "clip_durations.tsv").exists():  # the same clips, so the same list
        shutil.copy2(parent / "clip_durations.tsv", tmp / "clip_durations.tsv")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


# ------------------------------------------------------------------------ runs
def run_folder(runs_dir: Path, run: Run) -> Path:
    """Output folder of a run."""
    return runs_dir / run.name


def _flow(value) -> str:
    """A value as YAML flow text (what SpeechBrain's overrides parse)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def _override_args(overrides: dict) -> list[str]:
    return [f"--{key}={_flow(value)}" for key, value in overrides.items()]


def _resolve(
    overrides: dict, folders: dict | None, features: Path | None = None
) -> dict:
    """Overrides with each :func:`corpus_ref` value replaced by that folder, and
    :data:`~xlt_plugin.study.spec.FEATURES_REF` by ``features``."""
    resolved = {}
    for key, value in overrides.items():
        if value == FEATURES_REF:
            if features is None:
                raise ValueError(
                    f"--{key}={FEATURES_REF} names a study's feature cache, which "
                    "only a study's runs have: give a folder"
                )
            value = features
        if isinstance(value, str) and value.startswith(CORPUS_REF):
            name = value.removeprefix(CORPUS_REF)
            if folders is None or name not in folders:
                raise ValueError(f"--{key} names corpus {name!r}, which is not made")
            value = folders[name]
        resolved[key] = value
    return resolved


def command(
    run: Run, data: Path, runs_dir: Path, folders: dict | None = None
) -> list[str]:
    """The exact command line of a run (what a user would type).

    ``folders`` (corpus name -> folder) fills overrides that name a corpus
    (:func:`corpus_ref`, e.g. a rehearsal's ``replay_data_folder``).
    """
    folder = recipes_folder() / run.recipe
    cmd = [
        sys.executable,
        str(folder / "train.py"),
        str(folder / "hparams" / run.hparams),
        f"--data_folder={data}",
        f"--output_folder={run_folder(runs_dir, run)}",
        "--noprogressbar",
    ]
    if run.base:
        cmd.append(f"--pretrained_path={runs_dir / run.base / 'model'}")
    features = runs_dir.parent / FEATURES_FOLDER
    return cmd + _override_args(_resolve(run.overrides, folders, features))


def reused(runs, runs_dir: Path) -> dict[str, str]:
    """The runs a study reuses or refuses: name -> "ok" (finished, same
    definition) or "not run: why" (made by another definition); the others are
    left out (they are still to run)."""
    status = {}
    for run in runs:
        folder = run_folder(runs_dir, run)
        why = definition_mismatch(folder, asdict(run))
        if why:
            status[run.name] = f"not run: {why}"
        elif is_finished(folder):
            status[run.name] = "ok"
    return status


def execute(
    profile: Profile,
    folders: dict,
    runs_dir: Path,
    jobs: int = 2,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Run every run of the profile over ``jobs`` slots; name -> "ok" | error.

    A run starts when its base has finished; a failed base fails its dependants
    (counted, reported) while independent runs go on. A folder made by another
    definition of its run is neither reused nor overwritten: it is reported. A
    run that is another's second name (``same_as``) is not trained: it gets that
    run's status, and the report reads that run's folder.
    """
    from tqdm import tqdm

    runs = {run.name: run for run in profile.trained()}
    status = reused(runs.values(), runs_dir)
    pending = [n for n in runs if n not in status]
    active: dict[str, tuple] = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(IMPORT_ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    bar = tqdm(
        total=len(runs),
        initial=len(status),
        desc=f"study {profile.name}",
        unit="run",
        disable=not progress,
    )
    while pending or active:
        for name in list(pending):
            if len(active) >= jobs:
                break
            base = runs[name].base
            if base and status.get(base) not in (None, "ok"):
                status[name] = f"skipped: base {base} failed"
                pending.remove(name)
                bar.update(1)
                continue
            if base and status.get(base) != "ok":
                continue  # wait for the base
            folder = run_folder(runs_dir, runs[name])
            folder.mkdir(parents=True, exist_ok=True)
            write_definition(folder, asdict(runs[name]))
            log = open(folder / "log.txt", "a", encoding="utf-8")
            cmd = command(runs[name], folders[runs[name].data], runs_dir, folders)
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            # The user's working directory: relative --out paths mean what they typed.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            active[name] = (proc, log, time.time())
            pending.remove(name)
        time.sleep(0.5)
        for name, (proc, log, start) in list(active.items()):
            if proc.poll() is None:
                continue
            log.close()
            del active[name]
            seconds = time.time() - start
            folder = run_folder(runs_dir, runs[name])
            if proc.returncode == 0 and is_finished(folder):
                status[name] = "ok"
                bar.write(f"done  {name:32s} {_summary(folder)} ({seconds:.0f} s)")
            else:
                status[name] = f"failed (exit {proc.returncode}, see {folder}/log.txt)"
                bar.write(f"FAIL  {name:32s} {status[name]}")
            bar.update(1)
        if (
            not active
            and pending
            and all(runs[n].base and status.get(runs[n].base) is None for n in pending)
        ):
            raise RuntimeError(f"Study runs wait on bases that never run: {pending}")
    bar.close()
    for run in profile.runs:  # a second name shares its run's status
        if run.same_as:
            status[run.name] = status[run.same_as]
    return status


def plan(profile: Profile, out: Path, jobs: int = 2) -> str:
    """What a study in ``out`` has done and has left, and the hours left.

    Example
    -------
    >>> from xlt_plugin.study.profiles import PROFILES
    >>> print(plan(PROFILES["remap_tiny"](), Path(getfixture("tmp_path"))))
    ... # doctest: +ELLIPSIS
    Profile remap_tiny: 13 runs to train (0 finished, 13 left, 0 made by another ...
    """
    from xlt_plugin.study.estimates import estimate

    trained = profile.trained()
    status = reused(trained, out / "runs")
    finished = {name for name, why in status.items() if why == "ok"}
    changed = [name for name, why in status.items() if why != "ok"]
    # A corpus is made once its validated.tsv is written (as make_corpora reuses).
    made = {
        c.name
        for c in profile.corpora
        if (out / "data" / c.name / "validated.tsv").exists()
    }
    # An interrupted run resumes from its last epoch: count only what it has left.
    epochs_done = {
        run.name: trained_epochs(read_metrics(run_folder(out / "runs", run)))
        for run in trained
        if run.name not in finished and run.name not in changed
    }
    left = estimate(profile, jobs, frozenset(finished | made), epochs_done)
    hours = "no CPU estimate"
    if left["hours"] is not None:
        hours = f"about {left['hours']:.1f} h left on {jobs} one-thread jobs"
    lines = [
        f"Profile {profile.name}: {len(trained)} runs to train ({len(finished)} "
        f"finished, {len(trained) - len(finished) - len(changed)} left, "
        f"{len(changed)} made by another definition: not run), "
        f"{len(profile.runs) - len(trained)} second names of those runs; {hours} "
        "(an estimate).",
        *(f"  changed: {name}" for name in changed),
    ]
    # Runs with a folder of their own that have not finished: running now, or
    # interrupted (a rerun resumes them first).
    begun = [
        f"{run.name} (epoch {epochs_done[run.name]} of {planned_epochs(run)})"
        for run in trained
        if run.name in epochs_done
        and (run_folder(out / "runs", run) / DEFINITION).exists()
    ]
    if begun:
        lines.append("  started, not finished: " + ", ".join(begun))
    if len(left["task_hours"]) > 1:
        lines.append(
            "  each task's last run ends in about: "
            + ", ".join(f"{t} {h:.1f} h" for t, h in left["task_hours"].items())
        )
    ratio = _measured_over_estimated(profile, trained, out / "runs", finished)
    if ratio is not None:
        lines.append(
            f"  finished runs took {ratio[0]:.2f}x their estimate (median of "
            f"{ratio[1]}; wall time from start to the run's last log line)"
        )
    return "\n".join(lines)


def _measured_over_estimated(
    profile: Profile, trained: list[Run], runs_dir: Path, finished: set
) -> tuple[float, int] | None:
    """Median of wall time / estimate over finished runs, and how many.

    A run's wall time is from its ``study_definition.json`` (written when it
    starts) to the last write of its ``log.txt``; where file times say less than
    its own clock (a run folder checked out from a pack: new times), its
    training clock (``elapsed``) and the fixed overhead.
    """
    import statistics

    from xlt_plugin.study.estimates import RUN_OVERHEAD_SECONDS, run_seconds

    ratios = []
    for run in trained:
        if run.name not in finished:
            continue
        folder = run_folder(runs_dir, run)
        start, end = folder / DEFINITION, folder / "log.txt"
        estimated = run_seconds(run, profile)
        if estimated and start.exists() and end.exists():
            wall = end.stat().st_mtime - start.stat().st_mtime
            clock = max((r.get("elapsed") or 0 for r in read_metrics(folder)),
                        default=0)  # fmt: skip
            if wall < clock:
                wall = clock + RUN_OVERHEAD_SECONDS
            ratios.append(wall / estimated)
    return (statistics.median(ratios), len(ratios)) if ratios else None


def _summary(folder: Path) -> str:
    tests = list(final_tests(read_metrics(folder)).values())
    cer = sum(r["CER"] for r in tests) / len(tests)
    return f"test CER {cer:5.1f} (best epoch {tests[-1]['epoch']})"


@dataclass
class StudyResult:
    """What :func:`run_study` did: the report and each run's status.

    Example
    -------
    >>> result = StudyResult("t", Path("REPORT.md"), {"a": "ok", "b": "failed"}, 2.0)
    >>> result.failed, result.summary()
    ({'b': 'failed'}, 'Study t: 1 runs ok, 1 not, 2.0 min. Report: REPORT.md')
    """

    profile: str
    report: Path
    status: dict[str, str]  # run name -> "ok" or why not
    minutes: float

    @property
    def failed(self) -> dict[str, str]:
        """Run name -> why it did not finish."""
        return {k: v for k, v in self.status.items() if v != "ok"}

    def summary(self) -> str:
        """One line: runs ok and not, minutes, where the report is."""
        failed = len(self.failed)
        return (
            f"Study {self.profile}: {len(self.status) - failed} runs ok, "
            f"{failed} not, {self.minutes:.1f} min. Report: {self.report}"
        )


def write_manifest(profile: Profile, folders: dict, out: Path) -> Path:
    """``study.json``: what each run is, for the report."""
    manifest = {
        "profile": profile.name,
        "description": profile.description,
        "corpora": {
            c.name: {**asdict(c), "folder": str(folders[c.name])}
            for c in profile.corpora
        },
        "runs": [asdict(run) for run in profile.runs],
        "forgetting": profile.forgetting,
    }
    path = out / "study.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def read_profile(study_dir: str | Path) -> Profile:
    """The profile a study folder's ``study.json`` describes.

    Example
    -------
    >>> from xlt_plugin.study.own_profiles import remap_tiny_profile
    >>> profile = remap_tiny_profile(1)
    >>> out = Path(getfixture("tmp_path"))
    >>> folders = {c.name: out / "data" / c.name for c in profile.corpora}
    >>> read_profile(write_manifest(profile, folders, out).parent) == profile
    True
    """
    manifest = json.loads((Path(study_dir) / "study.json").read_text("utf-8"))
    corpora = [
        Corpus(**{k: v for k, v in c.items() if k != "folder"})
        for c in manifest["corpora"].values()
    ]
    return Profile(
        manifest["profile"],
        corpora,
        [Run(**run) for run in manifest["runs"]],
        description=manifest["description"],
        forgetting=[tuple(pair) for pair in manifest.get("forgetting", [])],
    )


def task_view(study_dir: str | Path, tasks: list[str], out: str | Path) -> Path:
    """A study folder ``out`` that reports the runs of ``tasks`` of ``study_dir``.

    One task of a longer study (e.g. the ``augment`` runs of ``full``) can be
    reported and published on its own while the rest still trains: ``out`` gets
    a ``study.json`` of those runs (with the runs they reuse and their bases) and
    a link to ``study_dir``'s runs; nothing is trained or copied.

    Arguments
    ---------
    study_dir : path
        A study folder (``study.json``, ``runs/``, ``data/``).
    tasks : list of str
        The runs' ``task`` fields to keep (e.g. ``["augment"]``).
    out : path
        The view's folder (made; an older view there is replaced).

    Returns
    -------
    Path
        ``out``, ready for :func:`xlt_plugin.study.report.write_report`.

    Raises
    ------
    ValueError
        When ``study_dir`` is no study folder, no run has one of ``tasks``, or a
        run folder was made by another definition (the report would mix them).

    Example
    -------
    >>> from xlt_plugin.study.own_profiles import remap_tiny_profile
    >>> study = Path(getfixture("tmp_path")) / "study"
    >>> profile = remap_tiny_profile(1)
    >>> (study / "runs").mkdir(parents=True)
    >>> _ = write_manifest(profile, {c.name: "" for c in profile.corpora}, study)
    >>> view = task_view(study, ["base"], study.parent / "view")
    >>> [run.name for run in read_profile(view).runs]
    ['base_en']
    >>> (view / "runs").resolve() == (study / "runs").resolve()
    True
    """
    from xlt_plugin.study.full import subset

    study_dir, out = Path(study_dir).resolve(), Path(out)
    runs_dir = study_dir / "runs"
    if not (study_dir / "study.json").is_file() or not runs_dir.is_dir():
        raise ValueError(f"{study_dir} is not a study folder (study.json, runs/)")
    whole = read_profile(study_dir)
    known = sorted({run.task for run in whole.runs})
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        raise ValueError(
            f"{study_dir}: no run of task {', '.join(unknown)}; its tasks: "
            f"{', '.join(known)}"
        )
    name = f"{whole.name}: {', '.join(tasks)}"
    description = (
        f"The {', '.join(tasks)} runs of the {whole.name} study in {study_dir}, "
        f"reported on their own (the {whole.name} study's report has them all)."
    )
    profile = subset(whole, name, lambda run: run.task in tasks, description)
    refused = [why for why in reused(profile.trained(), runs_dir).values()
               if why != "ok"]  # fmt: skip
    if refused:
        raise ValueError("; ".join(refused))
    # The runs a kept run reuses (same_as) are read through it: left out, they
    # would add their own task's section to the report.
    bases = {run.base for run in profile.runs}
    profile.runs = [r for r in profile.runs if r.task in tasks or r.name in bases]
    out.mkdir(parents=True, exist_ok=True)
    link = out / "runs"
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ValueError(f"{link} exists and is not a link: choose another folder")
    link.symlink_to(runs_dir, target_is_directory=True)
    folders = {c.name: study_dir / "data" / c.name for c in profile.corpora}
    write_manifest(profile, folders, out)
    return out


def build_profile(name: str, seeds: int | None = None) -> Profile:
    """Profile ``name`` of :data:`PROFILES`, with ``seeds`` where it takes them.

    Example
    -------
    >>> len({r.seed for r in build_profile("remap_tiny", 1).runs})
    1
    """
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; use {sorted(PROFILES)}")
    build = PROFILES[name]
    return build(seeds) if seeds and name in SEEDED else build()


def run_study(
    profile_name: str = "demo",
    out: str | os.PathLike = "results/study",
    jobs: int = 2,
    threads: int = 1,
    seeds: int | None = None,
    progress: bool = True,
) -> StudyResult:
    """Synthesize, train, transfer, and write the report.

    Runs that fail are reported in the result, not raised: the report is
    written with what finished (``xlt study`` exits with status 1 then).

    Arguments
    ---------
    profile_name : str
        A key of :data:`PROFILES`: ``demo`` (default, < 30 min on 2 cores),
        ``full`` (hours), ``remap_screen``, ``remap``, ``continual``, ``tiny``...
    out : path
        Study folder: ``data/``, ``runs/``, ``REPORT.md``, ``figures/``.
    jobs : int
        Runs side by side.
    threads : int
        Torch threads per run.
    seeds : int, optional
        Seeds per transfer, for the profiles in :data:`SEEDED`; None: the
        profile's own default.
    progress : bool
        Show progress bars.

    Returns
    -------
    StudyResult
        The report, each run's status and the minutes it all took.
    """
    from xlt_plugin.study.report import write_report

    profile = build_profile(profile_name, seeds)
    out = Path(out)
    started = time.time()
    if progress:
        print(describe(profile, jobs), flush=True)
    folders = make_corpora(profile, out / "data", jobs=jobs)
    write_manifest(profile, folders, out)
    status = execute(profile, folders, out / "runs", jobs, threads, progress)
    report = write_report(out)
    minutes = (time.time() - started) / 60
    return StudyResult(profile.name, report, status, minutes)
