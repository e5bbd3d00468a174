"""Depthwise 2-D convolution (groups = channels, no bias) on channels-last maps through the Triton kernels of
rwkvseg.kernels.depthwise, differentiable in the input and the weight.

    depthwise_conv2d(x, weight, stride, padding)   x (B, C, H, W) channels_last, weight (C, 1, KH, KW),
                                                   padding P or (PH, PW) -> y (B, C, OH, OW) channels_last,
                                                      OH = (H + 2 PH - KH) // stride + 1 (OW likewise)
    DepthwiseConv2d                                nn.Conv2d (groups = channels, no bias) that runs
                                                   depthwise_conv2d where triton_route(x), F.conv2d
                                                   elsewhere (CPU, MPS, no Triton): the networks' layer

the same values as F.conv2d(x, weight, stride=stride, padding=padding, groups=C). It handles exactly what the
networks' depthwise convolutions are (the CNA layers of rwkvseg.layers, square; MS-RWKV-UNet's MCM, 1 x K and
K x 1): stride 1 or 2 on both axes, no bias, channels-last memory; anything else is refused with a ValueError.
Under autocast, x and weight are cast to the autocast dtype first, as F.conv2d does. Float32 accumulation
(float64 for float64 inputs); the weight gradient is deterministic.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

try:                                    # Triton is optional (Linux wheels only): without it F.conv2d runs
    from rwkvseg.kernels.depthwise import (depthwise_forward, depthwise_input_grad, depthwise_weight_grad,
                                           output_size)
except ImportError:
    depthwise_forward = None

STRIDES = (1, 2)


def _as_pair(value, name: str) -> tuple[int, int]:
    """One int or a pair of ints (the conv2d spelling) as (height, width)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise ValueError(f"depthwise_conv2d: {name} must be one int or two ints, got {value!r}")
    return pair


def _as_int(value, name: str) -> int:
    """An int, or a pair of equal ints (the conv2d spelling), as one int."""
    h, w = _as_pair(value, name)
    if h != w:
        raise ValueError(f"depthwise_conv2d: {name} must be one int or two equal ints, got {value}")
    return h


def check_inputs(x: Tensor, weight: Tensor, stride: int, padding: tuple[int, int]) -> None:
    """Raise ValueError, naming the problem, for anything the kernels do not handle."""
    if x.dim() != 4:
        raise ValueError(f"depthwise_conv2d: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    C = x.shape[1]
    if weight.dim() != 4 or weight.shape[0] != C or weight.shape[1] != 1:
        raise ValueError(f"depthwise_conv2d: weight must be (C, 1, KH, KW) with C = {C} (groups == channels), "
                         f"got shape {tuple(weight.shape)}")
    if stride not in STRIDES:
        raise ValueError(f"depthwise_conv2d: stride must be 1 or 2, got {stride}")
    if min(padding) < 0:
        raise ValueError(f"depthwise_conv2d: padding must be >= 0, got {padding}")
    if not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("depthwise_conv2d: x must be channels_last "
                         "(x.contiguous(memory_format=torch.channels_last))")
    if x.dtype != weight.dtype or not x.is_floating_point():
        raise ValueError(f"depthwise_conv2d: x and weight must share one floating dtype, got {x.dtype} and "
                         f"{weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"depthwise_conv2d: x and weight on different devices ({x.device}, {weight.device})")
    KH, KW = weight.shape[2:]
    if output_size(x.shape[2], KH, stride, padding[0]) < 1 or output_size(x.shape[3], KW, stride, padding[1]) < 1:
        raise ValueError(f"depthwise_conv2d: a {KH}x{KW} kernel with padding {padding} does not fit a "
                         f"{x.shape[2]}x{x.shape[3]} map")


def triton_available() -> bool:
    """True when the Triton kernels could be imported."""
    return depthwise_forward is not None


# Below this many channels F.conv2d is faster: the kernels' channel tiles are 32 or 64 wide, so a 3-channel map
# (the stem) wastes most of each tile (H100, batch 32, 256 x 256, fwd + bwd: 2.66 ms ours, 0.38 ms cuDNN).
MIN_CHANNELS = 16


def triton_route(x: Tensor) -> bool:
    """True where our kernels may take x: Triton is installed and x is a CUDA map in channels-last memory with at
    least MIN_CHANNELS channels (the networks' layers run F.conv2d on every other map)."""
    return (triton_available() and x.is_cuda and x.shape[1] >= MIN_CHANNELS
            and x.is_contiguous(memory_format=torch.channels_last))


# Which of the three computations runs on our kernels and which on cuDNN, per kernel size and stride: the faster
# one on an H100 at every depthwise shape of RWKV-UNet-T (batch 32, bfloat16, channels_last; the record
# rwkvseg/results/profile/depthwise_vs_cudnn.json of benchmarks/depthwise.py). cuDNN is faster at 5 x 5 for the
# forward (up to 3.5x at 120 channels, 64 x 64), the weight gradient (up to 4.6x) and the stride-1 input gradient
# (except at 64 channels, 128 x 128, where ours is 9 % faster). Ours are faster at 9 x 9 for all three (3.6-5.8x:
# cuDNN has no fast 9 x 9 depthwise kernel in bfloat16) and for the stride-2 input gradient (2.0-2.1x). Over the
# network's layers: 10.7 ms ours alone, 25.7 ms cuDNN alone, 8.4 ms split this way. The networks' DepthwiseConv2d
# layers are all 5 x 5 or 9 x 9 (RWKV-UNet, RWKV-SSS); other sizes follow the nearest measured one. A rectangular
# kernel goes by its longer side: MS-RWKV-UNet's MCM, run as 1 x 9 and 9 x 1 convolutions (rwkvseg.faa.MCM).
def runs_on_triton(part: str, kernel_size: int, stride: int) -> bool:
    """True where our kernel computes `part` ("forward", "input_grad" or "weight_grad") of a depthwise
    convolution with this kernel size (the longer side) and stride, False where cuDNN does."""
    if kernel_size >= 7:
        return True
    return part == "input_grad" and stride == 2


def _cudnn_grad(dy: Tensor, x: Tensor, weight: Tensor, stride: int, padding: tuple[int, int], part: str) -> Tensor:
    """cuDNN's input or weight gradient alone (aten.convolution_backward with one output asked for)."""
    mask = [part == "input_grad", part == "weight_grad", False]
    grads = torch.ops.aten.convolution_backward(dy, x, weight, None, [stride] * 2, list(padding), [1, 1], False,
                                                [0, 0], x.shape[1], mask)
    return grads[0] if part == "input_grad" else grads[1]


if triton_available():
    @torch.library.custom_op("rwkvseg::depthwise_forward", mutates_args=())
    def _forward_op(x: Tensor, weight: Tensor, stride: int, ph: int, pw: int, split: bool) -> Tensor:
        if not split or runs_on_triton("forward", max(weight.shape[2:]), stride):
            return depthwise_forward(x, weight, stride, (ph, pw))
        y = F.conv2d(x, weight, stride=stride, padding=(ph, pw), groups=x.shape[1])
        return y.contiguous(memory_format=torch.channels_last)

    @_forward_op.register_fake
    def _(x, weight, stride, ph, pw, split):
        shape = (x.shape[0], x.shape[1], output_size(x.shape[2], weight.shape[2], stride, ph),
                 output_size(x.shape[3], weight.shape[3], stride, pw))
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)

    @torch.library.custom_op("rwkvseg::depthwise_backward", mutates_args=())
    def _backward_op(dy: Tensor, x: Tensor, weight: Tensor, stride: int, ph: int, pw: int,
                     split: bool) -> tuple[Tensor, Tensor]:
        dy = dy.contiguous(memory_format=torch.channels_last)
        K = max(weight.shape[2:])
        if not split or runs_on_triton("input_grad", K, stride):
            dx = depthwise_input_grad(dy, weight, x.shape[2], x.shape[3], stride, (ph, pw))
        else:
            dx = _cudnn_grad(dy, x, weight, stride, (ph, pw), "input_grad")
            dx = dx.contiguous(memory_format=torch.channels_last)
        if not split or runs_on_triton("weight_grad", K, stride):
            dw = depthwise_weight_grad(x, dy, tuple(weight.shape[2:]), stride, (ph, pw)).to(weight.dtype)
        else:
            dw = _cudnn_grad(dy, x, weight, stride, (ph, pw), "weight_grad")
        return dx, dw.contiguous()                     # the fake says contiguous: (C, 1, KH, KW) strides

    @_backward_op.register_fake
    def _(dy, x, weight, stride, ph, pw, split):
        return torch.empty_like(x, memory_format=torch.channels_last), torch.empty_like(weight)

    def _setup_context(ctx, inputs, output):
        x, weight, stride, ph, pw, split = inputs
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.split = stride, (ph, pw), split

    def _backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw = _backward_op(dy, x, weight, ctx.stride, *ctx.padding, ctx.split)
        return dx, dw, None, None, None, None

    _forward_op.register_autograd(_backward, setup_context=_setup_context)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride=1, padding=0, *, split: bool = False) -> Tensor:
    """F.conv2d(x, weight, stride=stride, padding=padding, groups=C) for channels-last x (B, C, H, W) and
    weight (C, 1, KH, KW), by the Triton kernels; (B, C, OH, OW) channels_last in x's dtype. padding: one int or
    (PH, PW). split: each of the forward and the two gradients on our kernel or cuDNN's, whichever is faster
    (runs_on_triton)."""
    if not triton_available():
        raise RuntimeError("depthwise_conv2d needs the triton package (pip install triton); "
                           "F.conv2d(x, weight, stride=stride, padding=padding, groups=C) is the same operator")
    stride, padding = _as_int(stride, "stride"), _as_pair(padding, "padding")
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
    check_inputs(x, weight, stride, padding)
    return _forward_op(x, weight, stride, *padding, split)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise nn.Conv2d (groups = in = out channels, no bias; same parameters and state dict) whose
    forward runs depthwise_conv2d(..., split=True) on channels-last CUDA maps of at least MIN_CHANNELS
    channels where runs_on_triton gives our kernels a part (9 x 9 kernels; the input gradient of stride-2
    5 x 5 ones), and F.conv2d everywhere else (CPU, MPS, no Triton, contiguous maps, fewer channels, 5 x 5
    stride 1).

    Shapes: (B, C, H, W) -> (B, C, OH, OW); square kernel, stride 1 or 2, symmetric padding.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=False)
        self.triton = any(runs_on_triton(part, kernel_size, stride) for part in ("forward", "input_grad",
                                                                                  "weight_grad"))

    def forward(self, x: Tensor) -> Tensor:
        if self.triton and triton_route(x):
            return depthwise_conv2d(x, self.weight, self.stride, self.padding, split=True)
        return super().forward(x)
