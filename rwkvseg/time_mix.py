"""RWKV-4's time mix and channel mix on a 2-D map (MS-RWKV Eq. 1-9).

Both read a (B, C, H, W) map. The "previous token" x_{t-1} of the 1-D equations is replaced by a
token shift of the map (rwkvseg.shift: P-Shift by default, as MS-RWKV; Uni-shift and Q-shift for
the Table 4 ablation). The time mix then flattens the mixed map along a scan order
(rwkvseg.scan, MS-RWKV's padded row/column scans) and runs the **causal** WKV of RWKV-4
(rwkvseg.wkv.uni_wkv) with the per-step decay w = exp(theta):

    r_t, k_t, v_t = W_{r,k,v} (mu * x_t + (1 - mu) * shift(x)_t)            (Eq. 1-3)
    o_t = W_o (sigmoid(r_t) * wkv_t)                                         (Eq. 4-6)
    r'_t, k'_t = W'_{r,k} (mu' * x_t + (1 - mu') * shift(x)_t)               (Eq. 7-8)
    o'_t = sigmoid(r'_t) * W'_v max(k'_t, 0)^2                               (Eq. 9)

Choices [choose]: w = exp(theta) without division by T (RWKV-4, Eq. 5's source),
theta spread linearly from -5 to 3 across channels at init (Vision-RWKV's layer-dependent
spread, so some channels remember far and others only the last token); u = 0 and mu = 0.5 at
init (as RWKV-UNet); bias-free projections (RWKV); channel-mix hidden width 4C.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.scan import RowMajor, ScanOrder
from rwkvseg.shift import make_shift, mix
from rwkvseg.wkv import uni_wkv

__all__ = ["TimeMix", "RWKV4ChannelMix"]

PAD_TOKENS = ("learned", "zeros")


def _mix(x: Tensor, xs: Tensor, mu: Tensor) -> Tensor:
    """rwkvseg.shift.mix with a per-channel mu (C,) on (B, C, H, W) maps."""
    return mix(x, xs, mu.view(1, -1, 1, 1))


class TimeMix(nn.Module):
    """Causal RWKV-4 time mix of a (B, C, H, W) map along one scan order (MS-RWKV Eq. 1-6).

    Args (keyword-only):
        dim: channels C.
        order: a rwkvseg.scan order (default row-major); with ``order.pad`` the sequence has a
            padding slot after every line, filled with ``pad_token``: 'learned' (a (C,) parameter
            in the input space, init 0: at a pad the mixed value is the pad itself, and it goes
            through W_k, W_v, W_r like any token) or 'zeros'.
        shift: 'p_shift' (default), 'q_shift', 'uni_shift' (follows ``order``), 'omni_shift'.
        decay_init: (lo, hi) of theta, w = exp(theta), spread linearly across channels.
        backend: passed to uni_wkv ('auto', 'torch', 'triton', 'naive').
    Shapes: (B, C, H, W) -> (B, C, H, W); internally (B, T', C) with T' = order.length(H, W).
    """

    def __init__(self, *, dim: int, order: ScanOrder | None = None, shift: str = "p_shift",
                 pad_token: str = "learned", decay_init: tuple[float, float] = (-5.0, 3.0),
                 backend: str = "auto") -> None:
        super().__init__()
        if pad_token not in PAD_TOKENS:
            raise ValueError(f"pad_token must be one of {PAD_TOKENS}, got {pad_token!r}")
        self.dim, self.backend = dim, backend
        self.order = RowMajor() if order is None else order
        self.shift = make_shift(shift, channels=dim, order=self.order)
        self.mu_k = nn.Parameter(torch.full((dim,), 0.5))
        self.mu_v = nn.Parameter(torch.full((dim,), 0.5))
        self.mu_r = nn.Parameter(torch.full((dim,), 0.5))
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)
        lo, hi = decay_init
        self.theta = nn.Parameter(torch.linspace(lo, hi, dim) if dim > 1 else torch.full((1,), (lo + hi) / 2))
        self.u = nn.Parameter(torch.zeros(dim))
        learned = self.order.pad and pad_token == "learned"
        self.pad_token = nn.Parameter(torch.zeros(dim)) if learned else None

    def decay(self) -> Tensor:
        """w = exp(theta) (C,): the per-step decay the causal WKV receives."""
        return torch.exp(self.theta)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        if C != self.dim:
            raise ValueError(f"TimeMix(dim={self.dim}) received {C} channels (input shape {tuple(x.shape)})")
        xs = self.shift(x)                                                  # x_{t-1} stand-in
        mixed = torch.cat([_mix(x, xs, self.mu_k), _mix(x, xs, self.mu_v), _mix(x, xs, self.mu_r)], 1)
        pad = None if self.pad_token is None else self.pad_token.repeat(3)
        seq = self.order.scan(mixed, pad)                                   # (B, T', 3C)
        xk, xv, xr = seq.chunk(3, dim=-1)
        k, v, r = self.key(xk), self.value(xv), self.receptance(xr)         # (B, T', C)
        wkv = uni_wkv(self.decay(), self.u, k, v, backend=self.backend)     # (B, T', C)
        out = self.output(torch.sigmoid(r) * wkv)                           # (B, T', C)
        return self.order.unscan(out, H, W)                                 # pads dropped: (B, C, H, W)


class RWKV4ChannelMix(nn.Module):
    """RWKV-4's channel mix of a (B, C, H, W) map (MS-RWKV Eq. 7-9) with a token shift.

    Hidden width ``hidden_ratio`` * C (4, as RWKV and Vision-RWKV). Uni-shift follows the
    row-major order (the mix has no scan of its own). (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, *, dim: int, hidden_ratio: int = 4, shift: str = "p_shift") -> None:
        super().__init__()
        self.dim = dim
        self.shift = make_shift(shift, channels=dim, order=RowMajor())
        self.mu_k = nn.Parameter(torch.full((dim,), 0.5))
        self.mu_r = nn.Parameter(torch.full((dim,), 0.5))
        self.key = nn.Linear(dim, hidden_ratio * dim, bias=False)
        self.value = nn.Linear(hidden_ratio * dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.dim:
            raise ValueError(f"RWKV4ChannelMix(dim={self.dim}) received {x.shape[1]} channels (shape {tuple(x.shape)})")
        xs = self.shift(x)
        xk = _mix(x, xs, self.mu_k).permute(0, 2, 3, 1)                     # (B, H, W, C)
        xr = _mix(x, xs, self.mu_r).permute(0, 2, 3, 1)
        k = torch.relu(self.key(xk)) ** 2                                   # (B, H, W, 4C)
        out = torch.sigmoid(self.receptance(xr)) * self.value(k)            # (B, H, W, C)
        return out.permute(0, 3, 1, 2)                                      # (B, C, H, W)
