"""Layers every network shares: norms, activations, CNA, DropPath, the token layout, two
resolution changes, the stochastic-depth schedule and the input check.

    make_act, make_norm2d   an activation / a norm for (B, C, H, W) maps by config name
    LayerNorm               nn.LayerNorm whose output keeps a bfloat16 input's dtype under autocast
    LayerNorm2d             LayerNorm over the channels at every pixel
    CNA                     Conv -> BatchNorm2d -> activation
    DropPath                stochastic depth of a residual branch
    map_to_tokens           (B, C, H, W) -> (B, N, C), row-major; tokens_to_map the inverse
    resize_bilinear         bilinear resizing (align_corners False) as two matrix products; Upsample2x
    UpBlock                 RWKV-UNet's "c -> d -> c" decoder block, then a bilinear x2
    PatchMerging            VM-UNet's 2x2 merge, channels-last
    drop_path_rates         linspace(0, rate, n) without a tensor
    check_image             the (B, C, H, W) input check of every network
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.depthwise import DepthwiseConv2d

__all__ = [
    "make_act", "make_norm2d", "LayerNorm", "LayerNorm2d", "CNA", "DropPath", "map_to_tokens", "tokens_to_map",
    "interp_matrix", "resize_bilinear", "Upsample2x", "UpBlock", "PatchMerging", "drop_path_rates", "check_image",
]

_ACTS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "none": nn.Identity}


def make_act(name: str) -> nn.Module:
    """An activation by name: 'relu', 'silu', 'gelu', 'sigmoid' or 'none'."""
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTS)}")
    return _ACTS[name]()


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters and state dict) whose output keeps the input's dtype: under
    autocast a bfloat16 / float16 x is normalised by the kernel in that dtype (statistics in float32
    inside it; weight and bias cast to it) instead of autocast's float32 copy in and float32 map out,
    so the blocks' token maps stay bfloat16 end to end. Outside autocast: nn.LayerNorm itself."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and torch.is_autocast_enabled(x.device.type):
            w = None if self.weight is None else self.weight.to(x.dtype)
            b = None if self.bias is None else self.bias.to(x.dtype)
            with torch.autocast(x.device.type, enabled=False):
                return F.layer_norm(x, self.normalized_shape, w, b, self.eps)
        return super().forward(x)


class LayerNorm2d(LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, at every pixel (eps 1e-6, as RWKV-UNet's code)."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x.permute(0, 2, 3, 1))                              # (B, H, W, C)
        return x.permute(0, 3, 1, 2)                                            # (B, C, H, W)


def make_norm2d(kind: str, channels: int) -> nn.Module:
    """A norm for (B, C, H, W) maps: 'bn' (BatchNorm2d, eps 1e-6), 'ln' (LayerNorm2d, eps 1e-6), 'none'."""
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=1e-6)
    if kind == "ln":
        return LayerNorm2d(channels, eps=1e-6)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose 'bn', 'ln' or 'none'")


class CNA(nn.Sequential):
    """Conv (no bias) -> BatchNorm2d (eps 1e-6) -> activation; a depthwise conv (groups = channels) is a
    rwkvseg.depthwise.DepthwiseConv2d (Triton kernels on CUDA, same parameters).

    Padding ceil((k - s) / 2): 'same' size at stride 1, exactly half (for even sides) at stride 2.
    Shapes: (B, in_chans, H, W) -> (B, out_chans, H / stride, W / stride).
    """

    def __init__(
        self, *, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1,
        groups: int = 1, act: str = "relu",
    ) -> None:
        padding = math.ceil((kernel_size - stride) / 2)
        depthwise = groups > 1 and groups == in_chans == out_chans
        super().__init__(
            DepthwiseConv2d(in_chans, kernel_size, stride, padding) if depthwise else
            nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_chans, eps=1e-6),
            make_act(act),
        )


class DropPath(nn.Module):
    """Stochastic depth: zero a whole residual branch per sample with probability `drop_prob`.

    Survivors are scaled by 1 / (1 - drop_prob) so the expectation is unchanged; identity in
    eval mode or at drop_prob = 0. Works on any (B, ...) tensor.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (B, 1, ...)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def map_to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) map -> (B, N, C) tokens, row-major (n = h*W + w)."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """(B, N, C) tokens, row-major on an (H, W) grid -> (B, C, H, W) map."""
    B, N, C = x.shape
    H, W = hw
    if H * W != N:
        raise ValueError(
            f"the tokens do not fill the grid: N = {N} tokens but hw = ({H}, {W}) holds {H * W}; "
            "pass the (H, W) of the map the tokens were flattened from"
        )
    return x.transpose(1, 2).reshape(B, C, H, W)


def interp_matrix(n_in: int, n_out: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation, align_corners=False, as F.interpolate computes
    them: output i reads source s = max((i + 1/2) n_in / n_out - 1/2, 0) from floor(s) and floor(s) + 1
    (clamped to the last input) with weights 1 - frac(s) and frac(s). Any ratio, up or down."""
    i = torch.arange(n_out, device=device, dtype=torch.float64)
    src = ((i + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    i0 = src.floor()
    frac = src - i0
    i1 = (i0 + 1).clamp(max=n_in - 1)
    j = torch.arange(n_in, device=device, dtype=torch.float64)
    a = (1 - frac)[:, None] * (j == i0[:, None]) + frac[:, None] * (j == i1[:, None])
    return a.to(dtype)


def _separable(x: Tensor, a_h: Tensor, a_w: Tensor) -> Tensor:
    """y[b, c, i, j] = sum_{h, w} a_h[i, h] a_w[j, w] x[b, c, h, w] as two matrix products in x's dtype.
    x (B, C, h, w), a_h (H, h), a_w (W, w) in x's dtype -> (B, C, H, W), channels-last in memory."""
    B, C, h, w = x.shape
    H, W = a_h.shape[0], a_w.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        t = torch.matmul(a_w, x.permute(0, 2, 3, 1))                            # (B, h, W, C)
        t = torch.matmul(a_h, t.reshape(B, h, W * C))                           # (B, H, W * C)
    return t.reshape(B, H, W, C).permute(0, 3, 1, 2)


# The matrices of a resize, built once per (sizes, dtype, device) and kept, so a call launches only its
# two matrix products. Callers must not modify them.
@lru_cache(maxsize=256)
def _cached_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):    # a normal tensor even when first asked for under inference mode
        exact = torch.float64 if dtype == torch.float64 else torch.float32
        return interp_matrix(n_in, n_out, dtype=exact, device=device).to(dtype)


def _matrices(h: int, w: int, H: int, W: int, like: Tensor) -> tuple[Tensor, Tensor]:
    return _cached_matrix(h, H, like.dtype, like.device), _cached_matrix(w, W, like.dtype, like.device)


@torch.library.custom_op("rwkvseg::resize_bilinear", mutates_args=())
def _resize_op(x: Tensor, H: int, W: int) -> Tensor:
    a_h, a_w = _matrices(x.shape[2], x.shape[3], H, W, x)
    return _separable(x, a_h, a_w)


@_resize_op.register_fake
def _(x, H, W):
    return torch.empty((x.shape[0], x.shape[1], H, W), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


@torch.library.custom_op("rwkvseg::resize_bilinear_backward", mutates_args=())
def _resize_backward_op(dy: Tensor, h: int, w: int) -> Tensor:
    a_h, a_w = _matrices(h, w, dy.shape[2], dy.shape[3], dy)
    return _separable(dy, a_h.t(), a_w.t())                                     # the transposed map


@_resize_backward_op.register_fake
def _(dy, h, w):
    return torch.empty((dy.shape[0], dy.shape[1], h, w), dtype=dy.dtype, device=dy.device,
                       memory_format=torch.channels_last)


def _resize_setup(ctx, inputs, output):
    ctx.hw = inputs[0].shape[2], inputs[0].shape[3]


_resize_op.register_autograd(lambda ctx, dy: (_resize_backward_op(dy, *ctx.hw), None, None),
                             setup_context=_resize_setup)


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False) as two matrix products, one per axis
    (bilinear interpolation is separable), in x's dtype: forward and backward are GEMMs, where a compiled
    F.interpolate's backward is a scatter-add. One custom op, so torch.compile keeps it whole and
    rwkvseg.macs charges it as resampling (4 MACs an output element), not as dense GEMMs.
    (B, C, h, w) -> (B, C, H, W), channels-last in memory; x itself at equal sizes."""
    H, W = int(size[0]), int(size[1])
    if (x.shape[2], x.shape[3]) == (H, W):
        return x
    return _resize_op(x, H, W)


class Upsample2x(nn.Module):
    """Bilinear x2 (align_corners False) by resize_bilinear: nn.Upsample(scale_factor=2, mode="bilinear")
    with GEMMs for its backward. (B, C, h, w) -> (B, C, 2h, 2w)."""

    def forward(self, x: Tensor) -> Tensor:
        return resize_bilinear(x, (2 * x.shape[2], 2 * x.shape[3]))


class UpBlock(nn.Sequential):
    """RWKV-UNet's decoder block "c -> d -> c" (RWKV-UNet Fig. 1f, Table 7), then a bilinear x2.

    CNA_1x1 Cin -> Cin (ReLU), CNA depthwise k x k (SiLU, no residual), CNA_1x1 Cin -> Cout (ReLU),
    bilinear upsampling x2 (align_corners False). (B, Cin, h, w) -> (B, Cout, 2h, 2w).
    """

    def __init__(self, *, in_chans: int, out_chans: int, kernel_size: int = 9) -> None:
        super().__init__(
            CNA(in_chans=in_chans, out_chans=in_chans, kernel_size=1, act="relu"),
            CNA(in_chans=in_chans, out_chans=in_chans, kernel_size=kernel_size, groups=in_chans, act="silu"),
            CNA(in_chans=in_chans, out_chans=out_chans, kernel_size=1, act="relu"),
            Upsample2x(),
        )


class PatchMerging(nn.Module):
    """VM-UNet's patch merging: 2x2 neighbourhoods -> 4C, LayerNorm, Linear 4C -> 2C (no bias).
    (B, H, W, C) -> (B, H/2, W/2, 2C)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))                                        # (B, H/2, W/2, 2C)


def drop_path_rates(rate: float, n: int) -> list[float]:
    """The stochastic-depth rates of n blocks in order, linspace(0, rate, n), as floats (no tensor,
    so a model builds on the meta device too)."""
    return [rate * i / (n - 1) for i in range(n)] if n > 1 else [0.0] * n


def check_image(x: Tensor, *, model: str, in_chans: int, multiple: int, why: str,
                gray_to_rgb: bool | None = None) -> Tensor:
    """The input check of every network: x must be (B, in_chans, H, W) with H and W divisible by
    `multiple` (`why` says which layers need it). `gray_to_rgb` True repeats a one-channel batch
    to three channels for a three-channel model; None: the model has no such option.
    Returns x (or its three-channel view)."""
    if x.dim() != 4:
        raise ValueError(f"{model} expects an image batch (B, C, H, W), got shape {tuple(x.shape)}")
    if gray_to_rgb and x.shape[1] == 1 and in_chans == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != in_chans:
        offer = gray_to_rgb is not None and x.shape[1] == 1
        hint = " (or build with gray_to_rgb=True to repeat a gray channel)" if offer else ""
        raise ValueError(
            f"{model} was built for in_chans={in_chans}, got {x.shape[1]} channels; "
            f"build it with create_model(..., in_chans={x.shape[1]}){hint}"
        )
    H, W = x.shape[-2:]
    if H % multiple or W % multiple:
        ph, pw = -(-H // multiple) * multiple, -(-W // multiple) * multiple
        raise ValueError(
            f"{model} needs H and W divisible by {multiple} ({why}), got {H}x{W}: pad or resize to {ph}x{pw}"
        )
    return x
