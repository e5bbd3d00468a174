"""Convolutional building blocks of RWKV-UNet: CNA, LayerNorm2d, DropPath, the IR and IR-RWKV block.

Spec rwkv-unet.md §2-4; paper Sec. 3.2, Eq. 1-5. The IR block is the IR-RWKV block without its
spatial mix, so one class, `IRBlock`, builds both (flag `mix`).

Where the paper and the authors' code differ (spec §3), we follow the code, which produced every
reported number:

- Eq. 1 normalises *after* the 1x1 expansion conv; the code normalises *before* it (pre-norm:
  BatchNorm2d in stages I-II, LayerNorm2d in III-IV, none in the stem) and puts BN + ReLU after it.
- Eq. 3 normalises the spatial mix's *input*, Z + SpatialMix(LN(Z)); the code normalises its
  *output*, Z + DropPath(LN(SpatialMix(Z))).

`paper_norm_order=True` switches to the paper's placement for an ablation: no pre-norm and the
LayerNorm on the mix's input (the expansion conv keeps its BN + ReLU). Parameter counts then
differ from the spec's tables by the missing pre-norms.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.spatial_mix import SpatialMix, map_to_tokens, tokens_to_map

__all__ = ["CNA", "LayerNorm2d", "DropPath", "SqueezeExcite", "IRBlock", "make_norm2d", "make_act"]

_ACTS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "none": nn.Identity}


def make_act(name: str) -> nn.Module:
    """An activation by name: 'relu', 'silu', 'gelu', 'sigmoid' or 'none'."""
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTS)}")
    return _ACTS[name]()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, at every pixel (spec §2: eps 1e-6)."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)                                               # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
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
    """Conv (no bias) -> BatchNorm2d (eps 1e-6) -> activation (spec §2).

    Padding ceil((k - s) / 2): 'same' size at stride 1, exactly half (for even sides) at stride 2.
    Shapes: (B, in_chans, H, W) -> (B, out_chans, H / stride, W / stride).
    """

    def __init__(
        self, *, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1,
        groups: int = 1, act: str = "relu",
    ) -> None:
        padding = math.ceil((kernel_size - stride) / 2)
        super().__init__(
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


class SqueezeExcite(nn.Module):
    """Squeeze-excitation gate of the stem (spec §4), reduction ratio 1, SiLU inside [code].

    gate = sigmoid(W2 act(W1 mean_hw(x) + b1) + b2); returns x * gate. (B, C, H, W) -> same.
    """

    def __init__(self, *, channels: int, reduced: int | None = None, act: str = "silu") -> None:
        super().__init__()
        reduced = channels if reduced is None else reduced
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)                                    # (B, C, 1, 1)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class IRBlock(nn.Module):
    """IR block (`mix=False`) and IR-RWKV block (`mix=True`), in the authors' code's order (spec §3).

        Xn = PreNorm(X)                                   BN (stages I-II), LN2d (III-IV), none (stem)
        E  = CNA_1x1(Xn)                                  Cin -> C_mid = floor(Cin * e), BN + ReLU
        if mix:  Z = flatten(E);  Z = Z + DropPath(LN(SpatialMix(Z)));  E = fold(Z)     (Eq. 2-3)
        L  = CNA_kxk depthwise, stride s (E)              BN + SiLU (times an SE gate in the stem)
        E' = E + L if skip else L                                                       (Eq. 4)
        P  = Conv_1x1(E')                                 C_mid -> Cout, no bias, no norm
        out = X + DropPath(P) if skip else P                                            (Eq. 5)

    Args (keyword-only):
        in_chans, out_chans: Cin, Cout.
        expansion: e, C_mid = int(in_chans * expansion).
        kernel_size: depthwise kernel k (5 in RWKV-UNet).
        stride: 1, or 2 for the first block of a stage.
        pre_norm: 'bn', 'ln' or 'none'.
        mix: insert the spatial mix (IR-RWKV block).
        se: squeeze-excitation gate on the depthwise branch (stem only) with activation `se_act`.
        skip: residual connections; None = the spec's rule (Cin = Cout and stride 1; the first
            block of a stage always changes width or stride, so the rule needs no extra flag).
        drop_path: stochastic-depth rate of both residual branches.
        wkv_backend: passed down to the spatial mix's Bi-WKV.
        paper_norm_order: the paper's Eq. 1/3 norm placement instead of the code's (see module doc).

    Shapes: (B, Cin, H, W) -> (B, Cout, H / stride, W / stride); any H, W (divisible by the stride).
    """

    def __init__(
        self, *, in_chans: int, out_chans: int, expansion: float, kernel_size: int = 5,
        stride: int = 1, pre_norm: str = "none", mix: bool = False, se: bool = False,
        se_act: str = "silu", skip: bool | None = None, drop_path: float = 0.0,
        wkv_backend: str = "auto", paper_norm_order: bool = False,
    ) -> None:
        super().__init__()
        mid = int(in_chans * expansion)
        self.in_chans, self.mid_chans, self.out_chans, self.stride = in_chans, mid, out_chans, stride
        self.skip = (in_chans == out_chans and stride == 1) if skip is None else skip
        self.paper_norm_order = paper_norm_order
        self.norm = make_norm2d("none" if paper_norm_order else pre_norm, in_chans)
        self.expand = CNA(in_chans=in_chans, out_chans=mid, kernel_size=1, act="relu")
        if mix:
            self.mix = SpatialMix(dim=mid, backend=wkv_backend)
            self.mix_norm = nn.LayerNorm(mid, eps=1e-5)
        else:
            self.mix = None
            self.mix_norm = None
        self.local = CNA(in_chans=mid, out_chans=mid, kernel_size=kernel_size, stride=stride, groups=mid, act="silu")
        self.se = SqueezeExcite(channels=mid, act=se_act) if se else None
        self.project = nn.Conv2d(mid, out_chans, 1, bias=False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        e = self.expand(self.norm(x))                                           # (B, C_mid, H, W)
        if self.mix is not None:
            hw = (e.shape[2], e.shape[3])
            z = map_to_tokens(e)                                                # (B, N, C_mid)
            if self.paper_norm_order:
                z = z + self.drop_path(self.mix(self.mix_norm(z), hw))
            else:
                z = z + self.drop_path(self.mix_norm(self.mix(z, hw)))
            e = tokens_to_map(z, hw)                                            # (B, C_mid, H, W)
        local = self.local(e)                                                   # (B, C_mid, H/s, W/s)
        if self.se is not None:
            local = self.se(local)
        e = e + local if self.skip else local
        p = self.project(e)                                                     # (B, Cout, H/s, W/s)
        return x + self.drop_path(p) if self.skip else p

    def extra_repr(self) -> str:
        return (
            f"{self.in_chans} -> {self.mid_chans} -> {self.out_chans}, stride={self.stride}, "
            f"skip={self.skip}, mix={self.mix is not None}"
        )
