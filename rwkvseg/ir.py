"""RWKV-UNet's encoder blocks: the IR and IR-RWKV block (RWKV-UNet Sec. 3.2, Eq. 1-5, Fig. 1d-e).

The IR block is the IR-RWKV block without its spatial mix, so one class, `IRBlock`, builds both
(flag `mix`). Where Eq. 1 and 3 differ from the authors' code, we follow the code, which produced
every reported number:

- Eq. 1 normalises *after* the 1x1 expansion conv; the code normalises *before* it (pre-norm:
  BatchNorm2d in stages I-II, LayerNorm2d in III-IV, none in the stem) and puts BN + ReLU after it.
- Eq. 3 normalises the spatial mix's *input*, Z + SpatialMix(LN(Z)); the code normalises its
  *output*, Z + DropPath(LN(SpatialMix(Z))).

`paper_norm_order=True` switches to the paper's placement for an ablation: no pre-norm and the
LayerNorm on the mix's input (the expansion conv keeps its BN + ReLU). Parameter counts then
differ from Table 1's by the missing pre-norms (exact counts: book appendix, *Derivations*).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.layers import CNA, DropPath, LayerNorm, make_act, make_norm2d, map_to_tokens, tokens_to_map
from rwkvseg.spatial_mix import SpatialMix

__all__ = ["SqueezeExcite", "IRBlock"]


class SqueezeExcite(nn.Module):
    """Squeeze-excitation gate of the stem, reduction ratio 1, SiLU inside [code].

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
    """IR block (`mix=False`) and IR-RWKV block (`mix=True`), in the authors' code's order.

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
        skip: residual connections; None: Cin = Cout and stride 1 (the first block of a stage,
            which has no residuals (Sec. 3.2), always changes width or stride).
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
            self.mix_norm = LayerNorm(mid, eps=1e-5)
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
