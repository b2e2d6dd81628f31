"""The study's figures, drawn with matplotlib (Agg, no display): dev CER curves,
and method trade-offs (Pareto figures).

Each function takes validation curves (:func:`xlt_plugin.runs.valid_curve`) or
per-method points and writes one PNG; the report
(:mod:`xlt_plugin.study.report`) links them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: A legend label and a validation curve (:func:`xlt_plugin.runs.valid_curve`).
Curve = tuple[str, list[dict]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(ax, curve: list[dict], x: str, label: str) -> None:
    ax.plot([r[x] for r in curve], [r["CER"] for r in curve], marker="o", label=label)


def _axes(ax, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev CER (%)")
    ax.grid(alpha=0.3)


def _save(plt, fig, path: Path, rect: tuple = (0, 0, 1, 1)) -> Path:
    """Lay out (within ``rect``: room left for a legend below) and write a PNG."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _band(ax, curves: list[list[dict]], x: str, label: str) -> None:
    """Mean dev CER over seeds per epoch, with the seeds' range shaded.

    One curve: a plain line. Epochs that not every seed reached (an early stop)
    are left out of the mean. On the seconds axis each point sits at the seeds'
    mean time for that epoch.
    """
    if len(curves) == 1:
        _plot(ax, curves[0], x, label)
        return
    by_epoch: dict[int, list[dict]] = {}
    for curve in curves:
        for record in curve:
            by_epoch.setdefault(record["epoch"], []).append(record)
    epochs = [e for e in sorted(by_epoch) if len(by_epoch[e]) == len(curves)]
    xs = [sum(r[x] for r in by_epoch[e]) / len(curves) for e in epochs]
    cers = [[r["CER"] for r in by_epoch[e]] for e in epochs]
    means = [sum(c) / len(c) for c in cers]
    (line,) = ax.plot(xs, means, marker="o", label=f"{label} ({len(curves)} seeds)")
    ax.fill_between(
        xs, [min(c) for c in cers], [max(c) for c in cers], alpha=0.2,
        color=line.get_color(), linewidth=0,
    )  # fmt: skip


def convergence_figure(
    curves: Iterable[tuple[str, list[list[dict]]]], title: str, path: Path
) -> Path:
    """Dev CER per epoch (left) and per training second (right), one line a run.

    Arguments
    ---------
    curves : iterable of (str, list of list of dict)
        Legend label and the validation curves (records with ``epoch``,
        ``elapsed`` and ``CER``) of its seeds: with several, the line is their
        mean and a band spans their range.
    title : str
        The figure's title.
    path : Path
        The PNG to write.

    Returns
    -------
    Path

    Example
    -------
    >>> def curve(cers, step):
    ...     return [{"epoch": i + 1, "elapsed": step * (i + 1), "CER": c}
    ...             for i, c in enumerate(cers)]
    >>> seeds = [curve([90, 50, 30], 10.0), curve([95, 60, 34], 11.0)]
    >>> path = getfixture("tmp_path") / "c.png"
    >>> convergence_figure([("scratch", seeds)], "es", path).stat().st_size > 1000
    True
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, seeds in curves:
        _band(axes[0], seeds, "epoch", label)
        _band(axes[1], seeds, "elapsed", label)
    _axes(axes[0], "epoch")
    _axes(axes[1], "training seconds")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def dev_cer_figure(curves: Iterable[Curve], path: Path) -> Path:
    """Dev CER per epoch, one line a run (the generic report's figure).

    ``curves`` and ``path`` as for :func:`convergence_figure`; returns ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves:
        _plot(ax, curve, "epoch", label)
    _axes(ax, "epoch")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


#: A legend label, and (mean, standard deviation) of the x and y values.
Point = tuple[str, tuple[float, float], tuple[float, float]]


def pareto_figure(panels: list[tuple], title: str, path: Path) -> Path:
    """One point per method with seed error bars, one panel per measure.

    Lower is better on both axes of a panel: the points no other point beats on
    both are joined by a dashed line (the Pareto front of the seed means). Two
    panels (WER, CER) show forgetting where one measure saturates.

    Arguments
    ---------
    panels : list of (points, xlabel, ylabel)
        Each panel's points, (str, (float, float), (float, float)): legend
        label, (mean, sd) on x and (mean, sd) on y of each method; and its axis
        labels, with units.
    title : str
        The figure's title.
    path : Path
        The PNG to write.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    methods = max(len(points) for points, _, _ in panels) + 1  # and the front
    legend_rows = -(-methods // 3)
    size = (6 * len(panels), 5 + 0.25 * legend_rows)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=size)
    markers = "osD^v<>pPX*h"
    for ax, (points, xlabel, ylabel) in zip(axes[0], panels, strict=True):
        points = list(points)
        for i, (label, (x, xsd), (y, ysd)) in enumerate(points):
            ax.errorbar(x, y, xerr=xsd, yerr=ysd, fmt=markers[i % len(markers)],
                        capsize=3, label=label)  # fmt: skip
        front = sorted(
            {
                (x, y)
                for _, (x, _), (y, _) in points
                if not any(
                    (x2 <= x and y2 <= y) and (x2, y2) != (x, y)
                    for _, (x2, _), (y2, _) in points
                )
            }
        )
        if len(front) > 1:
            xs, ys = zip(*front, strict=True)
            ax.plot(xs, ys, linestyle="--", color="grey", linewidth=1,
                    label="Pareto front (means)")  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # One legend for the panels (the same methods), below them: inside a panel
    # it hid the points in its corner.
    handles, labels = max(
        (ax.get_legend_handles_labels() for ax in axes[0]), key=lambda h: len(h[1])
    )
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle(title)
    return _save(plt, fig, path, rect=(0, 0.05 * legend_rows, 1, 1))
