"""Freezing by name pattern, staged (top-down) unfreezing and layer-wise learning rates.

Everything here addresses parameters by dotted name, the way
``module.named_parameters()`` spells them (``encoder.blocks.3.conv.weight``), so
it works the same on a ``torch.nn.ModuleDict`` of SpeechBrain ``Brain.modules``
and on a single model, and every choice can live in a YAML file.

Pattern syntax (see :func:`select_parameters`):

* fnmatch globs over dotted module or parameter names; ``*`` spans dots;
* a pattern that names a module covers all the parameters below it
  (``encoder.blocks.3`` covers ``encoder.blocks.3.mconv.0.weight``);
* a dotted component may be an inclusive integer range: ``encoder.blocks.0-9``
  (blocks 0..9), ``encoder.blocks.10-`` (10 and above), ``encoder.blocks.-3``
  (0..3);
* a pattern that matches nothing is an error, so a typo never freezes nothing.

Names are taken through distributed wrappers (``DistributedDataParallel``,
``DataParallel``) and ``torch.compile`` wrappers, so the same patterns work
before and after SpeechBrain wraps its modules.

Authors
 * xlt_plugin contributors
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping

import torch
from speechbrain.utils.epoch_loop import EpochCounter
from torch.nn.modules.batchnorm import _BatchNorm

logger = logging.getLogger(__name__)

__all__ = [
    "LayerwiseOptimizer",
    "StagedUnfreezing",
    "UnfreezingEpochCounter",
    "default_layers",
    "first_blocks",
    "freeze",
    "head_only_warm_start",
    "keep_frozen_batchnorm_eval",
    "layerwise_param_groups",
    "select_parameters",
    "set_frozen_batchnorm_eval",
    "trainable_summary",
    "unfreeze",
]

_WRAPPERS = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
_RANGE = re.compile(r"^(\d*)-(\d*)$")
_SYNTAX_HELP = (
    "Patterns are fnmatch globs over dotted module or parameter names ('*' spans "
    "dots); a module name covers all its parameters; a component may be an "
    "inclusive integer range such as 'encoder.blocks.0-9', 'encoder.blocks.10-'."
)


# ----------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------
def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """Returns the module inside DDP/DP/torch.compile wrappers."""
    while True:
        if isinstance(module, _WRAPPERS):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), torch.nn.Module):
            # torch.compile's OptimizedModule
            module = module._orig_mod
        else:
            return module


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _named_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """All submodules with wrapper-free dotted names, root first (name "")."""
    out = []
    seen = set()

    def visit(prefix, mod):
        mod = _unwrap(mod)
        if id(mod) in seen:
            return
        seen.add(id(mod))
        out.append((prefix, mod))
        for name, child in mod.named_children():
            visit(_join(prefix, name), child)

    visit("", module)
    return out


def _named_parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Wrapper-free parameter names -> parameters, in model order, shared once."""
    params = {}
    seen = set()
    for mod_name, mod in _named_modules(module):
        for name, param in mod.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                params[_join(mod_name, name)] = param
    return params


def _batchnorm_parameter_names(module: torch.nn.Module) -> set[str]:
    """Names of the affine parameters of every BatchNorm layer."""
    names = set()
    for mod_name, mod in _named_modules(module):
        if isinstance(mod, _BatchNorm):
            for name, _ in mod.named_parameters(recurse=False):
                names.add(_join(mod_name, name))
    return names


# ----------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------
def _as_pattern_list(patterns, what: str = "patterns") -> list[str]:
    """Accepts one pattern or a list of them (YAML writes either)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Iterable):
        raise TypeError(
            f"{what} must be a pattern string or a list of them, got "
            f"{type(patterns).__name__}: {patterns!r}"
        )
    patterns = list(patterns)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise TypeError(
                f"{what} must hold non-empty pattern strings, got {pattern!r} "
                f"in {patterns!r}"
            )
    return [p.strip() for p in patterns]


def _glob_component(text: str) -> str:
    """Translates one glob component to a regex; '*' spans dots."""
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in text[i + 2 :]:
            end = text.index("]", i + 2)
            body = text[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _compile(pattern: str, numbers: set[int]) -> re.Pattern:
    """Compiles a pattern; ranges become alternations of the indices in use."""
    parts = []
    for component in pattern.split("."):
        found = _RANGE.match(component)
        if found and component != "-":
            low = int(found.group(1)) if found.group(1) else 0
            high = int(found.group(2)) if found.group(2) else None
            if high is not None and low > high:
                raise ValueError(
                    f"Pattern {pattern!r}: empty range {component!r} (the start "
                    f"must not exceed the end; ranges are inclusive, e.g. '0-9')."
                )
            hits = [
                str(n)
                for n in sorted(numbers)
                if n >= low and (high is None or n <= high)
            ]
            parts.append("(?:" + "|".join(hits) + ")" if hits else "(?!)")
        else:
            parts.append(_glob_component(component))
    return re.compile(r"\.".join(parts))


class _Matcher:
    """Resolves patterns to parameter names for one module."""

    def __init__(self, module: torch.nn.Module):
        self.params = _named_parameters(module)
        self.module_names = [name for name, _ in _named_modules(module) if name]
        numbers = set()
        for name in list(self.params) + self.module_names:
            numbers.update(int(c) for c in name.split(".") if c.isdigit())
        self.numbers = numbers

    def match(self, pattern: str, what: str = "pattern") -> list[str]:
        """Parameter names covered by one pattern, in model order; errors if none."""
        regex = _compile(pattern, self.numbers)
        hits = []
        for name in self.params:
            parts = name.split(".")
            prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                hits.append(name)
        if not hits:
            raise ValueError(self._no_match_message(pattern, what))
        return hits

    def match_all(self, patterns, what: str = "patterns") -> list[str]:
        """Union of the names covered by several patterns, in model order."""
        covered = set()
        for pattern in _as_pattern_list(patterns, what):
            covered.update(self.match(pattern, what))
        return [name for name in self.params if name in covered]

    def _no_match_message(self, pattern: str, what: str) -> str:
        candidates = self.module_names + list(self.params)
        close = difflib.get_close_matches(pattern, candidates, n=5, cutoff=0.5)
        shallow = [n for n in self.module_names if n.count(".") <= 1][:12]
        message = f"{what}: {pattern!r} matches no parameter of the model."
        if close:
            message += f" Did you mean one of {close}?"
        if shallow:
            message += f" Valid module names include {shallow}."
        elif self.params:
            message += f" Valid parameter names include {list(self.params)[:8]}."
        else:
            message += " The model has no parameters."
        return message + " " + _SYNTAX_HELP


def select_parameters(module: torch.nn.Module, patterns: str | list[str]) -> list[str]:
    """Returns the names of the parameters that the patterns cover.

    Arguments
    ---------
    module : torch.nn.Module
        The model (e.g. SpeechBrain's ``Brain.modules``), wrapped or not.
    patterns : str or list of str
        fnmatch globs over dotted module or parameter names; ``*`` spans dots;
        a module name covers all its parameters; a dotted component may be an
        inclusive integer range: ``0-9``, ``10-`` (10 and above), ``-3`` (0..3).

    Returns
    -------
    list of str
        Parameter names in model order, each once.

    Raises
    ------
    ValueError
        If any pattern covers no parameter (typos must not select nothing).

    Example
    -------
    >>> model = torch.nn.ModuleDict({
    ...     "encoder": torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)]),
    ...     "head": torch.nn.Linear(2, 3),
    ... })
    >>> select_parameters(model, "encoder.2-")
    ['encoder.2.weight', 'encoder.2.bias', 'encoder.3.weight', 'encoder.3.bias']
    >>> select_parameters(model, ["head.bias", "*0.weight"])
    ['encoder.0.weight', 'head.bias']
    """
    return _Matcher(module).match_all(patterns)


def first_blocks(k: int, prefix: str = "encoder.blocks") -> str:
    """Returns a pattern covering the ``k`` lowest blocks: ``prefix.0-(k-1)``.

    Arguments
    ---------
    k : int
        How many blocks, counted from the input side; at least 1.
    prefix : str
        Dotted name of the block list.

    Returns
    -------
    str
        The pattern, e.g. ``"encoder.blocks.0-9"`` for ``k=10``.

    Example
    -------
    >>> first_blocks(10)
    'encoder.blocks.0-9'
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"first_blocks: k must be an integer >= 1, got {k!r}.")
    return f"{prefix}.0-{k - 1}"


# ----------------------------------------------------------------------------
# Freezing
# ----------------------------------------------------------------------------
def _set_trainable(params, names, trainable: bool) -> None:
    for name in names:
        param = params[name]
        param.requires_grad_(trainable)
        if not trainable:
            # A stale (even zero) .grad would let the optimizer keep moving the
            # parameter through momentum and weight decay; None makes it skip.
            param.grad = None


def freeze(
    module: torch.nn.Module,
    patterns: str | list[str],
    keep_batchnorm_trainable: bool = False,
) -> list[str]:
    """Freezes the parameters the patterns cover (``requires_grad = False``).

    Their ``.grad`` is cleared too, so an optimizer holding them skips them.
    Call :func:`set_frozen_batchnorm_eval` after every ``module.train()`` so that
    fully frozen BatchNorm layers also stop updating their running statistics.

    Arguments
    ---------
    module : torch.nn.Module
        The model.
    patterns : str or list of str
        What to freeze; see :func:`select_parameters`.
    keep_batchnorm_trainable : bool
        If True, the affine parameters of BatchNorm layers inside the frozen
        region stay trainable, so those layers also keep updating their running
        statistics (NeMo's remedy for a frozen encoder on a new language).

    Returns
    -------
    list of str
        The names of the parameters frozen, in model order.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    >>> freeze(model, "*", keep_batchnorm_trainable=True)
    ['0.weight', '0.bias']
    >>> [p.requires_grad for p in model.parameters()]
    [False, False, True, True]
    """
    matcher = _Matcher(module)
    names = matcher.match_all(patterns)
    if keep_batchnorm_trainable:
        batchnorm = _batchnorm_parameter_names(module)
        names = [name for name in names if name not in batchnorm]
    _set_trainable(matcher.params, names, False)
    return names


def unfreeze(module: torch.nn.Module, patterns: str | list[str]) -> list[str]:
    """Makes the parameters the patterns cover trainable again.

    Arguments
    ---------
    module : torch.nn.Module
        The model.
    patterns : str or list of str
        What to unfreeze; see :func:`select_parameters`.

    Returns
    -------
    list of str
        The names of the parameters made trainable, in model order.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> _ = freeze(model, "*")
    >>> unfreeze(model, "1")
    ['1.weight', '1.bias']
    """
    matcher = _Matcher(module)
    names = matcher.match_all(patterns)
    _set_trainable(matcher.params, names, True)
    return names


def set_frozen_batchnorm_eval(module: torch.nn.Module) -> list[str]:
    """Puts every BatchNorm layer whose parameters are all frozen in eval mode.

    In eval mode a BatchNorm layer normalises with its stored running statistics
    and stops updating them, so a frozen layer computes exactly what it computed
    in the pretrained model. ``module.train()`` puts every layer back in train
    mode, so call this after each ``module.train()`` (in SpeechBrain 1.1,
    ``Brain._fit_train`` calls ``modules.train()`` after ``on_stage_start``:
    ``on_fit_batch_start`` is a hook that runs after it). BatchNorm layers
    without affine parameters cannot tell frozen from not and are left alone.

    Arguments
    ---------
    module : torch.nn.Module
        The model, wrapped or not.

    Returns
    -------
    list of str
        The names of the BatchNorm layers now in eval mode.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2))
    >>> _ = freeze(model, "0")
    >>> set_frozen_batchnorm_eval(model)
    ['0']
    >>> model[0].training, model[1].training
    (False, True)
    """
    names = []
    for name, mod in _named_modules(module):
        if isinstance(mod, _BatchNorm):
            params = list(mod.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                mod.eval()
                names.append(name)
    return names


# ----------------------------------------------------------------------------
# Staged unfreezing
# ----------------------------------------------------------------------------
def _check_epoch(epoch, what: str) -> int:
    if isinstance(epoch, str) and epoch.strip().isdigit():
        epoch = int(epoch)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(
            f"{what}: epochs are integers >= 1 (1-based, like SpeechBrain's "
            f"EpochCounter), got {epoch!r}."
        )
    return epoch


class StagedUnfreezing:
    """Freezes part of a model, then unfreezes it in stages by epoch.

    At epoch ``e`` (1-based, like SpeechBrain's ``EpochCounter``) the parameters
    covered by ``frozen`` are frozen unless a stage ``unfreeze_at[k]`` with
    ``k <= e`` covers them. :meth:`apply` sets exactly that state, whatever the
    state before, so a run resumed at epoch ``e`` just calls ``apply(module, e)``.
    Parameters that ``frozen`` does not cover are never touched.

    Arguments
    ---------
    frozen : str or list of str
        Patterns frozen at the start; see :func:`select_parameters`.
    unfreeze_at : dict of int -> (str or list of str), optional
        Epoch -> patterns that become trainable from that epoch on. Each pattern
        must cover something that ``frozen`` covers.
    keep_batchnorm_trainable : bool
        If True, BatchNorm affine parameters are never frozen (see :func:`freeze`).

    Example
    -------
    >>> model = torch.nn.ModuleDict({
    ...     "encoder": torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)]),
    ...     "head": torch.nn.Linear(2, 3),
    ... })
    >>> schedule = StagedUnfreezing(["encoder"], {2: "encoder.2-3", 3: "encoder"})
    >>> schedule.apply(model, 1)
    []
    >>> schedule.apply(model, 2)
    ['encoder.2.weight', 'encoder.2.bias', 'encoder.3.weight', 'encoder.3.bias']
    >>> schedule.apply(model, 2)
    []
    >>> sorted(StagedUnfreezing("encoder.0", {}).always_frozen(model))
    ['encoder.0.bias', 'encoder.0.weight']
    """

    def __init__(
        self,
        frozen: str | list[str],
        unfreeze_at: Mapping[int, str | list[str]] | None = None,
        keep_batchnorm_trainable: bool = False,
    ):
        self.frozen = _as_pattern_list(frozen, "StagedUnfreezing frozen")
        if unfreeze_at is None:
            unfreeze_at = {}
        if not isinstance(unfreeze_at, Mapping):
            raise TypeError(
                "StagedUnfreezing unfreeze_at must map epochs to patterns, e.g. "
                f"{{3: ['encoder.blocks.10-14']}}; got {unfreeze_at!r}."
            )
        stages = {}
        for epoch, patterns in unfreeze_at.items():
            key = _check_epoch(epoch, f"StagedUnfreezing unfreeze_at key {epoch!r}")
            if key in stages:
                raise ValueError(f"StagedUnfreezing unfreeze_at: epoch {key} twice.")
            stages[key] = _as_pattern_list(
                patterns, f"StagedUnfreezing unfreeze_at[{key}]"
            )
        self.unfreeze_at = dict(sorted(stages.items()))
        self.keep_batchnorm_trainable = bool(keep_batchnorm_trainable)

    @classmethod
    def top_down(
        cls,
        num_blocks: int,
        blocks_per_stage: int = 1,
        every: int = 1,
        start_epoch: int = 2,
        encoder: str = "encoder",
        blocks: str = "blocks",
        epilogue: str | None = "epilogue",
        keep_frozen_blocks: int = 0,
        keep_batchnorm_trainable: bool = False,
    ) -> StagedUnfreezing:
        """Freezes the encoder, then unfreezes it from the top, K blocks every E epochs.

        Stage ``s`` (epoch ``start_epoch + s * every``) unfreezes the next
        ``blocks_per_stage`` blocks going down; the first stage also unfreezes the
        epilogue, and the last one the whole encoder (prologue included) unless
        ``keep_frozen_blocks`` keeps the lowest blocks frozen for the whole run.

        Arguments
        ---------
        num_blocks : int
            Number of blocks in ``<encoder>.<blocks>``.
        blocks_per_stage : int
            Blocks unfrozen per stage (K).
        every : int
            Epochs between stages (E).
        start_epoch : int
            Epoch of the first stage (1-based); before it only the rest of the
            model (e.g. the new head) trains.
        encoder : str
            Dotted name of the encoder.
        blocks : str
            Name of the block list inside the encoder.
        epilogue : str or None
            Name of the layers after the blocks inside the encoder; None if none.
        keep_frozen_blocks : int
            Number of lowest blocks (and the prologue) never unfrozen.
        keep_batchnorm_trainable : bool
            See :func:`freeze`.

        Returns
        -------
        StagedUnfreezing

        Example
        -------
        >>> s = StagedUnfreezing.top_down(15, 5, every=2, start_epoch=3)
        >>> s.unfreeze_at  # doctest: +NORMALIZE_WHITESPACE
        {3: ['encoder.epilogue', 'encoder.blocks.10-14'],
         5: ['encoder.blocks.5-9'], 7: ['encoder.blocks.0-4', 'encoder']}
        """
        for value, what, low in (
            (num_blocks, "num_blocks", 1),
            (blocks_per_stage, "blocks_per_stage", 1),
            (every, "every", 1),
            (start_epoch, "start_epoch", 1),
            (keep_frozen_blocks, "keep_frozen_blocks", 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"StagedUnfreezing.top_down: {what} must be an integer >= {low}, "
                    f"got {value!r}."
                )
        if keep_frozen_blocks > num_blocks:
            raise ValueError(
                f"StagedUnfreezing.top_down: keep_frozen_blocks ({keep_frozen_blocks})"
                f" exceeds num_blocks ({num_blocks})."
            )
        stages = []
        high = num_blocks - 1
        while high >= keep_frozen_blocks:
            low = max(high - blocks_per_stage + 1, keep_frozen_blocks)
            stages.append([f"{encoder}.{blocks}.{low}-{high}"])
            high = low - 1
        if epilogue is not None:
            if stages:
                stages[0].insert(0, f"{encoder}.{epilogue}")
            else:
                stages.append([f"{encoder}.{epilogue}"])
        if not stages:
            raise ValueError(
                "StagedUnfreezing.top_down: nothing would ever be unfrozen "
                "(all blocks kept frozen and no epilogue); use freeze() instead."
            )
        if keep_frozen_blocks == 0:
            stages[-1].append(encoder)
        unfreeze_at = {start_epoch + i * every: p for i, p in enumerate(stages)}
        return cls([encoder], unfreeze_at, keep_batchnorm_trainable)

    def _managed(self, matcher: _Matcher, module: torch.nn.Module) -> list[str]:
        """Parameters this schedule controls, in model order."""
        names = matcher.match_all(self.frozen, "StagedUnfreezing frozen")
        if self.keep_batchnorm_trainable:
            batchnorm = _batchnorm_parameter_names(module)
            names = [name for name in names if name not in batchnorm]
        return names

    def _frozen_at(self, module: torch.nn.Module, epoch: int | None):
        """(matcher, managed names, names frozen at ``epoch``; None = whole run)."""
        matcher = _Matcher(module)
        managed = self._managed(matcher, module)
        managed_set = set(managed)
        released = set()
        for key, patterns in self.unfreeze_at.items():
            for pattern in patterns:
                what = f"StagedUnfreezing unfreeze_at[{key}]"
                covered = set(matcher.match(pattern, what)) & managed_set
                if not covered:
                    raise ValueError(
                        f"{what}: {pattern!r} covers no parameter that `frozen` "
                        f"({self.frozen}) freezes, so unfreezing it does nothing."
                    )
                if epoch is None or key <= epoch:
                    released |= covered
        return matcher, managed, managed_set - released

    def frozen_names(self, module: torch.nn.Module, epoch: int) -> set[str]:
        """Names of the parameters frozen during ``epoch``.

        Arguments
        ---------
        module : torch.nn.Module
            The model.
        epoch : int
            1-based epoch.

        Returns
        -------
        set of str

        Example
        -------
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> sorted(StagedUnfreezing("*", {2: "1"}).frozen_names(model, 2))
        ['0.bias', '0.weight']
        """
        epoch = _check_epoch(epoch, "StagedUnfreezing epoch")
        return self._frozen_at(module, epoch)[2]

    def always_frozen(self, module: torch.nn.Module) -> set[str]:
        """Names of the parameters frozen for the whole run (no stage frees them).

        Pass this to :func:`layerwise_param_groups` as ``exclude_frozen``.

        Arguments
        ---------
        module : torch.nn.Module
            The model.

        Returns
        -------
        set of str

        Example
        -------
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> sorted(StagedUnfreezing("*", {4: "1"}).always_frozen(model))
        ['0.bias', '0.weight']
        """
        return self._frozen_at(module, None)[2]

    def apply(self, module: torch.nn.Module, epoch: int) -> list[str]:
        """Sets the frozen state for ``epoch``; idempotent.

        Arguments
        ---------
        module : torch.nn.Module
            The model.
        epoch : int
            1-based epoch about to start.

        Returns
        -------
        list of str
            Names that were frozen before the call and are trainable now.

        Example
        -------
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> schedule = StagedUnfreezing("*", {3: "1.weight"})
        >>> schedule.apply(model, 1), schedule.apply(model, 3)
        ([], ['1.weight'])
        """
        epoch = _check_epoch(epoch, "StagedUnfreezing epoch")
        matcher, managed, frozen = self._frozen_at(module, epoch)
        params = matcher.params
        released = [
            n for n in managed if n not in frozen and not params[n].requires_grad
        ]
        newly_frozen = [n for n in managed if n in frozen and params[n].requires_grad]
        _set_trainable(params, [n for n in managed if n in frozen], False)
        _set_trainable(params, [n for n in managed if n not in frozen], True)
        if released or newly_frozen:
            logger.info(
                "Epoch %d: unfroze %d and froze %d parameter tensors; %d of the %d "
                "scheduled stay frozen.",
                epoch,
                len(released),
                len(newly_frozen),
                len(frozen),
                len(managed),
            )
        return released

    def __repr__(self) -> str:
        return (
            f"StagedUnfreezing(frozen={self.frozen}, unfreeze_at={self.unfreeze_at}, "
            f"keep_batchnorm_trainable={self.keep_batchnorm_trainable})"
        )


def head_only_warm_start(
    epochs: int,
    unfreezing: StagedUnfreezing | None = None,
    encoder: str = "encoder",
) -> StagedUnfreezing | None:
    """A schedule that trains only the head for ``epochs`` epochs, then everything.

    The encoder is frozen during epochs ``1..epochs`` and unfrozen at
    ``epochs + 1``: a new (or remapped) head settles on the pretrained
    features before its gradients reach the encoder. While frozen the encoder
    stays bit-identical: its parameters get no gradient (the optimizer skips
    them, weight decay included), and ``CTCTransferBrain`` (or
    :class:`UnfreezingEpochCounter` with ``frozen_batchnorm_eval``) keeps its
    BatchNorm layers in eval mode, so their running statistics do not move
    either (unless ``unfreezing`` keeps BatchNorm trainable, which carries
    over). The YAML key ``head_only_epochs: N`` of ``CTCTransferBrain`` is
    this; by hand it is

    .. code-block:: yaml

        unfreezing: !new:xlt_plugin.freeze.StagedUnfreezing
            frozen: [encoder]
            unfreeze_at: {3: [encoder]}   # head_only_epochs: 2

    Arguments
    ---------
    epochs : int
        Head-only epochs; 0 returns ``unfreezing`` unchanged.
    unfreezing : StagedUnfreezing, optional
        The recipe's own schedule; it must freeze nothing (one schedule at a
        time: combine them by hand in a ``StagedUnfreezing``).
    encoder : str
        Dotted name of what to freeze.

    Returns
    -------
    StagedUnfreezing or None

    Example
    -------
    >>> head_only_warm_start(2).unfreeze_at
    {3: ['encoder']}
    >>> head_only_warm_start(0) is None
    True
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"head_only_epochs must be an integer >= 0, got {epochs!r}.")
    if epochs == 0:
        return unfreezing
    if unfreezing is not None:
        _check_schedule(unfreezing, "head_only_warm_start")
        if unfreezing.frozen:
            raise ValueError(
                f"head_only_epochs ({epochs}) and a freezing schedule "
                f"({unfreezing}) both set: use one, or write the head-only phase "
                "into the StagedUnfreezing (frozen: [encoder], unfreeze_at: "
                f"{{{epochs + 1}: [...]}})."
            )
        keep_bn = unfreezing.keep_batchnorm_trainable
    else:
        keep_bn = False
    return StagedUnfreezing([encoder], {epochs + 1: [encoder]}, keep_bn)


# ----------------------------------------------------------------------------
# Layer-wise learning rates
# ----------------------------------------------------------------------------
def default_layers(
    module: torch.nn.Module, encoder: str = "encoder", head: str = "head"
) -> list[str]:
    """Top-down layer patterns for an encoder + head model.

    ``head``, ``<encoder>.epilogue``, ``<encoder>.blocks.N-1`` .. ``blocks.0``,
    ``<encoder>.prologue``: those that exist in ``module``.

    Arguments
    ---------
    module : torch.nn.Module
        The model.
    encoder : str
        Dotted name of the encoder.
    head : str
        Dotted name of the output layer.

    Returns
    -------
    list of str

    Example
    -------
    >>> enc = torch.nn.Module()
    >>> enc.prologue = torch.nn.Conv1d(2, 2, 1)
    >>> enc.blocks = torch.nn.ModuleList([torch.nn.Conv1d(2, 2, 1) for _ in range(2)])
    >>> model = torch.nn.ModuleDict({"encoder": enc, "head": torch.nn.Linear(2, 3)})
    >>> default_layers(model)
    ['head', 'encoder.blocks.1', 'encoder.blocks.0', 'encoder.prologue']
    """
    names = {name for name, _ in _named_modules(module)}
    block_re = re.compile(re.escape(f"{encoder}.blocks.") + r"(\d+)")
    block_ids = sorted(
        (int(m.group(1)) for n in names if (m := block_re.fullmatch(n))), reverse=True
    )
    candidates = [head, f"{encoder}.epilogue"]
    candidates += [f"{encoder}.blocks.{i}" for i in block_ids]
    candidates.append(f"{encoder}.prologue")
    layers = [name for name in candidates if name in names]
    if not layers:
        raise ValueError(
            f"Cannot derive layers: the model has none of '{head}', "
            f"'{encoder}.epilogue', '{encoder}.blocks.<i>', '{encoder}.prologue'. "
            "Pass layers= explicitly (a top-down list of patterns)."
        )
    return layers


def layerwise_param_groups(
    module: torch.nn.Module,
    lr: float,
    decay: float = 1.0,
    layers: list[str] | None = None,
    exclude_frozen: bool | Iterable[str] = True,
) -> list[dict]:
    """Optimizer parameter groups with a learning rate decaying layer by layer.

    Group ``i`` holds the parameters of ``layers[i]`` not already in an earlier
    group and gets ``lr * decay ** i``; parameters in no layer go in a last group
    named ``"other"`` at ``lr``. Empty groups are dropped (indices still count).
    The lrs are peak values: a ``torch.optim.lr_scheduler.LambdaLR`` scales each
    group's own initial lr, so the ratios survive warmup and decay. (Schedulers
    that write one lr into every group, as SpeechBrain's ``NoamScheduler`` does,
    would erase them.)

    Parameters frozen only until a later stage must stay in the groups: until
    they are unfrozen their ``.grad`` stays None, and torch's optimizers skip
    such parameters entirely (no update, no weight decay, no state, no cost).

    Arguments
    ---------
    module : torch.nn.Module
        The model.
    lr : float
        Peak learning rate of the top layer (and of unlisted parameters).
    decay : float
        Factor per layer going down; 1.0 gives one lr everywhere.
    layers : list of str, optional
        Top-down patterns (see :func:`select_parameters`), one per group;
        default :func:`default_layers`.
    exclude_frozen : bool or iterable of str
        Which parameters to leave out: True, those with ``requires_grad`` False
        now; a collection of names, exactly those (pass
        ``StagedUnfreezing.always_frozen(module)`` with a staged schedule);
        False, none.

    Returns
    -------
    list of dict
        ``{"params": [...], "lr": float, "name": str}`` for each group.

    Example
    -------
    >>> model = torch.nn.ModuleDict({
    ...     "encoder": torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(2)]),
    ...     "head": torch.nn.Linear(2, 3),
    ... })
    >>> groups = layerwise_param_groups(model, 1.0, 0.5, ["head", "encoder.1"])
    >>> [(g["name"], g["lr"], len(g["params"])) for g in groups]
    [('head', 1.0, 2), ('encoder.1', 0.5, 2), ('other', 1.0, 2)]
    >>> optimizer = torch.optim.AdamW(groups)
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ValueError(f"layerwise_param_groups: lr must be > 0, got {lr!r}.")
    if isinstance(decay, bool) or not isinstance(decay, int | float) or decay <= 0:
        raise ValueError(f"layerwise_param_groups: decay must be > 0, got {decay!r}.")
    matcher = _Matcher(module)
    params = matcher.params
    if layers is None:
        layers = default_layers(module)
    layers = _as_pattern_list(layers, "layerwise_param_groups layers")

    if exclude_frozen is True:
        excluded = {n for n, p in params.items() if not p.requires_grad}
    elif exclude_frozen is False or exclude_frozen is None:
        excluded = set()
    else:
        excluded = set(_as_pattern_list(exclude_frozen, "exclude_frozen"))
        unknown = sorted(excluded - set(params))
        if unknown:
            raise ValueError(
                f"layerwise_param_groups: exclude_frozen names {unknown[:5]} are not "
                f"parameters of this model (e.g. {list(params)[:3]}); pass the names "
                "computed on the same module, e.g. schedule.always_frozen(module)."
            )

    assigned = set(excluded)
    groups = []
    for i, pattern in enumerate(layers):
        names = [
            n
            for n in matcher.match(pattern, "layerwise_param_groups layers")
            if n not in assigned
        ]
        assigned.update(names)
        if names:
            groups.append(
                {
                    "params": [params[n] for n in names],
                    "lr": float(lr) * float(decay) ** i,
                    "name": pattern,
                }
            )
    rest = [n for n in params if n not in assigned]
    if rest:
        groups.append(
            {"params": [params[n] for n in rest], "lr": float(lr), "name": "other"}
        )
    if not groups:
        raise ValueError(
            "layerwise_param_groups: no parameter left to optimize (all excluded as "
            "frozen)."
        )
    return groups


# ----------------------------------------------------------------------------
# From YAML, for any SpeechBrain Brain
# ----------------------------------------------------------------------------
def _as_module(modules) -> torch.nn.Module:
    """A module, or a ``ModuleDict`` over a YAML dict of modules (same names)."""
    if isinstance(modules, torch.nn.Module):
        return modules
    if isinstance(modules, Mapping):
        return torch.nn.ModuleDict(dict(modules))
    raise TypeError(
        "modules must be a torch.nn.Module or a dict of them (in YAML: "
        f"`modules: !ref <modules>`), got {type(modules).__name__}."
    )


def _check_schedule(unfreezing, who: str) -> None:
    if not isinstance(unfreezing, StagedUnfreezing):
        raise TypeError(
            f"{who}: unfreezing must be a xlt_plugin.freeze.StagedUnfreezing "
            f"(in YAML `!ref <unfreezing>`), got {type(unfreezing).__name__}."
        )


class LayerwiseOptimizer:
    """An ``opt_class`` for any SpeechBrain ``Brain``: frozen parameters left
    out, layer-wise learning rates, staged unfreezing ready.

    ``Brain.init_optimizers`` calls ``opt_class(params)`` with the parameters of
    ``Brain.modules`` (all of them; or, with ``--remove_vector_weight_decay``,
    two weight-decay groups). This factory builds ``optimizer`` over
    :func:`layerwise_param_groups` of ``modules`` restricted to what Brain
    passed (each passed group's options, e.g. ``weight_decay``, are kept):

    * frozen parameters are left out: those frozen now (e.g. by
      ``!apply:xlt_plugin.freeze.freeze``) and, with ``unfreezing``, those no
      stage of the schedule ever unfreezes;
    * parameters that a later stage unfreezes are put in from the start, frozen.
      Until their stage they have no ``.grad`` and torch's optimizers skip them
      (no update, no weight decay, no state, no cost). Keeping them in, rather
      than adding a parameter group at their stage, means the optimizer never
      changes shape mid-run: a checkpointed optimizer state loads into the
      optimizer a resumed run builds, and lr schedulers (which keep one
      ``initial_lr`` per group) see every group from step 0;
    * group ``i`` of ``layers`` (top-down) gets ``lr * decay ** i``; the rest
      ``lr``. Each group carries its ``"name"``.

    Under DDP, set SpeechBrain's ``find_unused_parameters: True`` in the YAML
    when a schedule freezes parameters.

    Arguments
    ---------
    optimizer : callable
        Takes parameter groups, e.g. ``!name:torch.optim.AdamW`` with its options.
    modules : torch.nn.Module or dict
        The same modules as the Brain's (``!ref <modules>``); names in patterns
        are relative to it (``encoder.blocks.3``).
    lr : float, optional
        Peak lr of the top layer; default: the ``lr`` keyword of ``optimizer``.
    decay : float
        Factor per layer going down; 1.0: one lr everywhere.
    layers : list of str, optional
        Top-down patterns, one per group; default :func:`default_layers`
        (head, epilogue, blocks, prologue), or one group for a model without
        those names when ``decay`` is 1.0.
    unfreezing : StagedUnfreezing, optional
        The schedule (the same object the epoch counter applies).
    head_lr_multiplier : float
        The group of ``head`` (the pattern) gets its lr times this (1.0: as
        the others); with ``decay`` 1.0 and no ``layers`` the head then gets
        a group of its own.
    head : str
        Pattern of the output layer, the name of its group.

    Example
    -------
    >>> model = torch.nn.ModuleDict({
    ...     "encoder": torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(3)]),
    ...     "head": torch.nn.Linear(2, 3),
    ... })
    >>> schedule = StagedUnfreezing("encoder", {2: "encoder.1-2"})
    >>> opt_class = LayerwiseOptimizer(
    ...     torch.optim.SGD, model, lr=1.0, decay=0.5,
    ...     layers=["head", "encoder.2", "encoder.1"], unfreezing=schedule,
    ... )
    >>> optimizer = opt_class(model.parameters())  # what Brain.init_optimizers does
    >>> [(g["name"], g["lr"], len(g["params"])) for g in optimizer.param_groups]
    [('head', 1.0, 2), ('encoder.2', 0.5, 2), ('encoder.1', 0.25, 2)]
    >>> fast_head = LayerwiseOptimizer(torch.optim.SGD, model, lr=1.0,
    ...                                layers=["head"], head_lr_multiplier=5.0)
    >>> [(g["name"], g["lr"]) for g in fast_head.param_groups()]
    [('head', 5.0), ('other', 1.0)]
    """

    def __init__(
        self,
        optimizer,
        modules,
        lr: float | None = None,
        decay: float = 1.0,
        layers: list[str] | None = None,
        unfreezing: StagedUnfreezing | None = None,
        head_lr_multiplier: float = 1.0,
        head: str = "head",
    ):
        if not float(head_lr_multiplier) > 0:
            raise ValueError(
                "LayerwiseOptimizer: head_lr_multiplier must be positive, got "
                f"{head_lr_multiplier!r}."
            )
        if not callable(optimizer):
            raise TypeError(
                "LayerwiseOptimizer: optimizer must be callable (in YAML "
                f"`!name:torch.optim.AdamW`), got {optimizer!r}."
            )
        if lr is None:
            lr = getattr(optimizer, "keywords", {}).get("lr")
            if lr is None:
                raise ValueError(
                    "LayerwiseOptimizer: give `lr` (or an `lr` keyword to optimizer)."
                )
        if unfreezing is not None:
            _check_schedule(unfreezing, "LayerwiseOptimizer")
        _as_module(modules)  # fail at YAML load, not at fit
        self.optimizer = optimizer
        self.modules = modules
        self.lr = lr
        self.decay = decay
        self.layers = layers
        self.unfreezing = unfreezing
        self.head_lr_multiplier = float(head_lr_multiplier)
        self.head = head

    def param_groups(self, params=None) -> list[dict]:
        """The parameter groups the optimizer gets.

        Arguments
        ---------
        params : iterable, optional
            Parameters, or parameter-group dicts, as ``Brain`` passes them;
            None: every parameter of ``modules``.

        Returns
        -------
        list of dict
            ``{"params": [...], "lr": float, "name": str, ...}``.
        """
        module = _as_module(self.modules)
        layers = self.layers
        if layers is None and self.decay == 1.0:
            try:
                default_layers(module)
            except ValueError:  # no encoder/head names: one group is the same
                layers = []
            if self.head_lr_multiplier != 1.0:
                layers = [self.head]  # the head alone, the rest at lr
        groups = layerwise_param_groups(
            module, self.lr, self.decay, layers, self._excluded(module)
        )
        if self.head_lr_multiplier != 1.0:
            heads = [g for g in groups if g["name"] == self.head]
            if not heads:
                raise ValueError(
                    f"LayerwiseOptimizer: head_lr_multiplier needs a group named "
                    f"{self.head!r} (the first of `layers`); groups: "
                    f"{[g['name'] for g in groups]}."
                )
            for group in heads:
                group["lr"] *= self.head_lr_multiplier
        if params is None:
            return groups
        known = {id(p) for p in _named_parameters(module).values()}
        return _restrict(groups, list(params), known, float(self.lr))

    def _excluded(self, module: torch.nn.Module) -> set[str]:
        """Frozen now and never unfrozen by the schedule, or frozen for good."""
        params = _named_parameters(module)
        frozen_now = {n for n, p in params.items() if not p.requires_grad}
        if self.unfreezing is None:
            return frozen_now
        _, managed, forever = self.unfreezing._frozen_at(module, None)
        later = set(managed) - forever
        return (frozen_now - later) | forever

    def __call__(self, params) -> torch.optim.Optimizer:
        """Builds the optimizer (the ``opt_class(params)`` call of ``Brain``)."""
        return self.optimizer(self.param_groups(params))

    def __repr__(self) -> str:
        return (
            f"LayerwiseOptimizer(optimizer={self.optimizer!r}, lr={self.lr}, "
            f"decay={self.decay}, layers={self.layers}, unfreezing={self.unfreezing}, "
            f"head_lr_multiplier={self.head_lr_multiplier})"
        )


def _restrict(groups: list[dict], passed: list, known: set, lr: float) -> list[dict]:
    """``groups`` cut down to the ``passed`` parameters or parameter-group dicts.

    A layer group spanning several passed groups is split in their order, each
    part with the passed group's options; passed parameters that are not in the
    named modules (ids not in ``known``) go last at ``lr``.
    """
    if passed and isinstance(passed[0], Mapping):
        passed_groups = [dict(g) for g in passed]
    else:
        passed_groups = [{"params": passed}]
    owner = {}
    for index, group in enumerate(passed_groups):
        group["params"] = list(group["params"])
        for param in group["params"]:
            owner.setdefault(id(param), index)
    out, placed = [], set(known)
    for group in groups:
        parts: dict[int, list] = {}
        for param in group["params"]:
            if id(param) in owner:
                parts.setdefault(owner[id(param)], []).append(param)
        for index, part in sorted(parts.items()):
            options = {k: v for k, v in passed_groups[index].items() if k != "params"}
            out.append({**options, **group, "params": part})
    for group in passed_groups:
        rest = [p for p in group["params"] if id(p) not in placed]
        placed.update(id(p) for p in rest)
        if rest:
            options = {k: v for k, v in group.items() if k != "params"}
            out.append({"lr": lr, "name": "unnamed", **options, "params": rest})
    return out


class UnfreezingEpochCounter(EpochCounter):
    """SpeechBrain's ``EpochCounter`` that applies a staged-unfreezing schedule.

    ``Brain.fit`` takes the next epoch from its counter before anything else
    of that epoch, so each epoch starts with the frozen state
    ``schedule.apply(modules, epoch)`` sets. The state follows from the epoch
    number alone, and the counter is what recipes checkpoint (``counter``), so a
    run resumed from any checkpoint (end of epoch or inside one) trains each
    epoch with the same parameters frozen as an uninterrupted run.

    Pair it with :class:`LayerwiseOptimizer` (same ``unfreezing``) so that the
    parameters unfrozen later are in the optimizer.

    Arguments
    ---------
    limit : int
        Number of epochs.
    unfreezing : StagedUnfreezing
        The schedule.
    modules : torch.nn.Module or dict
        The Brain's modules (``!ref <modules>``).
    frozen_batchnorm_eval : bool
        If True, BatchNorm layers whose parameters are all frozen run in eval
        mode in training too (see :func:`set_frozen_batchnorm_eval`; done
        through forward pre-hooks, because ``Brain`` calls ``modules.train()``
        after the epoch starts).

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> counter = UnfreezingEpochCounter(3, StagedUnfreezing("*", {3: "0"}), model)
    >>> [(epoch, model[0].weight.requires_grad) for epoch in counter]
    [(1, False), (2, False), (3, True)]
    """

    def __init__(
        self,
        limit: int,
        unfreezing: StagedUnfreezing,
        modules,
        frozen_batchnorm_eval: bool = False,
    ):
        super().__init__(limit)
        _check_schedule(unfreezing, "UnfreezingEpochCounter")
        _as_module(modules)
        self.unfreezing = unfreezing
        self.modules = modules
        self.frozen_batchnorm_eval = bool(frozen_batchnorm_eval)

    def __next__(self) -> int:
        epoch = super().__next__()
        module = _as_module(self.modules)
        self.unfreezing.apply(module, epoch)
        if self.frozen_batchnorm_eval:
            keep_frozen_batchnorm_eval(module)
        return epoch


def _eval_if_frozen(module: torch.nn.Module, _inputs) -> None:
    if module.training and not any(p.requires_grad for p in module.parameters()):
        module.eval()


def keep_frozen_batchnorm_eval(module: torch.nn.Module) -> int:
    """Keeps fully frozen BatchNorm layers in eval mode through ``.train()``.

    Registers, once per layer, a forward pre-hook that does what
    :func:`set_frozen_batchnorm_eval` does for that layer just before it runs;
    a layer unfrozen later trains normally after the next ``.train()``.

    Arguments
    ---------
    module : torch.nn.Module
        The model, wrapped or not.

    Returns
    -------
    int
        How many layers got a hook by this call.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2))
    >>> _ = freeze(model, "0")
    >>> keep_frozen_batchnorm_eval(model), keep_frozen_batchnorm_eval(model)
    (2, 0)
    >>> _ = model.train()(torch.randn(4, 2))
    >>> model[0].training, model[1].training
    (False, True)
    """
    added = 0
    for _, mod in _named_modules(module):
        if isinstance(mod, _BatchNorm) and not getattr(mod, "_xlt_eval_hook", False):
            if any(True for _ in mod.parameters(recurse=False)):
                mod.register_forward_pre_hook(_eval_if_frozen)
                mod._xlt_eval_hook = True
                added += 1
    return added


# ----------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------
def trainable_summary(module: torch.nn.Module) -> dict:
    """Counts trainable and frozen parameter elements, overall and per child.

    Arguments
    ---------
    module : torch.nn.Module
        The model, wrapped or not.

    Returns
    -------
    dict
        ``{"trainable": int, "frozen": int, "children": {name: {"trainable": int,
        "frozen": int}}}`` with element counts (``numel``); parameters held by the
        root itself count under the child ``""``.

    Example
    -------
    >>> model = torch.nn.ModuleDict({
    ...     "encoder": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 3)
    ... })
    >>> _ = freeze(model, "encoder")
    >>> trainable_summary(model)  # doctest: +NORMALIZE_WHITESPACE
    {'trainable': 9, 'frozen': 6, 'children': {'encoder': {'trainable': 0,
     'frozen': 6}, 'head': {'trainable': 9, 'frozen': 0}}}
    """
    children = {}
    for name, _ in _unwrap(module).named_children():
        children.setdefault(name, {"trainable": 0, "frozen": 0})
    totals = {"trainable": 0, "frozen": 0}
    for name, param in _named_parameters(module).items():
        child = name.split(".")[0] if "." in name else ""
        key = "trainable" if param.requires_grad else "frozen"
        children.setdefault(child, {"trainable": 0, "frozen": 0})[key] += param.numel()
        totals[key] += param.numel()
    return {**totals, "children": children}
