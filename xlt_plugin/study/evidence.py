"""The study's standard of evidence: when a difference between seeds counts.

Every claim of the report holds only where the difference of the seed means
exceeds twice its standard error (:func:`compare_seeds`); :func:`_evidence`
writes the claim line.
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple


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
