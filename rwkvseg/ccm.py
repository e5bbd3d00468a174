"""CCM, the Cross-Channel Mix skip module of RWKV-UNet (RWKV-UNet Sec. 3.4, Eq. 8-11, Fig. 1b).

CCM lets the three skip features exchange information along channels before the decoder reads them:

    F~_i = Conv1x1_{C_i -> C1}(Resize_{S1}(F_i))                 i = 3, 2, 1            (Eq. 8)
    M    = flatten(Concat(F~_3, F~_2, F~_1))                     (B, N1, 3 C1)          (Eq. 9)
    M    = M + DropPath(LN_{3C1}(ChannelMix(M)))                  hidden 6 C1, key norm  (Eq. 10)
    F'_i = Resize_{S_i}(Conv1x1_{C1 -> C_i}(split_i(fold(M))))                           (Eq. 11)

S1 is the size of F1 (H/2), every resize is bilinear with align_corners=False, every 1x1 conv has
a bias. Sizes are read from the inputs at every call, so any (non-square) input works; the
authors' code fixes them at construction from `img_size`.

Where the equations and the authors' code differ, we follow the code [code]: Eq. 10 normalises
the channel mix's input, the code its output; Eq. 9 writes the concatenation as (F~_1, F~_2, F~_3),
the code's order is (F~_3, F~_2, F~_1). The order matters only through Q-shift's four channel
groups.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.layers import DropPath, LayerNorm, map_to_tokens, resize_bilinear, tokens_to_map
from rwkvseg.spatial_mix import VRWKVChannelMix

__all__ = ["CCM"]


class CCM(nn.Module):
    """Cross-Channel Mix over the skips (F1, F2, F3) of widths (C1, C2, C3).

    Args (keyword-only):
        widths: (C1, C2, C3), the stage I-III widths.
        hidden_rate: channel-mix hidden width = hidden_rate * 3 C1 (2 [code]).
        drop_path: stochastic depth of the mix branch (0.05 [code]).
        key_norm: LayerNorm on the channel mix's hidden activations (on [code]).

    Shapes: forward(f1 (B, C1, H1, W1), f2 (B, C2, H2, W2), f3 (B, C3, H3, W3))
        -> (f1', f2', f3') of the same shapes.
    Parameters: sum_i (C_i C1 + C1) + VRWKVChannelMix(3 C1, 6 C1) + 6 C1 + sum_i (C1 C_i + C_i).
    """

    def __init__(
        self, *, widths: tuple[int, int, int], hidden_rate: float = 2.0, drop_path: float = 0.05,
        key_norm: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"CCM needs the three skip widths (C1, C2, C3), got {widths!r}")
        c1, c2, c3 = widths
        dim = 3 * c1
        self.widths = tuple(widths)
        self.in3 = nn.Conv2d(c3, c1, 1)
        self.in2 = nn.Conv2d(c2, c1, 1)
        self.in1 = nn.Conv2d(c1, c1, 1)
        self.mix = VRWKVChannelMix(dim=dim, hidden_dim=int(hidden_rate * dim), key_norm=key_norm)
        self.norm = LayerNorm(dim, eps=1e-5)
        self.drop_path = DropPath(drop_path)
        self.out3 = nn.Conv2d(c1, c3, 1)
        self.out2 = nn.Conv2d(c1, c2, 1)
        self.out1 = nn.Conv2d(c1, c1, 1)

    def forward(self, f1: Tensor, f2: Tensor, f3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        for name, f, c in (("f1", f1, self.widths[0]), ("f2", f2, self.widths[1]), ("f3", f3, self.widths[2])):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(f"CCM: {name} must be (B, {c}, H, W), got {tuple(f.shape)}")
        s1 = (f1.shape[2], f1.shape[3])
        m = torch.cat(
            [self.in3(resize_bilinear(f3, s1)), self.in2(resize_bilinear(f2, s1)), self.in1(f1)], dim=1
        )                                                                       # (B, 3 C1, H1, W1)
        z = map_to_tokens(m)                                                    # (B, N1, 3 C1)
        z = z + self.drop_path(self.norm(self.mix(z, s1)))
        m3, m2, m1 = tokens_to_map(z, s1).chunk(3, dim=1)                       # 3 x (B, C1, H1, W1)
        f3 = resize_bilinear(self.out3(m3), tuple(f3.shape[-2:]))               # (B, C3, H3, W3)
        f2 = resize_bilinear(self.out2(m2), tuple(f2.shape[-2:]))               # (B, C2, H2, W2)
        f1 = self.out1(m1)                                                      # (B, C1, H1, W1)
        return f1, f2, f3

    def extra_repr(self) -> str:
        return f"widths={self.widths}"
