"""Weight averaging with the base: ``alpha * finetuned + (1 - alpha) * base``.

After fine-tuning on an accent or a domain, interpolating the weights back toward
the base keeps much of the base's own accuracy (Wortsman et al. 2022, WiSE-FT).
Here the interpolation covers the encoder and the *shared* part of the CTC head:
rows of tokens both models have are averaged, rows only the fine-tuned model has
are kept as they are (the output uses the fine-tuned token inventory).

BatchNorm running statistics are averaged like weights (``num_batches_tracked``
rounded); :func:`recompute_batchnorm` instead re-estimates them on a few batches
(of the union of source and target data, in the recipes). ``alpha`` 0 gives the
base and 1 the fine-tuned model exactly.

Used by the recipes (``average_alpha``, :func:`xlt_plugin.recipe.average_with_base`)
and by ``xlt average --base DIR --finetuned RUN --alpha A --out DIR``
(:func:`average_run`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from xlt_plugin.pretrained import (
    CONFIG_FILE,
    TOKENS_FILE,
    build_encoder,
    load_pretrained,
    read_config,
    save_pretrained,
)
from xlt_plugin.runs import BEST_KEY, find_best_checkpoint, run_folder_of

logger = logging.getLogger(__name__)

__all__ = [
    "average_head_state",
    "average_run",
    "interpolate",
    "interpolate_state",
    "load_run_model",
    "recompute_batchnorm",
]


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    return alpha


def interpolate(
    base: torch.Tensor, finetuned: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``alpha * finetuned + (1 - alpha) * base``; exact at 0 and 1.

    Integer tensors (BatchNorm's ``num_batches_tracked``) are rounded.

    Example
    -------
    >>> interpolate(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]), 0.25)
    tensor([0.2500, 1.5000])
    >>> interpolate(torch.tensor(10), torch.tensor(20), 0.5)
    tensor(15)
    """
    alpha = _check_alpha(alpha)
    if alpha == 0.0:
        return base.detach().clone()
    if alpha == 1.0:
        return finetuned.detach().clone()
    if base.is_floating_point():
        return alpha * finetuned.detach() + (1.0 - alpha) * base.detach()
    mixed = alpha * finetuned.double() + (1.0 - alpha) * base.double()
    return torch.round(mixed).to(base.dtype)


def interpolate_state(base: dict, finetuned: dict, alpha: float) -> dict:
    """Interpolate two state dicts of the same architecture, key by key.

    Arguments
    ---------
    base, finetuned : dict
        ``state_dict()`` of the base and of the fine-tuned module.
    alpha : float
        In [0, 1]: 0 gives ``base``, 1 ``finetuned``.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        The keys or shapes differ (another architecture, or adapters in one).

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> mid = interpolate_state(a.state_dict(), b.state_dict(), 0.5)
    >>> torch.allclose(mid["bias"], (a.bias + b.bias) / 2)
    True
    """
    if set(base) != set(finetuned):
        only = sorted(set(base) ^ set(finetuned))
        raise ValueError(
            "Cannot average models of different architectures: keys only in one "
            f"of them: {only[:4]}{' ...' if len(only) > 4 else ''}. A model "
            "fine-tuned with adapters is not averaged (remove the adapters, or "
            "use the adapted model as it is)."
        )
    out = {}
    for key, value in base.items():
        other = finetuned[key]
        if value.shape != other.shape:
            raise ValueError(
                f"Cannot average {key}: shape {tuple(value.shape)} in the base, "
                f"{tuple(other.shape)} in the fine-tuned model."
            )
        out[key] = interpolate(value, other, alpha)
    return out


def average_head_state(
    base: dict,
    base_tokens: list[str],
    finetuned: dict,
    finetuned_tokens: list[str],
    alpha: float,
) -> dict:
    """Interpolate the CTC head over the tokens both models have.

    Row ``i`` of the result is token ``finetuned_tokens[i]``: averaged with the
    base's row of the same token when the base has it, the fine-tuned row as it
    is otherwise.

    Arguments
    ---------
    base, finetuned : dict
        Head state dicts (``w.weight`` ``[tokens, C]``, ``w.bias``).
    base_tokens, finetuned_tokens : list of str
        The row order of each head.
    alpha : float
        In [0, 1].

    Returns
    -------
    dict
        A state dict for the fine-tuned head.

    Example
    -------
    >>> base = {"w.weight": torch.zeros(2, 1), "w.bias": torch.zeros(2)}
    >>> ft = {"w.weight": torch.ones(3, 1), "w.bias": torch.ones(3)}
    >>> out = average_head_state(base, ["<b>", "a"], ft, ["<b>", "b", "a"], 0.5)
    >>> out["w.bias"].tolist()
    [0.5, 1.0, 0.5]
    """
    alpha = _check_alpha(alpha)
    where = {token: row for row, token in enumerate(base_tokens)}
    out = {}
    for key, value in finetuned.items():
        mixed = value.detach().clone()
        if key not in base:
            raise ValueError(f"The base head has no {key!r}: another head class?")
        for row, token in enumerate(finetuned_tokens):
            if token in where:
                mixed[row] = interpolate(base[key][where[token]], value[row], alpha)
        out[key] = mixed
    return out


@torch.no_grad()
def recompute_batchnorm(
    module: torch.nn.Module, batches: Iterable, forward: Callable[[object], object]
) -> int:
    """Re-estimate every BatchNorm's running statistics on ``batches``.

    The statistics are reset and accumulated as a plain average over the
    batches (``momentum=None``); only BatchNorm layers are in training mode
    during the passes (no dropout), and no weight changes.

    Arguments
    ---------
    module : torch.nn.Module
        Holds the BatchNorm layers (e.g. the Brain's modules).
    batches : iterable
        The batches to run.
    forward : callable
        ``forward(batch)`` runs the model on one batch.

    Returns
    -------
    int
        The number of batches used.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    >>> data = [torch.randn(8, 3) + 5 for _ in range(4)]
    >>> recompute_batchnorm(net, data, net)
    4
    >>> bool(net[1].running_mean.abs().sum() > 0)
    True
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    modes = {m: m.training for m in module.modules()}
    momenta = {m: m.momentum for m in norms}
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
        norm.train()
    count = 0
    try:
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for norm in norms:
            norm.momentum = momenta[norm]
        for m, mode in modes.items():
            m.train(mode)
    return count


def load_run_model(
    run: str | os.PathLike,
    base: str | os.PathLike | None = None,
    min_key: str = BEST_KEY,
):
    """The fine-tuned model of a recipe run (its best checkpoint), or a hub folder.

    Arguments
    ---------
    run : path
        A recipe's output folder (or one ``save/CKPT+*`` folder of it): the
        checkpoint with the lowest ``min_key`` is loaded
        (:func:`xlt_plugin.runs.find_best_checkpoint`), into the architecture of
        its ``model/`` folder or else of ``base``. A hub-layout folder is loaded
        as it is (:func:`xlt_plugin.pretrained.load_pretrained`).
    base : path, optional
        The base model, for the architecture and features of a run that has not
        written its ``model/`` folder.
    min_key : str
        Checkpoint meta key to minimise.

    Returns
    -------
    (PretrainedCTC, str, Path)
        The model (its ``tokens`` in head-row order), where it came from, and
        its token file (``CTCTextEncoder`` format).
    """
    from speechbrain.dataio.encoder import CTCTextEncoder
    from speechbrain.nnet.linear import Linear
    from speechbrain.processing.features import InputNormalization
    from speechbrain.utils.checkpoints import Checkpointer

    from xlt_plugin.pretrained import PretrainedCTC, build_features
    from xlt_plugin.tokens import load_tokens

    run = Path(run)
    if (run / CONFIG_FILE).is_file():
        return load_pretrained(run), str(run), run / TOKENS_FILE
    checkpoint = find_best_checkpoint(run, min_key=min_key)
    run_dir = run_folder_of(run)
    model = run_dir / "model"
    arch = model if (model / CONFIG_FILE).is_file() else base
    if arch is None:
        raise ValueError(
            f"{run_dir} has no model/ folder (the run stopped early): give the base "
            "model too, for the architecture."
        )
    config = read_config(arch)
    encoder = build_encoder(arch)
    tokens_file = run_dir / "save" / TOKENS_FILE
    if not tokens_file.is_file():
        raise ValueError(f"{tokens_file} is missing: the run's token list is gone.")
    tokenizer = CTCTextEncoder()
    tokenizer.load(tokens_file)
    tokenizer.ignore_len()
    head = Linear(input_size=encoder.output_size, n_neurons=len(tokenizer))
    normalize = InputNormalization(norm_type=config["normalize"]["norm_type"])
    loader = Checkpointer(
        checkpoint.path.parent, recoverables={"encoder": encoder, "head": head}
    )
    loader.add_recoverable("normalize", normalize, optional_load=True)
    loader.load_checkpoint(checkpoint)
    loaded = PretrainedCTC(
        encoder=encoder.eval(),
        head=head.eval(),
        normalize=normalize.eval(),
        compute_features=build_features(arch).eval(),
        tokens=load_tokens(tokenizer),
        blank_index=int(tokenizer.get_blank_index()),
        config=config,
    )
    return loaded, str(checkpoint.path), tokens_file


def average_run(
    base: str | os.PathLike,
    finetuned: str | os.PathLike,
    alpha: float,
    out: str | os.PathLike,
    min_key: str = BEST_KEY,
) -> Path:
    """Write ``alpha * finetuned + (1 - alpha) * base`` in hub layout.

    What ``xlt average`` runs. BatchNorm statistics are averaged (re-estimating
    them needs data: the recipes' ``average_batchnorm: recompute``).

    Arguments
    ---------
    base : path
        The base model (hub-layout folder).
    finetuned : path
        A recipe run fine-tuned from it (its best checkpoint), or a hub folder.
    alpha : float
        In [0, 1]: 0 writes the base, 1 the fine-tuned model.
    out : path
        The folder to write (replaced); :func:`~xlt_plugin.pretrained.load_pretrained`
        opens it, and it is a ``pretrained_path``.
    min_key : str
        Checkpoint meta key to minimise.

    Returns
    -------
    Path
    """
    alpha = _check_alpha(alpha)
    base_model = load_pretrained(base)
    from speechbrain.dataio.encoder import CTCTextEncoder

    tuned, origin, tokens_file = load_run_model(finetuned, base=base, min_key=min_key)
    encoder = tuned.encoder
    encoder.load_state_dict(
        interpolate_state(base_model.encoder.state_dict(), encoder.state_dict(), alpha)
    )
    tuned.head.load_state_dict(
        average_head_state(
            base_model.head.state_dict(),
            base_model.tokens,
            tuned.head.state_dict(),
            tuned.tokens,
            alpha,
        )
    )
    tokenizer = CTCTextEncoder()
    tokenizer.load(tokens_file)
    tokenizer.ignore_len()
    metadata = dict(tuned.config.get("metadata", {}))
    metadata.setdefault(
        "language", base_model.config.get("metadata", {}).get("language")
    )
    metadata["averaged"] = {
        "alpha": alpha,
        "base": str(base),
        "finetuned": origin,
        "batchnorm": "averaged",
    }
    written = save_pretrained(
        out,
        encoder=encoder,
        head=tuned.head,
        tokenizer=tokenizer,
        features=dict(base_model.config["features"]),
        normalize=tuned.normalize,
        metadata=metadata,
    )
    logger.info("Averaged %s and %s at alpha %s into %s", base, origin, alpha, written)
    return written
