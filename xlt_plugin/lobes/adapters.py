"""Residual bottleneck adapters for the QuartzNet/Jasper blocks.

An adapter (Houlsby et al. 2019; for ASR e.g. Kannan et al. 2019) is a small
residual branch after a block's output::

    y = x + up(relu(down(x)))        down: C -> N, up: N -> C (1x1 convolutions)

With ``up`` initialised to zero the branch adds exactly zero, so a freshly
adapted encoder computes what the base computes, bit for bit; fine-tuning only
the adapters (and the head) adapts to an accent or a domain while the base's own
weights stay untouched, and :func:`remove_adapters` gives the base back.

Adapters live in ``JasperBlock.adapter`` (``encoder.blocks.{i}.adapter.*``):
keys a base checkpoint does not have. A block with an adapter fills them from
its current adapter when it loads a state dict that lacks them, so the base's
weights still load (strictly) into the adapted encoder.

This module works on any encoder whose blocks have an ``adapter`` attribute and
a BatchNorm closing their ``mconv`` (``xlt_plugin.lobes.quartznet``), without
importing that module.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ADAPTER_PATTERN",
    "BottleneckAdapter",
    "add_adapters",
    "adapter_parameter_names",
    "has_adapters",
    "remove_adapters",
]

#: A freeze pattern (``xlt_plugin.freeze``) naming every adapter of an encoder
#: held as ``encoder`` in the Brain's modules.
ADAPTER_PATTERN = "encoder.*.adapter"


class BottleneckAdapter(nn.Module):
    """``x + up(relu(down(x)))`` on channels-first features, ``up`` starting at zero.

    Arguments
    ---------
    channels : int
        Channels of the block output it adapts.
    dim : int
        Bottleneck width N.

    Example
    -------
    >>> adapter = BottleneckAdapter(channels=8, dim=2)
    >>> x = torch.rand(3, 8, 5)
    >>> torch.equal(adapter(x), x)  # zero-initialised: the identity
    True
    >>> sum(p.numel() for p in adapter.parameters())  # 8*2+2 + 2*8+8
    42
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"adapter_dim must be a positive int, got {dim!r}.")
        self.down = nn.Conv1d(channels, dim, kernel_size=1)
        self.up = nn.Conv1d(dim, channels, kernel_size=1)
        nn.init.kaiming_uniform_(self.down.weight, nonlinearity="relu")
        nn.init.zeros_(self.down.bias)
        self.reset_up()

    def reset_up(self) -> None:
        """Zero the up-projection: the adapter becomes the identity again."""
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapts ``x`` ``[batch, channels, time]`` (pointwise: frames do not mix)."""
        return x + self.up(torch.relu(self.down(x)))


def _adaptable_blocks(
    encoder: nn.Module, epilogue: bool
) -> list[tuple[str, nn.Module]]:
    parts = ["blocks"] + (["epilogue"] if epilogue else [])
    found = []
    for part in parts:
        for index, block in enumerate(getattr(encoder, part, None) or []):
            if hasattr(block, "adapter") and hasattr(block, "mconv"):
                found.append((f"{part}.{index}", block))
    if not found:
        raise TypeError(
            f"{type(encoder).__name__} has no blocks that take adapters (QuartzNet "
            "or Jasper from xlt_plugin.lobes.quartznet do)."
        )
    return found


def add_adapters(encoder: nn.Module, dim: int, epilogue: bool = False) -> list[str]:
    """Put a zero-initialised adapter after every B-block (and epilogue block).

    The encoder's outputs do not change (the adapters start as the identity).
    ``encoder.config`` gains ``adapter_dim`` (and ``adapter_epilogue``) so that
    ``QuartzNet(**encoder.config)`` rebuilds the adapted architecture (an exported
    adapted model loads again). Blocks that already have an adapter keep it.

    Arguments
    ---------
    encoder : torch.nn.Module
        A ``QuartzNet`` (or Jasper) encoder.
    dim : int
        Bottleneck width N of every adapter.
    epilogue : bool
        Adapt the closing blocks too (default: the B-blocks only).

    Returns
    -------
    list of str
        The adapted blocks, e.g. ``["blocks.0", "blocks.1"]``.

    Example
    -------
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> _ = torch.manual_seed(0)
    >>> enc = QuartzNet(input_size=20, preset="quartznet_tiny").eval()
    >>> x = torch.rand(2, 30, 20)
    >>> before = enc(x)
    >>> add_adapters(enc, dim=4)
    ['blocks.0', 'blocks.1', 'blocks.2']
    >>> torch.equal(enc(x), before), enc.config["adapter_dim"]
    (True, 4)
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"adapter_dim must be a positive int, got {dim!r}.")
    added = []
    for name, block in _adaptable_blocks(encoder, epilogue):
        if block.adapter is None:
            channels = block.mconv[-1].num_features  # the block's closing BatchNorm
            block.adapter = BottleneckAdapter(channels, dim)
            # Same device and dtype as the block it adapts.
            ref = next(block.parameters())
            block.adapter.to(device=ref.device, dtype=ref.dtype)
        added.append(name)
    config = getattr(encoder, "config", None)
    if isinstance(config, dict):
        config["adapter_dim"] = dim
        if epilogue:
            config["adapter_epilogue"] = True
    return added


def remove_adapters(encoder: nn.Module) -> list[str]:
    """Take every adapter out: the encoder is the base architecture again.

    With the base's weights untouched (adapters trained alone) the result is the
    base model, bit for bit.

    Arguments
    ---------
    encoder : torch.nn.Module
        An encoder that went through :func:`add_adapters`.

    Returns
    -------
    list of str
        The blocks whose adapter was removed.

    Example
    -------
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> enc = QuartzNet(input_size=20, preset="quartznet_tiny")
    >>> keys = set(enc.state_dict())
    >>> _ = add_adapters(enc, dim=4)
    >>> remove_adapters(enc)
    ['blocks.0', 'blocks.1', 'blocks.2']
    >>> set(enc.state_dict()) == keys, "adapter_dim" in enc.config
    (True, False)
    """
    removed = []
    for name, block in _adaptable_blocks(encoder, epilogue=True):
        if block.adapter is not None:
            block.adapter = None
            removed.append(name)
    config = getattr(encoder, "config", None)
    if isinstance(config, dict):
        config.pop("adapter_dim", None)
        config.pop("adapter_epilogue", None)
    return removed


def has_adapters(encoder: nn.Module) -> bool:
    """Whether any block of ``encoder`` holds an adapter.

    Example
    -------
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> has_adapters(QuartzNet(input_size=20, preset="quartznet_tiny", adapter_dim=2))
    True
    """
    return any(
        getattr(module, "adapter", None) is not None for module in encoder.modules()
    )


def adapter_parameter_names(module: nn.Module) -> list[str]:
    """Names of the adapter parameters of ``module`` (any nesting).

    Example
    -------
    >>> from xlt_plugin.lobes.quartznet import QuartzNet
    >>> enc = QuartzNet(input_size=20, preset="quartznet_tiny", adapter_dim=2)
    >>> adapter_parameter_names(enc)[:2]
    ['blocks.0.adapter.down.weight', 'blocks.0.adapter.down.bias']
    """
    return [name for name, _ in module.named_parameters() if ".adapter." in f".{name}"]
