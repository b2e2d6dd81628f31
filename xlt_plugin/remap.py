"""Source -> target token maps and the CTC head remap.

When a pretrained CTC model moves to a new alphabet, its output layer (the
"head": one row per token, blank included) must change size. NeMo's
``change_vocabulary`` and HuggingFace re-initialise every row, and SpeechBrain
refuses to load a head of another size. This module keeps what the source
model already knows: each target token starts from the row of the source token
it corresponds to (copied), or from the mean of several source rows
(averaged); the blank row is kept; only tokens with no counterpart are freshly
initialised.

Strategies (composed in order, each a fallback for tokens the earlier ones
left unmapped, e.g. ``"exact,fold"``):

* ``none``: only blank -> blank; every other row fresh (the ablation, what
  NeMo/HF do). Cannot be combined with other strategies.
* ``exact``: the same string.
* ``fold``: Unicode NFKD, combining marks stripped, a few letters NFKD keeps
  whole spelled out (æ->ae, œ->oe, ø->o, ł->l, đ/ð->d, þ->th, ı->i), case
  folded, then looked up whole: 'á'->'a', 'Ä'->'a'; a one-character token
  whose fold is several letters averages them: 'ß'->'s','s'.
* ``translit``: Cyrillic <-> Latin. Cyrillic -> Latin follows BGN/PCGN
  without diacritics (ё->yo, й/ы->y, х->kh, ц->ts, щ->shch, ...); a token whose
  romanisation is several letters starts from the mean of EVERY letter's row,
  repeats kept ('щ' -> s, h, c, h). 'ь'/'ъ' -> the apostrophe if the source has
  one, else fresh (inside a longer token they are then dropped). Latin ->
  Cyrillic (a Russian source for an English target) inverts the one-letter
  entries of that table (y->й) and reads the letters it lacks the English way
  (c/q->к, h->х, j->д,ж, w->в, x->к,с); the apostrophe -> 'ь'.
* ``opencc``: Simplified <-> Traditional / Hong Kong characters with OpenCC:
  a target token is converted with hk2s, t2s, s2hk, s2t, tw2s, s2tw in that
  order and the first conversion found in the source wins ('們' <- '们');
  multi-character results average.
* ``pieces``: the target token is tiled with the fewest source tokens (the
  longest source pieces, or its characters for a character source) and starts
  from their mean; the SentencePiece word marker '▁' (and ' ') becomes the
  source's boundary token ('▁', ' ' or '|') when no source piece covers it,
  and is dropped when the source has none.

All strategies but ``exact`` look a rewritten string up whole, then tiled as
above, exactly and then case-insensitively. No target token except the blank
ever starts from the source blank row.

Remedies (issue 13: with about an hour of target speech a re-initialised head
overtook the remapped one), all off by default so the remap stays exact:
``calibrate`` (``rescale`` the copied rows to a fresh layer's scale, or a
``temperature`` fitted on target batches), ``blend_alpha`` (copied and fresh
rows mixed) and ``copy_blank`` (:func:`adjust_rows`, :func:`fit_temperature`);
the head's learning rate, warmup and a head-only first phase live in
:mod:`xlt_plugin.freeze` and ``CTCTransferBrain``'s settings.
``benchmarks/remap_diagnostics.py`` measures what they change.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from xlt_plugin.tokens import is_han, load_tokens

logger = logging.getLogger(__name__)

KNOWN_STRATEGIES = ("none", "exact", "fold", "translit", "opencc", "pieces")
BOUNDARY_TOKENS = ("▁", " ", "|")
_SPECIAL = re.compile(r"^<[^<>]+>$")

_FOLD_EXTRA = str.maketrans(
    {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)
_CYR2LAT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo",
    "ж": "zh", "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
    "ъ": "'", "ы": "y", "ь": "'", "э": "e", "ю": "yu", "я": "ya",
    "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "w",
}  # fmt: skip
_LAT2CYR = {
    "a": "а", "b": "б", "c": "к", "d": "д", "e": "е", "f": "ф", "g": "г",
    "h": "х", "i": "и", "j": "дж", "k": "к", "l": "л", "m": "м", "n": "н",
    "o": "о", "p": "п", "q": "к", "r": "р", "s": "с", "t": "т", "u": "у",
    "v": "в", "w": "в", "x": "кс", "y": "й", "z": "з", "'": "ь",
}  # fmt: skip
_SIGNS = ("ь", "ъ")
_OPENCC_CONFIGS = ("hk2s", "t2s", "s2hk", "s2t", "tw2s", "s2tw")


def fold(text: str) -> str:
    """Accent- and case-insensitive key of a string (the ``fold`` strategy).

    Arguments
    ---------
    text : str
        Token.

    Returns
    -------
    str
        NFKD, combining marks removed, æ/œ/ø/ł/đ/ð/þ/ı spelled out, case folded.

    Example
    -------
    >>> fold("Á"), fold("ß"), fold("ñ"), fold("Æ")
    ('a', 'ss', 'n', 'ae')
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().translate(_FOLD_EXTRA)


def parse_strategy(strategy: str | Sequence[str]) -> list[str]:
    """Split a strategy spec ("exact,fold" or a list) into checked names.

    Arguments
    ---------
    strategy : str or sequence of str
        Comma-separated names, or a list of names.

    Returns
    -------
    list of str
        The strategy names in order.

    Example
    -------
    >>> parse_strategy("exact, fold")
    ['exact', 'fold']
    """
    names = strategy.split(",") if isinstance(strategy, str) else list(strategy)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    if not names:
        raise ValueError(f"empty remap strategy; known: {', '.join(KNOWN_STRATEGIES)}")
    unknown = [n for n in names if n not in KNOWN_STRATEGIES]
    if unknown:
        raise ValueError(
            f"unknown remap strateg{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(KNOWN_STRATEGIES)}"
        )
    if "none" in names and len(names) > 1:
        raise ValueError("remap strategy 'none' (all fresh) cannot be combined")
    if len(set(names)) != len(names):
        raise ValueError(f"remap strategy {names} names a strategy twice")
    return names


def _blank_index(index: int, n: int, what: str) -> int:
    """Normalise a possibly negative blank index and check it is in range."""
    if not isinstance(index, int) or not -n <= index < n:
        raise ValueError(f"{what} blank index {index!r} is outside 0..{n - 1}")
    return index % n


class _SourceIndex:
    """Lookups of strings in the source inventory (the blank excluded)."""

    def __init__(self, tokens: Sequence[str], blank: int):
        self.tokens = tokens
        self.exact: dict[str, int] = {}
        self.caseless: dict[str, int] = {}
        self.folded: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if i == blank:
                continue
            self.exact.setdefault(tok, i)
        # Own-case entries first, so "a" beats "A" for the caseless key "a".
        for tok, i in self.exact.items():
            if tok.casefold() == tok:
                self.caseless.setdefault(tok, i)
        for tok, i in self.exact.items():
            self.caseless.setdefault(tok.casefold(), i)
            self.folded.setdefault(fold(tok), i)
        self.boundary = next(
            (self.exact[b] for b in BOUNDARY_TOKENS if b in self.exact), None
        )
        self.longest = max((len(t) for t in self.exact), default=1)

    def _tile(self, text: str, table: dict[str, int]) -> list[int] | None:
        """Fewest source tokens that spell ``text`` (special tokens skipped)."""
        n = len(text)
        best: list[tuple[int, list[int]] | None] = [None] * (n + 1)
        best[0] = (0, [])
        for i in range(n):
            if best[i] is None:
                continue
            cost, path = best[i]
            steps = []
            for j in range(min(n, i + self.longest), i, -1):
                idx = table.get(text[i:j])
                if idx is not None and not _SPECIAL.match(self.tokens[idx]):
                    steps.append((j, [idx]))
            if text[i] in BOUNDARY_TOKENS:
                marker = [] if self.boundary is None else [self.boundary]
                steps.append((i + 1, marker))
            for j, add in steps:
                if best[j] is None or cost + 1 < best[j][0]:
                    best[j] = (cost + 1, path + add)
        return best[n][1] if best[n] is not None and best[n][1] else None

    def resolve(self, text: str) -> list[int] | None:
        """Whole match, else tiling, first exact then case-insensitive."""
        if not text:
            return None
        if text in self.exact:
            return [self.exact[text]]
        return self._tile(text, self.exact) or self._tile(
            text.casefold(), self.caseless
        )


def _map_exact(token: str, src: _SourceIndex) -> list[int] | None:
    return [src.exact[token]] if token in src.exact else None


def _map_fold(token: str, src: _SourceIndex) -> list[int] | None:
    key = fold(token)
    if key in src.folded:
        return [src.folded[key]]
    # Only a one-character token may spread over letters ('ß' -> 's', 's');
    # spelling out longer tokens is the job of `pieces`.
    return src.resolve(key) if len(token) == 1 else None


def _map_translit(token: str, src: _SourceIndex) -> list[int] | None:
    low = token.lower()
    letters = [c for c in low if c.isalpha()]
    if letters and all(c in _CYR2LAT for c in letters):
        if low in _SIGNS:
            return src.resolve("'")
        keep_signs = "'" in src.exact
        table = {
            c: ("" if c in _SIGNS and not keep_signs else r)
            for c, r in _CYR2LAT.items()
        }
        return src.resolve("".join(table.get(c, c) for c in low))
    if (letters and all(c in _LAT2CYR for c in letters)) or low == "'":
        return src.resolve("".join(_LAT2CYR.get(c, c) for c in low))
    return None


@functools.cache
def _opencc(config: str):
    from xlt_plugin.extras import require

    return require("opencc", "the remap strategy 'opencc'").OpenCC(config)


def _map_opencc(token: str, src: _SourceIndex) -> list[int] | None:
    if not any(is_han(c) for c in token):
        return None
    # A character written the same in both scripts converts to itself ('家'
    # under hk2s): that conversion is looked up too, so `opencc` alone maps it.
    for config in _OPENCC_CONFIGS:
        found = src.resolve(_opencc(config).convert(token))
        if found:
            return found
    return None


def _map_pieces(token: str, src: _SourceIndex) -> list[int] | None:
    return src.resolve(token)


_STRATEGIES: dict[str, Callable[[str, _SourceIndex], list[int] | None]] = {
    "exact": _map_exact,
    "fold": _map_fold,
    "translit": _map_translit,
    "opencc": _map_opencc,
    "pieces": _map_pieces,
}


@dataclass
class TokenMap:
    """Where each target token starts from.

    Arguments
    ---------
    sources : list of list of int
        Per target token, the source rows it starts from (their mean);
        empty = freshly initialised.
    how : list of str or None
        Per target token, the strategy that mapped it ("blank" for the blank),
        None if fresh.
    n_source : int
        Number of source tokens (rows of the source head).
    source_blank : int
        Source blank index (non-negative).
    target_blank : int
        Target blank index (non-negative).

    Example
    -------
    >>> m = token_map(["<blank>", "a"], ["<blank>", "a", "b"])
    >>> m.sources, m.how
    ([[0], [1], []], ['blank', 'exact', None])
    """

    sources: list[list[int]]
    how: list[str | None]
    n_source: int
    source_blank: int = 0
    target_blank: int = 0

    @property
    def n_target(self) -> int:
        """Number of target tokens."""
        return len(self.sources)


def token_map(
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    strategy: str | Sequence[str] = "exact",
    source_blank: int = 0,
    target_blank: int = 0,
) -> TokenMap:
    """Map every target token to the source token rows it starts from.

    Arguments
    ---------
    source_tokens : sequence of str
        Source inventory (index = source head row).
    target_tokens : sequence of str
        Target inventory (index = target head row).
    strategy : str or sequence of str
        Strategy names in order of preference, e.g. "exact,fold" (see the
        module docstring); each maps only tokens the earlier ones left.
    source_blank : int
        Blank index in the source (negative counts from the end: -1 for
        NeMo's blank-last layout).
    target_blank : int
        Blank index in the target.

    Returns
    -------
    TokenMap
        Sources and strategy per target token.

    Example
    -------
    >>> src = ["<blank>", " ", "a", "n", "s"]
    >>> m = token_map(src, ["<blank>", "a", "ñ", "ß", "ü"], "exact,fold")
    >>> m.sources
    [[0], [2], [3], [4, 4], []]
    >>> m.how
    ['blank', 'exact', 'fold', 'fold', None]
    """
    names = parse_strategy(strategy)
    source_tokens, target_tokens = list(source_tokens), list(target_tokens)
    if not source_tokens or not target_tokens:
        raise ValueError(
            f"token lists must be non-empty (source: {len(source_tokens)}, "
            f"target: {len(target_tokens)} tokens)"
        )
    sb = _blank_index(source_blank, len(source_tokens), "source")
    tb = _blank_index(target_blank, len(target_tokens), "target")
    src = _SourceIndex(source_tokens, sb)

    sources: list[list[int]] = []
    how: list[str | None] = []
    for t, token in enumerate(target_tokens):
        if t == tb:
            sources.append([sb])
            how.append("blank")
            continue
        found, used = [], None
        for name in names:
            if name == "none":
                break
            found = _STRATEGIES[name](token, src) or []
            if found:
                used = name
                break
        if sb in found:  # unreachable by construction; guards the contract
            raise AssertionError(f"token {token!r} mapped to the source blank")
        sources.append(found)
        how.append(used)
    return TokenMap(sources, how, len(source_tokens), sb, tb)


@dataclass
class RemapReport:
    """What a remap did, for logs and for the study's tables.

    ``blank + copied + averaged + fresh == n_target`` and
    ``sum(by_strategy.values()) == n_target`` (by_strategy counts "blank"
    and "fresh" too).

    Arguments
    ---------
    n_source : int
        Source tokens.
    n_target : int
        Target tokens.
    strategy : str
        The strategy spec, comma-joined.
    blank : int
        Blank rows kept (1).
    copied : int
        Target tokens copied from one source row.
    averaged : int
        Target tokens averaged over several source rows.
    fresh : int
        Freshly initialised target tokens.
    by_strategy : dict
        Count per strategy name (plus "blank" and "fresh").
    fresh_tokens : list of str
        The fresh target tokens.
    averaged_tokens : list of dict
        {"token", "sources" (source token strings), "how"} per averaged token.
    mapped_rows : list of int
        Target rows that start from the source head (the blank's included
        unless ``copy_blank`` is false).
    remedies : dict
        What :func:`adjust_rows` did (empty when nothing): ``calibrate``,
        ``scale`` (rescale factor), ``blend_alpha``, ``copy_blank``, and
        ``temperature`` once :func:`fit_temperature` ran.

    Example
    -------
    >>> rep = RemapReport.from_map(
    ...     token_map(["<blank>", "s"], ["<blank>", "ß", "x"], "exact,fold"),
    ...     ["<blank>", "s"], ["<blank>", "ß", "x"], "exact,fold")
    >>> rep.averaged, rep.fresh, rep.fresh_tokens
    (1, 1, ['x'])
    """

    n_source: int
    n_target: int
    strategy: str
    blank: int
    copied: int
    averaged: int
    fresh: int
    by_strategy: dict[str, int] = field(default_factory=dict)
    fresh_tokens: list[str] = field(default_factory=list)
    averaged_tokens: list[dict] = field(default_factory=list)
    mapped_rows: list[int] = field(default_factory=list)
    remedies: dict = field(default_factory=dict)

    @classmethod
    def from_map(
        cls,
        tmap: TokenMap,
        source_tokens: Sequence[str],
        target_tokens: Sequence[str],
        strategy: str | Sequence[str],
    ) -> RemapReport:
        """Summarise a :class:`TokenMap`.

        Arguments
        ---------
        tmap : TokenMap
            The map.
        source_tokens : sequence of str
            Source inventory.
        target_tokens : sequence of str
            Target inventory.
        strategy : str or sequence of str
            The strategy spec used.

        Returns
        -------
        RemapReport
            The summary.
        """
        by: dict[str, int] = {}
        copied = averaged = fresh = 0
        fresh_tokens, averaged_tokens = [], []
        for t, (srcs, how) in enumerate(zip(tmap.sources, tmap.how, strict=True)):
            key = how or "fresh"
            by[key] = by.get(key, 0) + 1
            if how == "blank":
                continue
            if not srcs:
                fresh += 1
                fresh_tokens.append(target_tokens[t])
            elif len(srcs) == 1:
                copied += 1
            else:
                averaged += 1
                averaged_tokens.append(
                    {
                        "token": target_tokens[t],
                        "sources": [source_tokens[s] for s in srcs],
                        "how": how,
                    }
                )
        return cls(
            n_source=tmap.n_source,
            n_target=tmap.n_target,
            strategy=",".join(parse_strategy(strategy)),
            blank=by.get("blank", 0),
            copied=copied,
            averaged=averaged,
            fresh=fresh,
            by_strategy=by,
            fresh_tokens=fresh_tokens,
            averaged_tokens=averaged_tokens,
            mapped_rows=[t for t, srcs in enumerate(tmap.sources) if srcs],
        )

    def as_dict(self) -> dict:
        """JSON-serialisable dict of every field.

        Returns
        -------
        dict
            The report.
        """
        return asdict(self)

    def __str__(self) -> str:
        def some(items: list[str], limit: int = 20) -> str:
            more = f", ... (+{len(items) - limit})" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        strategies = ", ".join(
            f"{k} {v}"
            for k, v in self.by_strategy.items()
            if k not in ("blank", "fresh")
        )
        text = (
            f"CTC head remap [{self.strategy}]: {self.n_target} target tokens from "
            f"{self.n_source} source tokens: blank kept, {self.copied} copied, "
            f"{self.averaged} averaged, {self.fresh} fresh"
            f" (by strategy: {strategies or 'none'})."
        )
        if self.fresh_tokens:
            text += f" Fresh: {some([repr(t) for t in self.fresh_tokens])}."
        if self.remedies:
            text += (
                " Remedies: "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in self.remedies.items()
                )
                + "."
            )
        if self.averaged_tokens:
            avg = [
                f"{a['token']!r}<-{'+'.join(map(repr, a['sources']))}"
                for a in self.averaged_tokens
            ]
            text += f" Averaged: {some(avg)}."
        return text


def remap_rows(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tmap: TokenMap,
    fresh_weight: torch.Tensor,
    fresh_bias: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Build the target head's parameters from the source head's (core logic).

    Row ``t`` of the result is the mean of the source rows ``tmap.sources[t]``
    (a copy when there is one), or ``fresh_weight[t]`` when there is none.
    Rows are along dim 0, so Linear ([out, in]) and Conv1d ([out, in, 1])
    weights both work. Inputs are not modified.

    Arguments
    ---------
    weight : torch.Tensor
        Source weight, ``[n_source, ...]``.
    bias : torch.Tensor or None
        Source bias ``[n_source]``.
    tmap : TokenMap
        The token map.
    fresh_weight : torch.Tensor
        Freshly initialised weight ``[n_target, ...]``.
    fresh_bias : torch.Tensor or None
        Freshly initialised bias ``[n_target]`` (None iff ``bias`` is None).

    Returns
    -------
    weight : torch.Tensor
        Target weight (new tensor, dtype/device of ``fresh_weight``).
    bias : torch.Tensor or None
        Target bias.

    Example
    -------
    >>> tmap = TokenMap([[0], [1, 2], []], ["blank", "fold", None], 3)
    >>> w, b = remap_rows(torch.eye(3), torch.arange(3.0), tmap,
    ...                   torch.full((3, 3), 9.0), torch.full((3,), 9.0))
    >>> w
    tensor([[1.0000, 0.0000, 0.0000],
            [0.0000, 0.5000, 0.5000],
            [9.0000, 9.0000, 9.0000]])
    >>> b
    tensor([0.0000, 1.5000, 9.0000])
    """
    if weight.shape[0] != tmap.n_source:
        raise ValueError(
            f"source head has {weight.shape[0]} rows but the token map has "
            f"{tmap.n_source} source tokens"
        )
    if fresh_weight.shape[0] != tmap.n_target:
        raise ValueError(
            f"target head has {fresh_weight.shape[0]} rows but the token map has "
            f"{tmap.n_target} target tokens"
        )
    if weight.shape[1:] != fresh_weight.shape[1:]:
        raise ValueError(
            f"source rows have shape {tuple(weight.shape[1:])} but target rows "
            f"{tuple(fresh_weight.shape[1:])}: the heads' input sizes differ"
        )
    if (bias is None) != (fresh_bias is None):
        raise ValueError("one head has a bias and the other has none")

    with torch.no_grad():
        new_weight = fresh_weight.detach().clone()
        new_bias = None if fresh_bias is None else fresh_bias.detach().clone()
        weight = weight.detach().to(new_weight)
        bias = None if bias is None else bias.detach().to(new_weight)
        for t, srcs in enumerate(tmap.sources):
            if not srcs:
                continue
            idx = torch.as_tensor(srcs, device=weight.device)
            # A single source: index, no arithmetic, so the copy is bit-exact.
            new_weight[t] = weight[srcs[0]] if len(srcs) == 1 else weight[idx].mean(0)
            if new_bias is not None:
                new_bias[t] = bias[srcs[0]] if len(srcs) == 1 else bias[idx].mean(0)
    return new_weight, new_bias


CALIBRATIONS = ("none", "rescale", "temperature")


def check_remedies(
    calibrate: str = "none", blend_alpha: float = 1.0, copy_blank: bool = True
) -> tuple[str, float, bool]:
    """Validate the row-level remedies' settings (see :func:`adjust_rows`).

    Arguments
    ---------
    calibrate : str
        ``none``, ``rescale`` or ``temperature``.
    blend_alpha : float
        In [0, 1].
    copy_blank : bool
        Whether the blank row is copied.

    Returns
    -------
    tuple
        ``(calibrate, blend_alpha, copy_blank)``, normalised.

    Example
    -------
    >>> check_remedies("Rescale", 1, True)
    ('rescale', 1.0, True)
    """
    name = str(calibrate if calibrate is not None else "none").strip().lower()
    if name not in CALIBRATIONS:
        raise ValueError(
            f"unknown head calibration {calibrate!r}; known: {', '.join(CALIBRATIONS)}"
        )
    alpha = float(blend_alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"blend_alpha must be in [0, 1], got {blend_alpha!r}")
    if not isinstance(copy_blank, bool):
        raise ValueError(f"copy_blank must be true or false, got {copy_blank!r}")
    return name, alpha, copy_blank


def adjust_rows(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    fresh_weight: torch.Tensor,
    fresh_bias: torch.Tensor | None,
    rows: Sequence[int],
    blank: int,
    *,
    calibrate: str = "none",
    blend_alpha: float = 1.0,
    copy_blank: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """The row-level remedies for a remapped head, applied to its mapped rows.

    A remapped head starts with rows trained on the source (large norms,
    confident logits) next to fresh ones (small); these settings bring the
    copied rows nearer a fresh start. In this order, on the ``rows`` that came
    from the source (``RemapReport.mapped_rows``):

    1. ``copy_blank=False``: the blank row is set back to its fresh value and
       left out of the steps below.
    2. ``calibrate="rescale"``: every mapped row, weight and bias, is
       multiplied by one factor ``s`` = RMS of the fresh weight / RMS of the
       mapped rows' weights, so they have a fresh layer's scale. Their logits
       are the source's times ``s``: the argmax over them is unchanged.
       (``"temperature"`` needs target data: :func:`fit_temperature`, which
       ``CTCTransferBrain`` runs at fit start; here it changes nothing.)
    3. ``blend_alpha``: mapped rows become ``alpha * row + (1 - alpha) *
       fresh``; 1 keeps them (bit-exact), 0 gives the fresh head's rows.

    With the defaults nothing changes (the tensors are returned as given).

    Arguments
    ---------
    weight, bias : torch.Tensor
        The remapped head's weight ``[n_target, ...]`` and bias (or None).
    fresh_weight, fresh_bias : torch.Tensor
        The fresh initialisation of the same head.
    rows : sequence of int
        Rows that came from the source (the blank's included if copied).
    blank : int
        Target blank row.
    calibrate : str
        ``none``, ``rescale`` or ``temperature``.
    blend_alpha : float
        Weight of the copied rows in the blend, in [0, 1].
    copy_blank : bool
        Keep the source's blank row (True) or start it fresh.

    Returns
    -------
    weight, bias : torch.Tensor
        New tensors (or the inputs when nothing changes).
    info : dict
        What was done (empty when nothing): see ``RemapReport.remedies``.

    Example
    -------
    >>> w, b = torch.full((3, 2), 4.0), torch.ones(3)
    >>> fw, fb = torch.full((3, 2), 0.5), torch.zeros(3)
    >>> w2, b2, info = adjust_rows(w, b, fw, fb, [0, 1], 0, calibrate="rescale",
    ...                            copy_blank=False)
    >>> w2[:, 0].tolist(), b2.tolist(), info["scale"]
    ([0.5, 0.5, 4.0], [0.0, 0.125, 1.0], 0.125)
    >>> w3, _, _ = adjust_rows(w, b, fw, fb, [0, 1], 0, blend_alpha=0.25)
    >>> w3[:, 0].tolist()
    [1.375, 1.375, 4.0]
    """
    calibrate, alpha, copy_blank = check_remedies(calibrate, blend_alpha, copy_blank)
    info: dict = {}
    rows = [int(r) for r in rows]
    if not (calibrate != "none" or alpha != 1.0 or not copy_blank):
        return weight, bias, info
    with torch.no_grad():
        weight = weight.detach().clone()
        bias = None if bias is None else bias.detach().clone()
        fresh_weight = fresh_weight.detach().to(weight)
        fresh_bias = None if fresh_bias is None else fresh_bias.detach().to(weight)
        if not copy_blank and blank in rows:
            weight[blank] = fresh_weight[blank]
            if bias is not None:
                bias[blank] = fresh_bias[blank]
            rows = [r for r in rows if r != blank]
        info["copy_blank"] = copy_blank
        idx = torch.as_tensor(rows, dtype=torch.long, device=weight.device)
        if calibrate == "rescale" and rows:
            mapped_rms = weight[idx].pow(2).mean().sqrt()
            scale = float(
                fresh_weight.pow(2).mean().sqrt() / mapped_rms.clamp_min(1e-12)
            )
            weight[idx] *= scale
            if bias is not None:
                bias[idx] *= scale
            info["scale"] = scale
        info["calibrate"] = calibrate
        if alpha != 1.0 and rows:
            weight[idx] = alpha * weight[idx] + (1.0 - alpha) * fresh_weight[idx]
            if bias is not None:
                bias[idx] = alpha * bias[idx] + (1.0 - alpha) * fresh_bias[idx]
        info["blend_alpha"] = alpha
    return weight, bias, info


def fit_temperature(
    batches: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    rows: Sequence[int],
    blank: int,
    grid: Sequence[float] | None = None,
) -> float:
    """One temperature for the mapped rows that minimises the CTC loss.

    The logits of ``rows`` are divided by ``T`` (the other rows, e.g. fresh
    ones, unchanged), and ``T`` is the value of ``grid`` with the lowest summed
    CTC loss on ``batches`` (ties go to the value nearest 1). Dividing a group
    of logits by one positive number keeps their order, so the argmax over the
    mapped rows is the same on every input. Apply it with
    :func:`apply_temperature`.

    Arguments
    ---------
    batches : sequence of tuples
        ``(logits [B, T, V], input_lengths [B], targets [B, L], target_lengths
        [B])``, lengths in frames and tokens (integers).
    rows : sequence of int
        The rows to scale (``RemapReport.mapped_rows``).
    blank : int
        CTC blank index.
    grid : sequence of float, optional
        Candidate temperatures; default 81 values from 0.2 to 20 (log-spaced)
        and 1.

    Returns
    -------
    float
        The temperature.

    Example
    -------
    >>> torch.manual_seed(0) is not None
    True
    >>> logits = torch.randn(2, 12, 4) * 8  # over-confident rows
    >>> batch = (logits, torch.tensor([12, 12]), torch.tensor([[1, 2], [3, 1]]),
    ...          torch.tensor([2, 2]))
    >>> fit_temperature([batch], rows=[0, 1, 2, 3], blank=0) > 1
    True
    """
    if grid is None:
        grid = sorted({1.0, *torch.logspace(-0.69897, 1.30103, 81).tolist()})
    rows = [int(r) for r in rows]
    if not rows or not batches:
        return 1.0
    best_t, best_loss = 1.0, None
    with torch.no_grad():
        for temp in sorted(grid, key=lambda t: abs(math.log(t))):
            total = 0.0
            for logits, in_lens, targets, tgt_lens in batches:
                scale = torch.ones(logits.shape[-1], dtype=logits.dtype)
                scale[rows] = 1.0 / float(temp)
                log_probs = torch.log_softmax(logits * scale.to(logits.device), -1)
                total += float(
                    torch.nn.functional.ctc_loss(
                        log_probs.transpose(0, 1),
                        targets,
                        in_lens,
                        tgt_lens,
                        blank=blank,
                        reduction="sum",
                        zero_infinity=True,
                    )
                )
            if best_loss is None or total < best_loss - 1e-9 * abs(best_loss):
                best_t, best_loss = float(temp), total
    return best_t


def apply_temperature(layer: torch.nn.Module, rows: Sequence[int], temperature: float):
    """Divide the weight and bias of ``rows`` of the head ``layer`` by ``temperature``.

    Arguments
    ---------
    layer : torch.nn.Module
        The head (or a module holding its one Linear/1x1 Conv1d), in place.
    rows : sequence of int
        Rows to scale.
    temperature : float
        Positive.

    Example
    -------
    >>> head = torch.nn.Linear(2, 3)
    >>> x = torch.randn(5, 2)
    >>> before = head(x)[:, :2].argmax(-1)
    >>> apply_temperature(head, [0, 1], 4.0)
    >>> torch.equal(head(x)[:, :2].argmax(-1), before)
    True
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    _, core = _core_layer(layer)
    idx = torch.as_tensor([int(r) for r in rows], dtype=torch.long)
    with torch.no_grad():
        core.weight[idx] /= temperature
        if core.bias is not None:
            core.bias[idx] /= temperature


def _core_layer(head: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The one Linear or 1x1 Conv1d inside ``head`` (name, layer)."""
    if not isinstance(head, torch.nn.Module):
        raise TypeError(
            f"CTC head must be a torch.nn.Module, got {type(head).__name__}"
        )
    kinds = (torch.nn.Linear, torch.nn.Conv1d)
    found = [(n, m) for n, m in head.named_modules() if isinstance(m, kinds)]
    if len(found) != 1:
        raise TypeError(
            f"CTC head {type(head).__name__} must hold exactly one Linear or 1x1 "
            f"Conv1d layer, found {len(found)}: {[n or '<self>' for n, _ in found]}"
        )
    name, layer = found[0]
    if isinstance(layer, torch.nn.Conv1d) and (
        layer.kernel_size != (1,) or layer.groups != 1
    ):
        raise TypeError(
            f"Conv1d head must have kernel_size 1 and groups 1, got "
            f"kernel_size={layer.kernel_size}, groups={layer.groups}"
        )
    return name, layer


def _fresh_layer(layer: torch.nn.Module, n_out: int) -> torch.nn.Module:
    """A new layer like ``layer`` with ``n_out`` rows, initialised by torch."""
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    has_bias = layer.bias is not None
    if isinstance(layer, torch.nn.Linear):
        fresh = torch.nn.Linear(layer.in_features, n_out, bias=has_bias, **factory)
    else:
        fresh = torch.nn.Conv1d(
            layer.in_channels,
            n_out,
            kernel_size=1,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=has_bias,
            padding_mode=layer.padding_mode,
            **factory,
        )
    fresh.train(layer.training)
    return fresh


def _describe(tokens) -> str:
    """Where a token inventory comes from, for error messages."""
    if isinstance(tokens, (str, os.PathLike)):
        return f"token file {tokens}"
    if isinstance(tokens, (list, tuple)):
        return f"the given list of {len(tokens)} tokens"
    return f"the {type(tokens).__name__} object"


def _is_row_weight(key: str, value) -> bool:
    """A Linear weight (2-D) or a 1x1 Conv1d weight (3-D, last dim 1)."""
    return (
        (key == "weight" or key.endswith(".weight"))
        and isinstance(value, torch.Tensor)
        and (value.dim() == 2 or (value.dim() == 3 and value.shape[-1] == 1))
    )


def _shapes(state: Mapping, keys) -> str:
    shown = [f"{k} {tuple(state[k].shape)}" for k in list(keys)[:12]]
    more = f", ... (+{len(keys) - 12})" if len(keys) > 12 else ""
    return ", ".join(shown) + more if shown else "none"


def _find_head(
    state: Mapping,
    layer_name: str,
    n_rows: int,
    with_bias: bool,
    key: str | None,
    where: str,
) -> tuple[str, str]:
    """Keys (weight, bias) of the source head inside a checkpoint's state dict.

    ``key`` (a weight's key, or the prefix of the head's keys) narrows the
    search. The key a head of the target's type has (``w.weight``) wins when
    present; else the head is the only 2-D Linear or 3-D 1x1 Conv1d weight with
    ``n_rows`` rows (plus its bias when the target has one), e.g. ``1.w.weight``
    of a ``ModuleList`` (encoder, head) saved whole.
    """
    if key is not None and key in state and _is_row_weight(key, state[key]):
        found = [key]
    else:
        prefix = "" if not key else key.rstrip(".") + "."
        scoped = [k for k in state if k.startswith(prefix)]
        if not scoped:
            raise ValueError(
                f"{where} has no key under {key!r}; its keys start with "
                f"{sorted({k.split('.')[0] for k in state})[:12]}"
            )
        wanted = [prefix + (f"{layer_name}.weight" if layer_name else "weight")]
        if prefix:
            wanted.append(prefix + "weight")
        found = [k for k in wanted if k in state][:1]
        if not found:
            weights = [k for k in scoped if _is_row_weight(k, state[k])]
            found = [
                k
                for k in weights
                if state[k].shape[0] == n_rows
                and (not with_bias or k[: -len("weight")] + "bias" in state)
            ]
            if len(found) != 1:
                what = "several" if found else "no"
                raise ValueError(
                    f"{where} has {what} CTC head candidates: a 2-D Linear or 3-D "
                    f"1x1 Conv1d weight with {n_rows} rows, one per source token"
                    f"{', with its bias' if with_bias else ''}. Candidates: "
                    f"{_shapes(state, found)}; row weights in the checkpoint: "
                    f"{_shapes(state, weights)}. Name the head with `key` (its "
                    "weight's key, or the prefix of its keys, e.g. key: 1 for a "
                    "ModuleList saved whole), or check the source tokens."
                )
    wkey = found[0]
    return wkey, wkey[: -len("weight")] + "bias"


def _remap(
    layer: torch.nn.Module,
    state: Mapping,
    source_tokens,
    target_tokens,
    strategy: str | Sequence[str],
    source_blank: int,
    target_blank: int,
    *,
    layer_name: str = "",
    key: str | None = None,
    where: str = "the source head",
    calibrate: str = "none",
    blend_alpha: float = 1.0,
    copy_blank: bool = True,
) -> RemapReport:
    """Fill the target ``layer`` in place from the source head in ``state``.

    The one remap behind :func:`remap_ctc_head` and :class:`RemapHeadHook`:
    reads both inventories, finds the source head in ``state``
    (:func:`_find_head`), checks the rows of both heads against their tokens,
    maps the tokens and copies (or averages) the mapped rows into ``layer``;
    rows without a source keep ``layer``'s values, which are also the fresh
    values the remedies of :func:`adjust_rows` use.
    """
    src_tokens = load_tokens(source_tokens)
    tgt_tokens = load_tokens(target_tokens)
    if not tgt_tokens:
        raise ValueError(
            f"target tokens ({_describe(target_tokens)}) are empty: fill "
            "the label encoder before pretrainer.load_collected()"
        )
    has_bias = layer.bias is not None
    wkey, bkey = _find_head(state, layer_name, len(src_tokens), has_bias, key, where)
    weight = state[wkey]
    if has_bias and bkey not in state:
        raise ValueError(f"the target head has a bias but {where} has no {bkey!r}")
    bias = state[bkey] if has_bias else None
    if weight.shape[0] != len(src_tokens):
        raise ValueError(
            f"{where} has {weight.shape[0]} rows but {_describe(source_tokens)} "
            f"lists {len(src_tokens)} tokens; the token file must list one token "
            "per head row, blank included"
        )
    if layer.weight.shape[0] != len(tgt_tokens):
        raise ValueError(
            f"target head has {layer.weight.shape[0]} rows but "
            f"{_describe(target_tokens)} lists {len(tgt_tokens)} tokens; the token "
            "file must list exactly one token per head row, blank included"
        )
    if (
        weight.dim() != layer.weight.dim()
        and weight[0].numel() == layer.weight[0].numel()
    ):
        # A Conv1d [rows, C, 1] source into a Linear [rows, C] target, or back.
        weight = weight.reshape(weight.shape[0], *layer.weight.shape[1:])
    tmap = token_map(src_tokens, tgt_tokens, strategy, source_blank, target_blank)
    try:
        new_weight, new_bias = remap_rows(weight, bias, tmap, layer.weight, layer.bias)
    except ValueError as err:
        raise ValueError(f"cannot remap {where} into the head: {err}") from err
    report = RemapReport.from_map(tmap, src_tokens, tgt_tokens, strategy)
    fresh_weight = layer.weight.detach().clone()
    fresh_bias = None if layer.bias is None else layer.bias.detach().clone()
    with torch.no_grad():
        layer.weight.copy_(new_weight)
        if new_bias is not None:
            layer.bias.copy_(new_bias)
    adjust_head(
        layer,
        fresh_weight,
        fresh_bias,
        report,
        tmap.target_blank,
        calibrate=calibrate,
        blend_alpha=blend_alpha,
        copy_blank=copy_blank,
    )
    return report


def adjust_head(
    head: torch.nn.Module,
    fresh_weight: torch.Tensor,
    fresh_bias: torch.Tensor | None,
    report: RemapReport,
    blank: int,
    *,
    calibrate: str = "none",
    blend_alpha: float = 1.0,
    copy_blank: bool = True,
) -> RemapReport:
    """:func:`adjust_rows` on a remapped head in place; ``report`` updated.

    For a caller that remapped ``head`` already and kept its fresh
    initialisation (``CTCTransferBrain`` does, for a model loaded without a
    ``Pretrainer``). ``report.remedies`` records what was done, and
    ``report.mapped_rows`` loses the blank when ``copy_blank`` is False.

    Arguments
    ---------
    head : torch.nn.Module
        The remapped head (or a module holding its one Linear/1x1 Conv1d).
    fresh_weight, fresh_bias : torch.Tensor
        Its values before the remap.
    report : RemapReport
        The remap's report (its ``mapped_rows``).
    blank : int
        Target blank row.
    calibrate, blend_alpha, copy_blank
        See :func:`adjust_rows`.

    Returns
    -------
    RemapReport
        ``report``, updated.

    Example
    -------
    >>> head = torch.nn.Linear(2, 3)
    >>> fresh_w, fresh_b = head.weight.detach().clone(), head.bias.detach().clone()
    >>> rep = RemapReport(3, 3, "exact", 1, 1, 0, 1, mapped_rows=[0, 1])
    >>> _ = adjust_head(head, fresh_w, fresh_b, rep, 0, copy_blank=False)
    >>> rep.mapped_rows, rep.remedies["copy_blank"]
    ([1], False)
    """
    _, layer = _core_layer(head)
    weight, bias, info = adjust_rows(
        layer.weight,
        layer.bias,
        fresh_weight.reshape(layer.weight.shape),
        fresh_bias,
        report.mapped_rows,
        blank,
        calibrate=calibrate,
        blend_alpha=blend_alpha,
        copy_blank=copy_blank,
    )
    if info:
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        if not info["copy_blank"]:
            report.mapped_rows = [r for r in report.mapped_rows if r != blank]
    report.remedies = info
    return report


def remap_ctc_head(
    head: torch.nn.Module,
    source_tokens,
    target_tokens,
    strategy: str | Sequence[str] = "exact",
    blank_index: int = 0,
    source_blank: int | None = None,
    target_blank: int | None = None,
    calibrate: str = "none",
    blend_alpha: float = 1.0,
    copy_blank: bool = True,
) -> tuple[torch.nn.Module, RemapReport]:
    """A new CTC head for the target inventory, started from ``head``.

    Mapped rows (weight and bias) are copied, or averaged over several source
    rows; the blank row is kept; the other rows come from a fresh layer of the
    target size built the way torch builds the layer (its own
    ``reset_parameters``). ``head`` is not modified.

    Arguments
    ---------
    head : torch.nn.Module
        ``torch.nn.Linear``, SpeechBrain ``Linear`` (``.w``), a 1x1
        ``Conv1d`` (NeMo's decoder) or any module holding exactly one of them.
    source_tokens : list of str, path, encoder or SentencePiece model
        Source inventory (anything :func:`xlt_plugin.tokens.load_tokens` reads).
    target_tokens : list of str, path, encoder or SentencePiece model
        Target inventory.
    strategy : str or sequence of str
        Strategies in order, e.g. "exact,fold".
    blank_index : int
        Blank index of both inventories unless given separately.
    source_blank : int, optional
        Source blank index (-1: last, as NeMo).
    target_blank : int, optional
        Target blank index.
    calibrate : str
        ``none`` (default), ``rescale`` (mapped rows to a fresh layer's
        scale) or ``temperature`` (fitted later on data: :func:`fit_temperature`);
        see :func:`adjust_rows`.
    blend_alpha : float
        Mapped rows = ``alpha * copied + (1 - alpha) * fresh``; 1 (default):
        the plain remap, 0: the fresh head.
    copy_blank : bool
        Keep the source's blank row (default) or start it fresh.

    Returns
    -------
    head : torch.nn.Module
        New head, same type, ``len(target_tokens)`` rows.
    report : RemapReport
        What was mapped and how.

    Example
    -------
    >>> head = torch.nn.Linear(4, 3)
    >>> new, report = remap_ctc_head(head, ["<blank>", "a", "b"], ["<blank>", "b", "é"],
    ...                              strategy="exact,fold")
    >>> new.weight.shape, report.copied, report.fresh
    (torch.Size([3, 4]), 1, 1)
    >>> torch.equal(new.weight[1], head.weight[2])
    True
    >>> torch.manual_seed(0) is not None
    True
    >>> half, rep = remap_ctc_head(head, ["<blank>", "a", "b"], ["<blank>", "b", "é"],
    ...                            blend_alpha=0.5, copy_blank=False)
    >>> rep.remedies
    {'copy_blank': False, 'calibrate': 'none', 'blend_alpha': 0.5}
    """
    check_remedies(calibrate, blend_alpha, copy_blank)
    target_tokens = load_tokens(target_tokens)
    name, layer = _core_layer(head)
    fresh = _fresh_layer(layer, len(target_tokens))
    report = _remap(
        fresh,
        head.state_dict(),
        source_tokens,
        target_tokens,
        strategy,
        blank_index if source_blank is None else source_blank,
        blank_index if target_blank is None else target_blank,
        layer_name=name,
        calibrate=calibrate,
        blend_alpha=blend_alpha,
        copy_blank=copy_blank,
    )
    # Resize a copy in place rather than swap layers, so the head (and its
    # core layer, subclasses included) keeps its exact type and settings.
    new_head = copy.deepcopy(head)
    new_layer = new_head.get_submodule(name)
    new_layer.weight = torch.nn.Parameter(
        fresh.weight.detach(), layer.weight.requires_grad
    )
    if fresh.bias is not None:
        new_layer.bias = torch.nn.Parameter(
            fresh.bias.detach(), layer.bias.requires_grad
        )
    if isinstance(new_layer, torch.nn.Linear):
        new_layer.out_features = len(target_tokens)
    else:
        new_layer.out_channels = len(target_tokens)
    return new_head, report


class RemapHeadHook:
    """Pretrainer hook that loads a source CTC head into a target-size head.

    Give it to SpeechBrain's ``Pretrainer`` as ``custom_hooks: {head: ...}``:
    the Pretrainer calls ``hook(obj, path)`` with the recipe's head module
    (already built at the target size) and the source checkpoint: the
    ``torch.save``-d ``state_dict`` of a head of the same type, or of a larger
    module holding it (a ``ModuleList`` of encoder and head saved in one
    ``model.ckpt``: the head is then its only Linear or 1x1 Conv1d weight with one
    row per source token, plus its bias, or the one ``key`` names). The hook
    checks the checkpoint's rows against the source token file, remaps
    (:func:`remap_rows`) and copies the result into ``obj`` in place, so the
    recipe's modules and optimizer keep the same object. Rows without a
    source keep ``obj``'s own initialisation. Tokens are read at call time, so
    ``target_tokens`` may be the recipe's ``CTCTextEncoder`` that the recipe
    fills from its data before ``pretrainer.load_collected()``, or the label
    file its ``train.py`` writes (``CTCTextEncoder.save``, e.g.
    ``<save_folder>/label_encoder.txt``) when the label encoder is built there.

    A recipe uses it from YAML alone (``output_folder`` must exist, as
    ``collect_in`` is created without parents):

    .. code-block:: yaml

        pretrained_dir: !PLACEHOLDER  # source model: head.ckpt, label_encoder.txt
        output_folder: !PLACEHOLDER
        n_tokens: 40  # target inventory size, blank included
        label_encoder: !new:speechbrain.dataio.encoder.CTCTextEncoder
        ctc_lin: !new:speechbrain.nnet.linear.Linear
            input_size: 64
            n_neurons: !ref <n_tokens>
        pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
            collect_in: !ref <output_folder>/pretrained
            loadables:
                head: !ref <ctc_lin>
            paths:
                head: !ref <pretrained_dir>/head.ckpt
            custom_hooks:
                head: !new:xlt_plugin.remap.RemapHeadHook
                    source_tokens: !ref <pretrained_dir>/label_encoder.txt
                    target_tokens: !ref <label_encoder>
                    strategy: exact,fold
                    source_blank: 0
                    target_blank: 0
                    report_path: !ref <output_folder>/remap_report.json
                    # remedies for copied rows that train worse than fresh
                    # ones (off by default; see adjust_rows):
                    calibrate: none      # or rescale
                    blend_alpha: 1.0     # 1: copied rows as they are
                    copy_blank: true     # false: the blank row starts fresh

    Arguments
    ---------
    source_tokens : path or list of str
        The pretrained model's token file (anything ``load_tokens`` reads).
    target_tokens : path, CTCTextEncoder, SentencePiece or list of str
        The target inventory, read when the hook is called.
    strategy : str or sequence of str
        Remap strategies in order, e.g. "exact,fold".
    source_blank : int
        Source blank index (-1 for NeMo's blank-last).
    target_blank : int
        Target blank index.
    report_path : str or path-like, optional
        Where to write the :class:`RemapReport` as JSON.
    key : str, optional
        Where the head is in the checkpoint: its weight's key (``1.w.weight``)
        or the prefix of its keys (``1``, ``1.w``). Without it the head is found
        by name, else by shape; an ambiguous or absent head is an error naming
        the candidates.
    calibrate : str
        ``none`` (default) or ``rescale``: the mapped rows, weights and biases,
        scaled by one factor to a fresh layer's RMS (:func:`adjust_rows`).
        ``temperature`` is accepted and recorded but fitted on data later
        (``CTCTransferBrain`` does it at fit start; elsewhere call
        :func:`fit_temperature` and :func:`apply_temperature`).
    blend_alpha : float
        Mapped rows = ``alpha * copied + (1 - alpha) * fresh`` (``obj``'s own
        initialisation); 1 (default): the plain remap.
    copy_blank : bool
        True (default): the blank row is the source's; False: ``obj``'s own.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> src = torch.nn.Linear(8, 3)
    >>> torch.save(src.state_dict(), tmp / "head.ckpt")
    >>> hook = RemapHeadHook(["<blank>", "a", "o"], ["<blank>", "á", "b", "o"],
    ...                      strategy="exact,fold")
    >>> target = torch.nn.Linear(8, 4)
    >>> hook(target, tmp / "head.ckpt")
    >>> hook.report.copied, hook.report.fresh
    (2, 1)
    >>> torch.equal(target.weight[3], src.weight[2])
    True
    """

    def __init__(
        self,
        source_tokens,
        target_tokens,
        strategy: str | Sequence[str] = "exact",
        source_blank: int = 0,
        target_blank: int = 0,
        report_path: str | os.PathLike | None = None,
        key: str | None = None,
        calibrate: str = "none",
        blend_alpha: float = 1.0,
        copy_blank: bool = True,
    ):
        parse_strategy(strategy)  # fail at YAML load time, not mid-recipe
        self.calibrate, self.blend_alpha, self.copy_blank = check_remedies(
            calibrate, blend_alpha, copy_blank
        )
        self.source_tokens = source_tokens
        self.target_tokens = target_tokens
        self.strategy = strategy
        self.source_blank = source_blank
        self.target_blank = target_blank
        self.report_path = report_path
        self.key = key
        self.report: RemapReport | None = None

    def __call__(self, obj: torch.nn.Module, path: str | os.PathLike) -> None:
        """Load the source head at ``path`` into ``obj`` through the remap.

        Arguments
        ---------
        obj : torch.nn.Module
            The target head (modified in place).
        path : str or path-like
            Source checkpoint: a state_dict holding the head (alone, or inside
            a larger module; see ``key``).
        """
        from speechbrain.utils.checkpoints import torch_patched_state_dict_load

        try:
            state = torch_patched_state_dict_load(path, "cpu")
        except Exception as err:
            raise ValueError(
                f"cannot load the source head checkpoint {path}: {err}"
            ) from err
        if not isinstance(state, dict):
            raise ValueError(f"source head checkpoint {path} is not a state_dict")
        self.remap_state(obj, state, where=f"source head checkpoint {path}")

    def remap_state(
        self, obj: torch.nn.Module, state: Mapping, where: str = "the source state"
    ) -> RemapReport:
        """Remap the source head held in ``state`` (tensors) into ``obj``.

        What ``__call__`` does once the checkpoint is read; for a caller that
        already holds the source weights (e.g. an imported ``.nemo``).

        Arguments
        ---------
        obj : torch.nn.Module
            The target head (modified in place).
        state : mapping of str to torch.Tensor
            A state dict holding the source head.
        where : str
            What ``state`` is, for error messages.

        Returns
        -------
        RemapReport
            Also kept as ``self.report`` (and written to ``report_path``).
        """
        from speechbrain.utils.distributed import if_main_process

        name, layer = _core_layer(obj)
        self.report = _remap(
            layer,
            state,
            self.source_tokens,
            self.target_tokens,
            self.strategy,
            self.source_blank,
            self.target_blank,
            layer_name=name,
            key=self.key,
            where=where,
            calibrate=self.calibrate,
            blend_alpha=self.blend_alpha,
            copy_blank=self.copy_blank,
        )
        logger.info("%s", self.report)
        # Every DDP process remaps its own copy; one writes the report.
        if self.report_path is not None and if_main_process():
            report_path = Path(self.report_path)
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(
                json.dumps(self.report.as_dict(), ensure_ascii=False, indent=2) + "\n",
                encoding="utf-8",
            )
        return self.report
