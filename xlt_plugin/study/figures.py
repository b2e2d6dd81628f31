"""The study's figures: dev CER curves, drawn with matplotlib (Agg, no display).

Each function takes validation curves (:func:`xlt_plugin.runs.valid_curve`) and
writes one PNG; the report (:mod:`xlt_plugin.study.report`) links them.
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


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def convergence_figure(curves: Iterable[Curve], title: str, path: Path) -> Path:
    """Dev CER per epoch (left) and per training second (right), one line a run.

    Arguments
    ---------
    curves : iterable of (str, list of dict)
        Legend label and validation curve (records with ``epoch``,
        ``elapsed`` and ``CER``) of each run.
    title : str
        The figure's title.
    path : Path
        The PNG to write.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, curve in curves:
        _plot(axes[0], curve, "epoch", label)
        _plot(axes[1], curve, "elapsed", label)
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
