"""Every study figure has axis labels with units and a legend (issue 17)."""

import re

from xlt_plugin.study import figures


def _drawn(monkeypatch):
    """The figures the next calls draw, kept open for inspection."""
    kept = []

    def keep(plt, fig, path, rect=None):
        kept.append(fig)
        fig.savefig(path, dpi=20)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def _labelled(fig):
    plotted = [ax for ax in fig.axes if ax.lines or ax.collections]
    assert plotted
    for ax in plotted:
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            # a unit in parentheses, or a count (epoch, seconds)
            assert re.search(r"\(.+\)|epoch|seconds", label), label
    assert any(ax.get_legend() is not None for ax in plotted) or fig.legends


def test_every_figure_has_axis_labels_units_and_a_legend(tmp_path, monkeypatch):
    kept = _drawn(monkeypatch)
    seeds = [
        [{"epoch": e, "elapsed": 10.0 * e, "CER": c} for e, c in enumerate(cers, 1)]
        for cers in ([90, 50, 30], [95, 60, 34])
    ]
    figures.convergence_figure([("scratch", seeds)], "es", tmp_path / "c.png")
    figures.dev_cer_figure([("run", seeds[0])], tmp_path / "d.png")
    points = [
        ("full", (10.0, 1.0), (40.0, 2.0)),
        ("adapters", (14.0, 1.0), (22.0, 1.0)),
    ]
    figures.pareto_figure(
        [(points, "target test WER (%)", "English test WER (%)"),
         (points, "target test CER (%)", "English test CER (%)")],
        "accents",
        tmp_path / "p.png",
    )  # fmt: skip
    assert len(kept) == 3
    for fig in kept:
        _labelled(fig)
    # With seeds, the learning curves carry a band (a filled area) per line.
    assert kept[0].axes[0].collections
    # The Pareto figure: a panel per measure, one legend below them for both.
    assert len(kept[2].axes) == 2 and len(kept[2].legends) == 1
    assert {t.get_text() for t in kept[2].legends[0].get_texts()} == {
        "full", "adapters", "Pareto front (means)"}  # fmt: skip
