"""QuartzNet and Jasper CTC encoders as SpeechBrain lobes.

The encoders of the NeMo papers (Jasper, arXiv 1904.03288; QuartzNet, arXiv
1910.10261), time-first like every SpeechBrain lobe: ``[batch, time, features]`` in,
``[batch, time', channels]`` out. The CTC output layer (the papers' "C4", a 1x1 conv
with one row per token) is not part of the encoder: the transfer recipes replace it
for each new alphabet, so it lives in the model's head.

Layout (an encoder is a stack of blocks):

- ``prologue``: one block, "C1", with a stride (2 by default) on its first conv;
- ``blocks``: an ``nn.ModuleList`` with one entry per B-block repeat
  (``quartznet15x5`` has ``blocks.0`` .. ``blocks.14``), each with R sub-blocks and
  a residual path;
- ``epilogue``: an ``nn.ModuleList`` of the closing blocks ("C2" with dilation 2,
  "C3" 1x1).

Inside every block (``JasperBlock``) the submodules are numbered as in NeMo's
``JasperBlock``, so a NeMo checkpoint maps onto this one key by key:

- ``mconv``: per sub-block repeat ``[depthwise conv, pointwise conv, BatchNorm]``
  (separable) or ``[conv, BatchNorm]`` (dense), followed, except after the last
  repeat, by ``[ReLU, Dropout]`` (no parameters, but they take indices, as in NeMo);
  a conv is a ``MaskedConv1d`` whose weight is ``conv.weight``;
- ``res``: one ``[pointwise conv, BatchNorm]`` pair per residual input (one for a
  plain residual; one per earlier block output with dense residuals);
- ``mout``: ``[ReLU, Dropout]`` applied after the residual sum.

Mapping from a NeMo ``EncDecCTCModel`` state dict: with ``B`` the number of entries
of ``blocks``,

- ``encoder.encoder.0.<rest>`` -> ``prologue.<rest>``
- ``encoder.encoder.{i}.<rest>`` -> ``blocks.{i-1}.<rest>`` for ``1 <= i <= B``
- ``encoder.encoder.{i}.<rest>`` -> ``epilogue.{i-1-B}.<rest>`` for ``i > B``

where ``<rest>`` is unchanged (``mconv.{j}.conv.weight``, ``mconv.{j}.weight``,
``mconv.{j}.running_mean``, ..., ``res.{p}.0.conv.weight``, ``res.{p}.1.bias``).
NeMo's ``decoder.decoder_layers.0`` (a Conv1d with kernel 1) is the CTC head:
its weight ``[tokens, C, 1]`` squeezed is a ``Linear`` weight.

Presets (``QUARTZNET_PRESETS``): ``quartznet5x5``, ``quartznet15x5`` and
``jasper10x5`` follow NeMo's configs; ``jasper10x5`` is the published dense-residual
variant (Jasper 10x5 DR: each block's residual sums 1x1 projections of the prologue
and of every earlier block output) with one dropout (0.2) for all blocks where NeMo
raises it to 0.3-0.4 in the last blocks. ``quartznet_tiny``, ``quartznet_small`` and
``quartznet_medium`` are small variants sized for CPU training.

Authors
 * xlt_plugin contributors 2025
"""

from __future__ import annotations

import copy
import difflib
import math

import torch
from torch import nn

_INT_FIELDS = (
    "prologue_channels",
    "prologue_kernel",
    "prologue_stride",
    "block_repeats",
    "repeats",
)
_LIST_FIELDS = (
    "channels",
    "kernel_sizes",
    "dilations",
    "epilogue_channels",
    "epilogue_kernels",
    "epilogue_dilations",
)
_BOOL_FIELDS = ("separable", "residual", "dense_residual")
# Fields of the architecture, in the order ``QuartzNet.config`` lists them.
_FIELDS = (
    "prologue_channels",
    "prologue_kernel",
    "prologue_stride",
    "channels",
    "kernel_sizes",
    "dilations",
    "block_repeats",
    "repeats",
    "epilogue_channels",
    "epilogue_kernels",
    "epilogue_dilations",
    "separable",
    "residual",
    "dense_residual",
    "dropout",
    "init_mode",
)
_INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")

_QUARTZNET_5x5 = dict(
    prologue_channels=256,
    prologue_kernel=33,
    prologue_stride=2,
    channels=[256, 256, 512, 512, 512],
    kernel_sizes=[33, 39, 51, 63, 75],
    dilations=[1, 1, 1, 1, 1],
    block_repeats=1,
    repeats=5,
    epilogue_channels=[512, 1024],
    epilogue_kernels=[87, 1],
    epilogue_dilations=[2, 1],
    separable=True,
    residual=True,
    dense_residual=False,
    dropout=0.0,
    init_mode="xavier_uniform",
)


def _quartznet(**changes) -> dict:
    """QuartzNet 5x5 fields with ``changes``; lists are not shared between presets."""
    return copy.deepcopy(dict(_QUARTZNET_5x5, **changes))


QUARTZNET_PRESETS: dict[str, dict] = {
    # ~0.1M parameters: unit tests and smoke runs.
    "quartznet_tiny": _quartznet(
        prologue_channels=64,
        prologue_kernel=11,
        channels=[64, 96, 96],
        kernel_sizes=[11, 13, 15],
        dilations=[1, 1, 1],
        repeats=2,
        epilogue_channels=[96, 128],
        epilogue_kernels=[17, 1],
    ),
    # ~0.3M: between tiny and small (the base-size ladder tiny < mini < small <
    # medium of recipes/EnglishBase/README.md).
    "quartznet_mini": _quartznet(
        prologue_channels=128,
        prologue_kernel=17,
        channels=[128, 128, 128, 128, 128],
        kernel_sizes=[13, 15, 17, 19, 21],
        repeats=2,
        epilogue_channels=[128, 256],
        epilogue_kernels=[25, 1],
    ),
    # ~0.7M: the CPU study's base model (NOTES: ~90x realtime training on 2 cores).
    "quartznet_small": _quartznet(
        prologue_channels=192,
        prologue_kernel=21,
        channels=[192, 192, 192, 192, 192],
        kernel_sizes=[13, 15, 17, 19, 21],
        repeats=2,
        epilogue_channels=[192, 384],
        epilogue_kernels=[29, 1],
    ),
    # ~2.5M: the "larger base" of the CPU study, several times quartznet_small.
    "quartznet_medium": _quartznet(
        prologue_channels=256,
        prologue_kernel=33,
        channels=[256, 256, 320, 320, 384],
        kernel_sizes=[17, 21, 25, 29, 33],
        repeats=3,
        epilogue_channels=[384, 768],
        epilogue_kernels=[41, 1],
    ),
    "quartznet5x5": _quartznet(),
    "quartznet15x5": _quartznet(block_repeats=3),
    # Jasper: full (not separable) convolutions, dense residuals, dropout 0.2.
    "jasper10x5": _quartznet(
        prologue_kernel=11,
        channels=[256, 384, 512, 640, 768],
        kernel_sizes=[11, 13, 17, 21, 25],
        block_repeats=2,
        epilogue_channels=[896, 1024],
        epilogue_kernels=[29, 1],
        separable=False,
        dense_residual=True,
        dropout=0.2,
    ),
}


class MaskedConv1d(nn.Module):
    """A 1D convolution with 'same' padding that zeroes padding frames first.

    Zeroing the frames past each sequence's length before the convolution makes a
    padded batch give, on its valid frames, the output each sequence gives alone
    (NeMo's ``MaskedConv1d`` does the same). Kernel-1 convolutions skip the mask:
    they do not mix frames, so padding cannot leak into valid ones.

    Arguments
    ---------
    in_channels : int
        Number of input channels.
    out_channels : int
        Number of output channels.
    kernel_size : int
        Odd kernel size.
    stride : int
        Time stride; the output has ``ceil(T / stride)`` frames.
    dilation : int
        Dilation; the padding is ``dilation * (kernel_size - 1) // 2``.
    groups : int
        Convolution groups (``in_channels`` for a depthwise convolution).

    Example
    -------
    >>> conv = MaskedConv1d(8, 16, kernel_size=5, stride=2)
    >>> y, lengths = conv(torch.rand(2, 8, 11), torch.tensor([11, 6]))
    >>> y.shape, lengths.tolist()
    (torch.Size([2, 16, 6]), [6, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(
                f"MaskedConv1d: kernel_size={kernel_size} is even; 'same' padding "
                "needs an odd kernel size."
            )
        self.stride = stride
        self.use_mask = kernel_size > 1
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        )

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Convolves ``x`` ``[batch, channels, time]``.

        Arguments
        ---------
        x : torch.Tensor
            Input, channels first.
        lengths : torch.Tensor, optional
            Absolute valid frames per sequence (``[batch]``, integer); None means
            every frame is valid.

        Returns
        -------
        y : torch.Tensor
            Output ``[batch, out_channels, ceil(time / stride)]``.
        lengths : torch.Tensor or None
            Valid output frames per sequence.
        """
        if lengths is None:
            return self.conv(x), None
        if self.use_mask:
            frames = torch.arange(x.shape[-1], device=x.device)
            mask = frames.unsqueeze(0) < lengths.unsqueeze(1)
            x = x * mask.unsqueeze(1).to(x.dtype)
        # Odd kernel + 'same' padding: out = ceil(in / stride).
        lengths = torch.div(
            lengths + self.stride - 1, self.stride, rounding_mode="floor"
        )
        return self.conv(x), lengths


class JasperBlock(nn.Module):
    """One Jasper/QuartzNet block: R conv sub-blocks, a residual sum, ReLU, dropout.

    Works channels first (``[batch, channels, time]``), like NeMo's block, whose
    submodule numbering it keeps (see the module docstring).

    Arguments
    ---------
    in_channels : int
        Channels of the block input.
    out_channels : int
        Channels of every sub-block output.
    kernel_size : int
        Odd kernel size of the time convolutions.
    repeat : int
        Number R of sub-blocks.
    stride : int
        Time stride of the first convolution.
    dilation : int
        Dilation of the time convolutions.
    dropout : float
        Dropout probability after each ReLU.
    separable : bool
        Time-channel separable convolutions (depthwise + pointwise, QuartzNet)
        instead of dense ones (Jasper). A kernel-1 convolution is always a plain
        pointwise convolution (as in NeMo's QuartzNet "C3").
    residual_channels : list of int, optional
        Channels of each residual input: ``[in_channels]`` for a plain residual,
        the channels of every earlier output for a dense residual, empty or None
        for no residual.

    Example
    -------
    >>> block = JasperBlock(16, 32, kernel_size=7, repeat=2, residual_channels=[16])
    >>> x = torch.rand(2, 16, 40)
    >>> y, lengths = block([x], torch.tensor([40, 25]))
    >>> y.shape, lengths.tolist()
    (torch.Size([2, 32, 40]), [40, 25])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        repeat: int = 1,
        stride: int = 1,
        dilation: int = 1,
        dropout: float = 0.0,
        separable: bool = True,
        residual_channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        residual_channels = list(residual_channels or [])
        if residual_channels and stride != 1:
            raise ValueError(
                "JasperBlock: a residual block cannot have stride "
                f"{stride}; put the stride in a block without residual."
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(repeat):
            first = index == 0
            layers.extend(
                self._conv_bn(
                    channels,
                    out_channels,
                    kernel_size,
                    stride if first else 1,
                    dilation,
                    separable,
                )
            )
            if index < repeat - 1:
                layers.extend([nn.ReLU(inplace=True), nn.Dropout(dropout)])
            channels = out_channels
        self.mconv = nn.ModuleList(layers)
        self.res = None
        if residual_channels:
            self.res = nn.ModuleList(
                nn.ModuleList(self._conv_bn(c, out_channels, 1, 1, 1, False))
                for c in residual_channels
            )
        self.mout = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(dropout))
        # A residual bottleneck adapter after the block (None: no adapter); see
        # xlt_plugin.lobes.adapters.add_adapters. Its keys are not in a base's
        # state dict: loading one keeps the adapter as it is.
        self.adapter: nn.Module | None = None

    def _load_from_state_dict(
        self,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,
        unexpected_keys,
        error_msgs,
    ):
        """As torch's; a state dict without adapter keys keeps the adapter.

        Overridden so that a base model's weights load (strictly) into an
        adapted encoder: the adapter's own tensors fill the keys the base lacks.
        """
        if self.adapter is not None:
            own = prefix + "adapter."
            if not any(key.startswith(own) for key in state_dict):
                for key, value in self.adapter.state_dict().items():
                    state_dict[own + key] = value
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )

    @staticmethod
    def _conv_bn(
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        dilation: int,
        separable: bool,
    ) -> list[nn.Module]:
        """Returns [depthwise, pointwise, BN] or [conv, BN]."""
        if separable and kernel_size > 1:
            convs = [
                MaskedConv1d(
                    in_channels,
                    in_channels,
                    kernel_size,
                    stride=stride,
                    dilation=dilation,
                    groups=in_channels,
                ),
                MaskedConv1d(in_channels, out_channels, 1),
            ]
        else:
            convs = [
                MaskedConv1d(
                    in_channels, out_channels, kernel_size, stride, dilation=dilation
                )
            ]
        # eps=1e-3 as NeMo, so imported running statistics mean the same thing.
        return convs + [nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.1)]

    def forward(
        self, xs: list[torch.Tensor], lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Runs the block.

        Arguments
        ---------
        xs : list of torch.Tensor
            ``xs[-1]`` is the block input; with residual inputs, ``xs[p]`` feeds the
            residual path ``res[p]`` (all ``[batch, channels, time]``).
        lengths : torch.Tensor, optional
            Absolute valid frames of the input per sequence.

        Returns
        -------
        out : torch.Tensor
            Block output ``[batch, out_channels, time']``.
        lengths : torch.Tensor or None
            Valid output frames per sequence.
        """
        out, out_lengths = xs[-1], lengths
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                out, out_lengths = layer(out, out_lengths)
            else:
                out = layer(out)
        if self.res is not None:
            if len(xs) != len(self.res):
                raise ValueError(
                    f"JasperBlock has {len(self.res)} residual inputs but got "
                    f"{len(xs)} tensors."
                )
            for x, (conv, norm) in zip(xs, self.res, strict=True):
                out = out + norm(conv(x, lengths)[0])
        out = self.mout(out)
        if self.adapter is not None:
            out = self.adapter(out)
        return out, out_lengths


class QuartzNet(nn.Module):
    """QuartzNet (separable) or Jasper (dense) CTC encoder, time first.

    Every field has the value of ``preset`` (``quartznet5x5`` when ``preset`` is
    None) unless given as a keyword argument.

    Arguments
    ---------
    input_size : int
        Number of input features per frame (e.g. 80 fbank).
    preset : str, optional
        One of ``QUARTZNET_PRESETS``: quartznet_tiny, quartznet_small,
        quartznet_medium, quartznet5x5, quartznet15x5, jasper10x5.
    **overrides
        Architecture fields, overriding the preset:

        - ``prologue_channels``, ``prologue_kernel``, ``prologue_stride`` (int):
          the "C1" block (stride = the encoder's time downsampling).
        - ``channels``, ``kernel_sizes``, ``dilations`` (list of int, one per
          distinct B-block).
        - ``block_repeats`` (int): times each B-block is repeated (S; 3 makes
          QuartzNet 15x5 out of 5 distinct blocks).
        - ``repeats`` (int): sub-blocks R per block.
        - ``epilogue_channels``, ``epilogue_kernels``, ``epilogue_dilations``
          (list of int): the closing blocks ("C2", "C3").
        - ``separable`` (bool): QuartzNet (True) or Jasper (False) convolutions.
        - ``residual`` (bool): residual paths in the B-blocks.
        - ``dense_residual`` (bool): each B-block adds projections of the prologue
          and all earlier block outputs (Jasper DR) instead of its own input.
        - ``dropout`` (float): dropout after every ReLU.
        - ``init_mode`` (str): conv init, one of xavier_uniform (NeMo's default),
          xavier_normal, kaiming_uniform, kaiming_normal.
    adapter_dim : int
        Bottleneck width of a zero-initialised residual adapter after every
        B-block (0: none, the default); see :mod:`xlt_plugin.lobes.adapters`.
    adapter_epilogue : bool
        Put adapters after the closing blocks too.

    Attributes
    ----------
    config : dict
        ``input_size`` and every resolved field above (plain ints, floats, bools,
        strings and lists; not the preset name): ``QuartzNet(**config)`` rebuilds
        the same architecture, so it can be written to a hub ``hyperparams.yaml``.
    output_size : int
        Channels of the last epilogue block (the CTC head's input size).
    time_stride : int
        Total time downsampling (the prologue stride).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> enc = QuartzNet(input_size=80, preset="quartznet_tiny")
    >>> x = torch.rand(2, 100, 80)
    >>> enc(x, torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 50, 128])
    >>> enc.output_size, enc.time_stride
    (128, 2)
    >>> enc.output_lengths(torch.tensor([100, 60, 59])).tolist()
    [50, 30, 30]
    >>> QuartzNet(**enc.config).config == enc.config
    True
    """

    def __init__(
        self,
        input_size: int = 64,
        preset: str | None = None,
        adapter_dim: int = 0,
        adapter_epilogue: bool = False,
        **overrides,
    ) -> None:
        super().__init__()
        self.config = _resolve_config(input_size, preset, overrides)
        cfg = self.config
        self.output_size: int = cfg["epilogue_channels"][-1]
        self.time_stride: int = cfg["prologue_stride"]
        self.dense_residual: bool = cfg["residual"] and cfg["dense_residual"]

        self.prologue = JasperBlock(
            input_size,
            cfg["prologue_channels"],
            cfg["prologue_kernel"],
            stride=cfg["prologue_stride"],
            dropout=cfg["dropout"],
            separable=cfg["separable"],
        )
        # Channels of the tensors a dense residual can draw from, in order.
        outputs = [cfg["prologue_channels"]]
        blocks = []
        for channels, kernel, dilation in zip(
            cfg["channels"], cfg["kernel_sizes"], cfg["dilations"], strict=True
        ):
            for _ in range(cfg["block_repeats"]):
                residual_channels = []
                if self.dense_residual:
                    residual_channels = list(outputs)
                elif cfg["residual"]:
                    residual_channels = [outputs[-1]]
                blocks.append(
                    JasperBlock(
                        outputs[-1],
                        channels,
                        kernel,
                        repeat=cfg["repeats"],
                        dilation=dilation,
                        dropout=cfg["dropout"],
                        separable=cfg["separable"],
                        residual_channels=residual_channels,
                    )
                )
                outputs.append(channels)
        self.blocks = nn.ModuleList(blocks)
        epilogue = []
        channels_in = outputs[-1]
        for channels, kernel, dilation in zip(
            cfg["epilogue_channels"],
            cfg["epilogue_kernels"],
            cfg["epilogue_dilations"],
            strict=True,
        ):
            epilogue.append(
                JasperBlock(
                    channels_in,
                    channels,
                    kernel,
                    dilation=dilation,
                    dropout=cfg["dropout"],
                    separable=cfg["separable"],
                )
            )
            channels_in = channels
        self.epilogue = nn.ModuleList(epilogue)
        self.apply(lambda module: _init_weights(module, cfg["init_mode"]))
        if adapter_dim:
            from xlt_plugin.lobes.adapters import add_adapters

            add_adapters(self, adapter_dim, epilogue=adapter_epilogue)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encodes a batch of feature sequences.

        Arguments
        ---------
        x : torch.Tensor
            Features ``[batch, time, input_size]``.
        lengths : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain style, ``[batch]``). When given,
            padding frames are zeroed before every time convolution, so each
            sequence's valid output frames do not depend on the padding, and
            padding frames of the output are zero. The same relative lengths stay
            valid for the output.

        Returns
        -------
        torch.Tensor
            Encoded sequence ``[batch, ceil(time / time_stride), output_size]``.
        """
        input_size = self.config["input_size"]
        if x.dim() != 3 or x.shape[-1] != input_size:
            raise ValueError(
                f"QuartzNet expects features [batch, time, {input_size}], got shape "
                f"{tuple(x.shape)}; check input_size against the feature extractor."
            )
        abs_lengths = None
        if lengths is not None:
            abs_lengths = self._absolute_lengths(
                lengths, x.shape[0], x.shape[1], x.device
            )
        out, out_lengths = self.prologue([x.transpose(1, 2)], abs_lengths)
        outputs = [out]
        for block in self.blocks:
            out, out_lengths = block(outputs, out_lengths)
            # Dense residuals need every earlier output; otherwise keep only one.
            outputs = outputs + [out] if self.dense_residual else [out]
        for block in self.epilogue:
            out, out_lengths = block([out], out_lengths)
        if out_lengths is not None:
            frames = torch.arange(out.shape[-1], device=out.device)
            mask = frames.unsqueeze(0) < out_lengths.unsqueeze(1)
            out = out * mask.unsqueeze(1).to(out.dtype)
        return out.transpose(1, 2)

    def output_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        """Number of output frames for inputs of ``frames`` frames.

        Arguments
        ---------
        frames : torch.Tensor
            Absolute input frame counts (any shape).

        Returns
        -------
        torch.Tensor
            ``ceil(frames / time_stride)``, as int64.

        Example
        -------
        >>> QuartzNet(40, "quartznet_tiny").output_lengths(torch.tensor([7, 8]))
        tensor([4, 4])
        """
        frames = torch.as_tensor(frames)
        if frames.is_floating_point():
            frames = torch.ceil(frames)
        frames = frames.long()
        return torch.div(
            frames + self.time_stride - 1, self.time_stride, rounding_mode="floor"
        )

    @staticmethod
    def _absolute_lengths(
        lengths: torch.Tensor, batch: int, time: int, device: torch.device
    ) -> torch.Tensor:
        """Relative lengths -> absolute frame counts, checked."""
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (batch,):
            raise ValueError(
                f"QuartzNet: lengths must have shape [{batch}] (one relative length "
                f"per utterance), got {tuple(lengths.shape)}."
            )
        if lengths.numel() and (lengths.min() < 0 or lengths.max() > 1 + 1e-6):
            raise ValueError(
                "QuartzNet: lengths must be relative lengths in [0, 1] (SpeechBrain "
                f"style), got min {lengths.min().item()} max {lengths.max().item()}; "
                "divide absolute frame counts by the padded length."
            )
        return torch.round(lengths.float() * time).long().clamp(0, time).to(device)


def _resolve_config(input_size: int, preset: str | None, overrides: dict) -> dict:
    """Merges preset and overrides into a checked plain dict."""
    if preset is None:
        base = QUARTZNET_PRESETS["quartznet5x5"]
    elif preset in QUARTZNET_PRESETS:
        base = QUARTZNET_PRESETS[preset]
    else:
        raise ValueError(
            f"Unknown QuartzNet preset {preset!r}; available presets: "
            f"{', '.join(QUARTZNET_PRESETS)}."
        )
    unknown = [key for key in overrides if key not in _FIELDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hints.append(
                f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        raise TypeError(
            f"QuartzNet got unknown argument(s) {', '.join(hints)}; valid arguments: "
            f"input_size, preset, {', '.join(_FIELDS)}."
        )
    cfg = {"input_size": input_size}
    for key in _FIELDS:
        cfg[key] = copy.deepcopy(overrides.get(key, base[key]))
    if "dilations" not in overrides and len(cfg["kernel_sizes"]) != len(
        cfg["dilations"]
    ):
        # Changing the number of blocks without saying dilations means no dilation.
        cfg["dilations"] = [1] * len(cfg["kernel_sizes"])
    if "epilogue_dilations" not in overrides and len(cfg["epilogue_kernels"]) != len(
        cfg["epilogue_dilations"]
    ):
        cfg["epilogue_dilations"] = [1] * len(cfg["epilogue_kernels"])
    _check_config(cfg)
    return cfg


def _check_config(cfg: dict) -> None:
    """Raises a ValueError naming the first bad field and how to fix it."""

    def positive_int(name: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"QuartzNet: {name} must be a positive int, got {value!r}."
            )
        return value

    def odd(name: str, value: int) -> None:
        if value % 2 == 0:
            raise ValueError(
                f"QuartzNet: {name}={value} is even; 'same' padding needs odd kernel "
                f"sizes: use {value - 1} or {value + 1}."
            )

    positive_int("input_size", cfg["input_size"])
    for name in _INT_FIELDS:
        positive_int(name, cfg[name])
    odd("prologue_kernel", cfg["prologue_kernel"])
    for name in _LIST_FIELDS:
        value = cfg[name]
        if isinstance(value, tuple):
            value = cfg[name] = list(value)
        if not isinstance(value, list):
            raise ValueError(
                f"QuartzNet: {name} must be a list of ints, got {value!r}."
            )
        for index, item in enumerate(value):
            positive_int(f"{name}[{index}]", item)
    for group in (
        ("channels", "kernel_sizes", "dilations"),
        ("epilogue_channels", "epilogue_kernels", "epilogue_dilations"),
    ):
        sizes = {name: len(cfg[name]) for name in group}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"QuartzNet: {', '.join(group)} must have the same length (one "
                f"entry per block), got lengths {sizes}."
            )
    if not cfg["channels"]:
        raise ValueError("QuartzNet: channels is empty; give at least one B-block.")
    if not cfg["epilogue_channels"]:
        raise ValueError(
            "QuartzNet: epilogue_channels is empty; give at least one closing block "
            "(its channels are the encoder's output size)."
        )
    for name in ("kernel_sizes", "epilogue_kernels"):
        for index, kernel in enumerate(cfg[name]):
            odd(f"{name}[{index}]", kernel)
    for name in _BOOL_FIELDS:
        if not isinstance(cfg[name], bool):
            raise ValueError(
                f"QuartzNet: {name} must be true or false, got {cfg[name]!r}."
            )
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise ValueError(f"QuartzNet: dropout must be a float, got {dropout!r}.")
    if not 0.0 <= dropout < 1.0 or math.isnan(dropout):
        raise ValueError(f"QuartzNet: dropout must be in [0, 1), got {dropout}.")
    cfg["dropout"] = float(dropout)
    if cfg["init_mode"] not in _INIT_MODES:
        raise ValueError(
            f"QuartzNet: unknown init_mode {cfg['init_mode']!r}; use one of "
            f"{', '.join(_INIT_MODES)}."
        )


def _init_weights(module: nn.Module, mode: str) -> None:
    """NeMo-style init: convs by ``mode``, BatchNorm to identity."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        if mode == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight, gain=1.0)
        elif mode == "xavier_normal":
            nn.init.xavier_normal_(module.weight, gain=1.0)
        elif mode == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        else:
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        module.reset_running_stats()
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
