"""Depthwise 2-D convolution (groups = channels, no bias) on channels-last maps through the Triton kernels of
rwkvseg.kernels.depthwise, differentiable in the input and the weight.

    depthwise_conv2d(x, weight, stride, padding)   x (B, C, H, W) channels_last, weight (C, 1, K, K)
                                                   -> y (B, C, OH, OW) channels_last,
                                                      OH = (H + 2 padding - K) // stride + 1 (OW likewise)
    DepthwiseConv2d                                nn.Conv2d (groups = channels, no bias) that runs
                                                   depthwise_conv2d on channels-last CUDA maps, F.conv2d
                                                   elsewhere (CPU, MPS, no Triton): the networks' layer

the same values as F.conv2d(x, weight, stride=stride, padding=padding, groups=C). It handles exactly what the
networks' depthwise convolutions are (the CNA layers of rwkvseg.layers): stride 1 or 2, square kernels, no
bias, channels-last memory; anything else is refused with a ValueError. Under autocast, x and weight are cast
to the autocast dtype first, as F.conv2d does. Float32 accumulation (float64 for float64 inputs); the weight
gradient is deterministic.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

try:                                    # Triton is optional (Linux wheels only): without it F.conv2d runs
    from rwkvseg.kernels.depthwise import (depthwise_forward, depthwise_input_grad, depthwise_weight_grad,
                                           output_size)
except ImportError:
    depthwise_forward = None

STRIDES = (1, 2)


def _as_int(value, name: str) -> int:
    """An int, or a pair of equal ints (the conv2d spelling), as one int."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"depthwise_conv2d: {name} must be one int or two equal ints, got {value}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"depthwise_conv2d: {name} must be an int, got {value!r}")
    return value


def check_inputs(x: Tensor, weight: Tensor, stride: int, padding: int) -> None:
    """Raise ValueError, naming the problem, for anything the kernels do not handle."""
    if x.dim() != 4:
        raise ValueError(f"depthwise_conv2d: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    C = x.shape[1]
    if weight.dim() != 4 or weight.shape[0] != C or weight.shape[1] != 1:
        raise ValueError(f"depthwise_conv2d: weight must be (C, 1, K, K) with C = {C} (groups == channels), "
                         f"got shape {tuple(weight.shape)}")
    if weight.shape[2] != weight.shape[3]:
        raise ValueError(f"depthwise_conv2d: the kernel must be square, got {tuple(weight.shape[2:])}")
    if stride not in STRIDES:
        raise ValueError(f"depthwise_conv2d: stride must be 1 or 2, got {stride}")
    if padding < 0:
        raise ValueError(f"depthwise_conv2d: padding must be >= 0, got {padding}")
    if not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("depthwise_conv2d: x must be channels_last "
                         "(x.contiguous(memory_format=torch.channels_last))")
    if x.dtype != weight.dtype or not x.is_floating_point():
        raise ValueError(f"depthwise_conv2d: x and weight must share one floating dtype, got {x.dtype} and "
                         f"{weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"depthwise_conv2d: x and weight on different devices ({x.device}, {weight.device})")
    K = weight.shape[-1]
    if output_size(x.shape[2], K, stride, padding) < 1 or output_size(x.shape[3], K, stride, padding) < 1:
        raise ValueError(f"depthwise_conv2d: a {K}x{K} kernel with padding {padding} does not fit a "
                         f"{x.shape[2]}x{x.shape[3]} map")


def triton_available() -> bool:
    """True when the Triton kernels could be imported."""
    return depthwise_forward is not None


if triton_available():
    @torch.library.custom_op("rwkvseg::depthwise_forward", mutates_args=())
    def _forward_op(x: Tensor, weight: Tensor, stride: int, padding: int) -> Tensor:
        return depthwise_forward(x, weight, stride, padding)

    @_forward_op.register_fake
    def _(x, weight, stride, padding):
        K = weight.shape[-1]
        shape = (x.shape[0], x.shape[1], output_size(x.shape[2], K, stride, padding),
                 output_size(x.shape[3], K, stride, padding))
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)

    @torch.library.custom_op("rwkvseg::depthwise_backward", mutates_args=())
    def _backward_op(dy: Tensor, x: Tensor, weight: Tensor, stride: int, padding: int) -> tuple[Tensor, Tensor]:
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx = depthwise_input_grad(dy, weight, x.shape[2], x.shape[3], stride, padding)
        dw = depthwise_weight_grad(x, dy, weight.shape[-1], stride, padding).to(weight.dtype)
        return dx, dw.contiguous()                     # the fake says contiguous: (C, 1, K, K) strides

    @_backward_op.register_fake
    def _(dy, x, weight, stride, padding):
        return torch.empty_like(x, memory_format=torch.channels_last), torch.empty_like(weight)

    def _setup_context(ctx, inputs, output):
        x, weight, stride, padding = inputs
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding

    def _backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw = _backward_op(dy, x, weight, ctx.stride, ctx.padding)
        return dx, dw, None, None

    _forward_op.register_autograd(_backward, setup_context=_setup_context)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride=1, padding=0) -> Tensor:
    """F.conv2d(x, weight, stride=stride, padding=padding, groups=C) for channels-last x (B, C, H, W) and
    weight (C, 1, K, K), by the Triton kernels; (B, C, OH, OW) channels_last in x's dtype."""
    if not triton_available():
        raise RuntimeError("depthwise_conv2d needs the triton package (pip install triton); "
                           "F.conv2d(x, weight, stride=stride, padding=padding, groups=C) is the same operator")
    stride, padding = _as_int(stride, "stride"), _as_int(padding, "padding")
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
    check_inputs(x, weight, stride, padding)
    return _forward_op(x, weight, stride, padding)


# Below this many channels F.conv2d is faster: the kernels' channel tiles are 32 or 64 wide, so a 3-channel map
# (the stem) wastes most of each tile (H100, batch 32, 256 x 256, fwd + bwd: 2.66 ms ours, 0.38 ms cuDNN).
MIN_CHANNELS = 16


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise nn.Conv2d (groups = in = out channels, no bias; same parameters and state dict) whose
    forward runs the Triton kernels on channels-last CUDA maps of at least MIN_CHANNELS channels and
    F.conv2d everywhere else (CPU, MPS, no Triton, contiguous maps, fewer channels).

    Shapes: (B, C, H, W) -> (B, C, OH, OW); square kernel, stride 1 or 2, symmetric padding.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if (x.is_cuda and triton_available() and self.in_channels >= MIN_CHANNELS
                and x.is_contiguous(memory_format=torch.channels_last)):
            return depthwise_conv2d(x, self.weight, self.stride, self.padding)
        return super().forward(x)
