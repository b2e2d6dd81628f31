"""The report's markdown pieces: numbers, mean ± sd cells, tables, run labels."""

from __future__ import annotations

import math
import statistics


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean(values: list) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _mean_std(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, sd = statistics.mean(values), statistics.stdev(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _variant_label(variant: str) -> str:
    return {
        "scratch": "from scratch",
        "xfer_none": "transfer, head re-initialised (NeMo/HF behaviour)",
        "xfer": "transfer, head remapped (xlt_plugin)",
        "frozen_bn": "frozen encoder, BatchNorm trainable",
        "staged": "staged unfreezing (top-down)",
        "layerwise": "layer-wise lr decay 0.8",
    }.get(variant, variant)
