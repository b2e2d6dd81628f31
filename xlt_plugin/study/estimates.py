"""How long a profile takes: its runs, and hours of synthesis and training.

Each run's training time comes from measured speeds per encoder preset and its
corpus minutes; runs are scheduled as :func:`xlt_plugin.study.runner.execute`
does. ``xlt study`` prints :func:`describe` before it starts.
"""

from __future__ import annotations

from xlt_plugin.study.own_profiles import CLIP_SECONDS, REALISTIC
from xlt_plugin.study.spec import Corpus, Profile, Run

#: Training seconds per epoch per minute of training audio, one thread, no
#: augmentation, two runs side by side: quartznet_tiny ~25 s per epoch for 80
#: minutes; quartznet_small 2.3x that (the full study's base_small: 84 s per
#: epoch for 116 minutes); quartznet_mini 2.35x (the bases profile's first
#: epochs, tiny and mini side by side: 37 s and 87 s).
SECONDS_PER_AUDIO_MINUTE = {
    "quartznet_tiny": 25 / 80,
    "quartznet_mini": 2.35 * 25 / 80,
    "quartznet_small": 2.3 * 25 / 80,
}
#: Training cost with ``augment: True`` (each batch and its augmented copy):
#: quartznet_tiny 88 vs 42 s per epoch, quartznet_small 260 vs 120
#: (recipes/EnglishBase/README.md).
AUGMENT_FACTOR = 2.1
#: Epochs faster with the study's feature cache (``feature_cache``), per preset:
#: quartznet_tiny measured (``benchmarks/feature_cache.py``); the larger presets,
#: where the model takes a larger share of a step, are not counted faster.
FEATURE_CACHE_SPEEDUP = {"quartznet_tiny": 1.37}
#: Start, data preparation, zero-shot and final tests and export of one run.
RUN_OVERHEAD_SECONDS = 30
#: Realtime factor of ``xlt synth`` with 2 jobs (README: clean 125x, realistic 88x).
SYNTH_REALTIME = {"clean": 125.0, "realistic": 88.0}


def _preset(run: Run, runs: dict) -> str:
    """The encoder preset a run trains: its own, or its base's (a transfer)."""
    while run is not None:
        if "encoder_preset" in run.overrides:
            return run.overrides["encoder_preset"]
        run = runs.get(run.base) if run.base else None
    return "quartznet_small"  # the recipes' YAML default


def _clip_seconds(corpus: Corpus) -> float:
    seconds = CLIP_SECONDS.get(corpus.domain or corpus.locale, 4.0)
    return seconds if corpus.conditions == REALISTIC else seconds / 1.39


def _train_dev_minutes(corpus: Corpus, corpora: dict) -> tuple[float, float]:
    """Training and dev minutes of a corpus (a subset: its parent's dev)."""
    from xlt_plugin.synth.corpus import split_sizes

    parent = corpora[corpus.subset_of] if corpus.subset_of else corpus
    train, dev, _ = split_sizes(parent.utterances)
    train = corpus.train_utterances or train
    seconds = _clip_seconds(parent)
    return train * seconds / 60, dev * seconds / 60


def run_seconds(run: Run, profile: Profile) -> float | None:
    """Estimated seconds of one run on one CPU thread.

    Epochs x (training audio, grown by rehearsal, plus a forward pass over the
    dev set at a third of the cost) x the preset's speed, plus a fixed overhead.

    Arguments
    ---------
    run : Run
        A run of ``profile``.
    profile : Profile
        Its corpora give the minutes, its runs the base's encoder preset.

    Returns
    -------
    float or None
        None for a run on another device, or a preset without a speed.

    Example
    -------
    >>> from xlt_plugin.study.own_profiles import remap_screen_profile
    >>> profile = remap_screen_profile()
    >>> round(run_seconds(profile.runs[1], profile))  # 10 min of es, 25 epochs
    103
    """
    if run.overrides.get("device", "cpu") != "cpu":
        return None
    runs = {r.name: r for r in profile.runs}
    corpora = {c.name: c for c in profile.corpora}
    preset = _preset(run, runs)
    rate = SECONDS_PER_AUDIO_MINUTE.get(preset)
    if rate is None:
        return None
    if run.overrides.get("feature_cache"):
        rate /= FEATURE_CACHE_SPEEDUP.get(preset, 1.0)
    train, dev = _train_dev_minutes(corpora[run.data], corpora)
    train /= 1 - float(run.overrides.get("replay_ratio", 0.0))
    if run.overrides.get("augment"):
        train *= AUGMENT_FACTOR
    return planned_epochs(run) * rate * (train + dev / 3) + RUN_OVERHEAD_SECONDS


def planned_epochs(run: Run) -> int:
    """The epochs a run trains (its override, else the recipes' 15)."""
    return int(run.overrides.get("number_of_epochs", 15))


def estimate(
    profile: Profile,
    jobs: int = 2,
    finished: frozenset = frozenset(),
    trained_epochs: dict[str, int] | None = None,
) -> dict:
    """Runs, and the estimated hours of synthesis and training on a 2-core CPU.

    Training is scheduled as :func:`xlt_plugin.study.runner.execute` does (a run
    waits for its base, ``jobs`` side by side, in profile order) with
    :func:`run_seconds` each.

    Arguments
    ---------
    profile : Profile
    jobs : int
        Runs side by side, one thread each.
    finished : set of str
        Runs (and corpora) already made: not counted, and a finished base is
        ready from the start.
    trained_epochs : dict, optional
        Run -> epochs it has trained (an interrupted run): it resumes after
        them, so only the epochs left are counted.

    Returns
    -------
    dict
        ``runs``, ``bases``, ``synth_hours``, ``train_hours`` and ``hours``
        (None when a run is not a CPU run), and ``task_hours``: task -> hours
        from now until its last run ends (synthesis included; empty without a
        CPU estimate).

    Example
    -------
    >>> from xlt_plugin.study.own_profiles import remap_screen_profile
    >>> e = estimate(remap_screen_profile())
    >>> e["runs"], e["bases"], e["hours"] < 1.5
    (49, 1, True)
    >>> e["task_hours"]["base"] < e["task_hours"]["remap"] == e["hours"]
    True
    """
    synth = sum(
        c.utterances * _clip_seconds(c) / SYNTH_REALTIME.get(c.conditions, 88.0)
        for c in profile.corpora
        if not c.subset_of and c.name not in finished
    )
    trained = [r for r in profile.trained() if r.name not in finished]
    result = {
        "runs": len(trained),
        "bases": sum(1 for r in trained if r.task == "base"),
        "synth_hours": synth / 3600,
        "train_hours": None,
        "hours": None,
        "task_hours": {},
    }
    seconds = {r.name: run_seconds(r, profile) for r in trained}
    if None in seconds.values():
        return result
    for run in trained:
        done_epochs = min((trained_epochs or {}).get(run.name, 0), planned_epochs(run))
        if done_epochs:
            left = 1 - done_epochs / planned_epochs(run)
            overhead = RUN_OVERHEAD_SECONDS
            seconds[run.name] = (seconds[run.name] - overhead) * left + overhead
    done: dict[str, float] = dict.fromkeys(finished, 0.0)  # run -> finish time
    slots = [0.0] * max(1, jobs)
    pending = list(trained)
    while pending:
        # The next run in profile order whose base is done, on the first free slot.
        slot = min(range(len(slots)), key=slots.__getitem__)
        now = slots[slot]
        ready = [r for r in pending if not r.base or done.get(r.base, now + 1) <= now]
        if not ready:  # wait for the next base to finish
            waits = [done[r.base] for r in pending if r.base in done]
            if not waits:  # a base that no run makes: nothing more starts
                break
            slots[slot] = min(waits)
            continue
        done[ready[0].name] = slots[slot] = now + seconds[ready[0].name]
        pending.remove(ready[0])
    result["train_hours"] = max(done.values(), default=0.0) / 3600
    result["hours"] = result["synth_hours"] + result["train_hours"]
    for run in trained:
        if run.name in done:
            hours = result["synth_hours"] + done[run.name] / 3600
            # The two base ladders (English, Mandarin) are one task, far apart.
            name = f"bases {run.language}" if run.task == "bases" else run.task
            task = result["task_hours"]
            task[name] = max(task.get(name, 0.0), hours)
    return result


def describe(profile: Profile, jobs: int = 2) -> str:
    """One line: what a profile runs and about how long it takes.

    Example
    -------
    >>> from xlt_plugin.study.own_profiles import remap_screen_profile
    >>> describe(remap_screen_profile())  # doctest: +ELLIPSIS
    'Profile remap_screen: 49 runs (1 bases), 3 corpora to synthesize; ...'
    """
    e = estimate(profile, jobs)
    made = sum(1 for c in profile.corpora if not c.subset_of)
    line = (
        f"Profile {profile.name}: {e['runs']} runs ({e['bases']} bases), {made} "
        "corpora to synthesize; "
    )
    if e["hours"] is None:
        return line + "no CPU estimate (a run is not a CPU run)."
    return line + (
        f"about {e['hours']:.1f} h on {jobs} one-thread jobs of an idle 2-core CPU "
        f"(synthesis {e['synth_hours']:.1f} h, training {e['train_hours']:.1f} h; "
        "an estimate, not a measurement)."
    )
