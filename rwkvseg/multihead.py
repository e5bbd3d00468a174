"""MS-RWKV's multi-head scan with padding (Eq. 11-14, Fig. 3; spec ms-rwkv.md §2.3).

    S_1..S_n = Split(LN(X_in))                 channel groups of C/n           (Eq. 11)
    RW_i     = RWKV_p(Proj(S_i))               one padded scan per head        (Eq. 12)
    X_o      = Cat(RW_1..RW_n)                                                 (Eq. 13)
    Out      = Proj(LN(X_o))                                                   (Eq. 14)

RWKV_p is a causal TimeMix (rwkvseg.time_mix) along the head's scan order: row-major forward,
row-major reverse, column-major forward, column-major reverse, each with a padding token after
every line (rwkvseg.scan.ms_rwkv_head_orders). Choices [choose]: per-head projections C/n -> C/n
(literal Eq. 12, i.e. block-diagonal); separate parameters per head (own r, k, v, o, w, u, mu,
pad token); directions rotate across the blocks of a stage (block j gives head n direction
(n + j) mod n_heads: "consecutive modules integrate various scanning approaches"); with three
heads the column-major reverse is dropped.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.scan import ms_rwkv_head_orders
from rwkvseg.time_mix import TimeMix

__all__ = ["MultiHeadScan"]


class MultiHeadScan(nn.Module):
    """Eq. 11-14 on a channels-last map: (B, H, W, C) -> (B, H, W, C).

    Args (keyword-only): dim C (divisible by ``heads``); heads 1-4 (paper 4, ablation 3);
    pad: padding tokens on (paper) or off (Table 3 ablation); pad_token 'learned' or 'zeros';
    shift: the token shift inside every head's time mix; block_index j rotates the directions;
    decay_init: theta range of every head (w = exp(theta), see TimeMix); backend: the WKV backend.
    """

    def __init__(self, *, dim: int, heads: int = 4, pad: bool = True, pad_token: str = "learned",
                 shift: str = "p_shift", block_index: int = 0, decay_init: tuple[float, float] = (-5.0, 3.0),
                 backend: str = "auto") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"MultiHeadScan splits {dim} channels into {heads} heads: "
                             f"choose a width divisible by {heads} (e.g. {heads * max(1, dim // heads)})")
        self.heads, self.head_dim = heads, dim // heads
        directions = ms_rwkv_head_orders(heads=heads, pad=pad)
        self.orders = [directions[(n + block_index) % heads] for n in range(heads)]
        self.norm_in = nn.LayerNorm(dim)                                            # Eq. 11
        self.proj_in = nn.ModuleList(nn.Linear(self.head_dim, self.head_dim) for _ in range(heads))
        self.mixes = nn.ModuleList(
            TimeMix(dim=self.head_dim, order=o, shift=shift, pad_token=pad_token, decay_init=decay_init,
                    backend=backend)
            for o in self.orders
        )
        self.norm_out = nn.LayerNorm(dim)                                           # Eq. 14
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        groups = self.norm_in(x).split(self.head_dim, dim=-1)                      # n x (B, H, W, C/n)
        outs = []
        for proj, mix, s in zip(self.proj_in, self.mixes, groups):
            z = proj(s).permute(0, 3, 1, 2)                                         # (B, C/n, H, W)
            outs.append(mix(z).permute(0, 2, 3, 1))                                 # (B, H, W, C/n)
        return self.proj_out(self.norm_out(torch.cat(outs, dim=-1)))               # (B, H, W, C)
