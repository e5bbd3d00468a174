"""MS-RWKV's multi-head scan with padding (MS-RWKV Sec. 2, Eq. 11-14, Fig. 3).

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

Batched heads (the default, ``batched=True``): the forward runs all heads at once with the same
parameters and the same function as the per-head loop (``_forward_loop``, the literal equations:
the tests' reference and ``batched=False``), so a step launches a few large kernels instead of
thousands of small ones. The per-head
Linear weights are stacked at run time into one einsum each (block-diagonal projections); P-Shift
/ Omni-shift become one depthwise conv per kernel size over all C channels (depthwise = per
channel, so concatenating the heads' kernels is exact; Q-shift per head group, others per head);
the k, v, r projections run on the pixels (plus the pad "pixel") before the scan (a token-wise
linear map commutes with the gather); ONE torch.gather through the stacked routes builds every
head's sequence in a (B, 3, T', n, d) tensor, so k, v, r are (B, T', C) with head-major channels;
ONE uni_wkv call covers all heads (the WKV is independent per channel: w, u concatenated); ONE
index_select through the stacked inverse routes unscans them, and the output projection runs
after it, on the pixels. Heads whose sequences are shorter (padded scans of a non-square map:
H(W+1) vs W(H+1)) get extra slots at their END, filled with the pad token: the WKV is causal, so
trailing slots change no earlier output, and the unscan never reads them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.layers import LayerNorm
from rwkvseg.scan import ScanOrder, cached, route, ms_rwkv_head_orders
from rwkvseg.shift import QShift, DepthwiseBranches, depthwise_branches, mix, q_shift
from rwkvseg.time_mix import TimeMix
from rwkvseg.wkv import uni_wkv

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
        self.norm_in = LayerNorm(dim)                                               # Eq. 11
        self.proj_in = nn.ModuleList(nn.Linear(self.head_dim, self.head_dim) for _ in range(heads))
        self.mixes = nn.ModuleList(
            TimeMix(dim=self.head_dim, order=o, shift=shift, pad_token=pad_token, decay_init=decay_init,
                    backend=backend)
            for o in self.orders
        )
        self.norm_out = LayerNorm(dim)                                              # Eq. 14
        self.proj_out = nn.Linear(dim, dim)

    batched: bool = True    # run the heads at once (False: the per-head loop; same function)

    def forward(self, x: Tensor) -> Tensor:
        if self.batched and self._batchable():
            return self._forward_batched(x)
        return self._forward_loop(x)

    def _forward_loop(self, x: Tensor) -> Tensor:
        """The heads one after another (literal Eq. 11-14): the reference for the batched path."""
        groups = self.norm_in(x).split(self.head_dim, dim=-1)                      # n x (B, H, W, C/n)
        outs = []
        for proj, mix, s in zip(self.proj_in, self.mixes, groups):
            z = proj(s).permute(0, 3, 1, 2)                                         # (B, C/n, H, W)
            outs.append(mix(z).permute(0, 2, 3, 1))                                 # (B, H, W, C/n)
        return self.proj_out(self.norm_out(torch.cat(outs, dim=-1)))               # (B, H, W, C)

    # -- batched heads ---------------------------------------------------------------------------
    def _batchable(self) -> bool:
        """The batched path needs one WKV backend and one pad-token kind for all heads."""
        mixes = list(self.mixes)
        return (len({m.backend for m in mixes}) == 1
                and len({m.pad_token is None for m in mixes}) == 1
                and len({m.order.pad for m in mixes}) == 1)

    def _shift_all(self, z: Tensor) -> Tensor:
        """Every head's own token shift of its channel group, on the full (B, C, H, W) map."""
        shifts = [m.shift for m in self.mixes]
        s0 = shifts[0]
        n, d = self.heads, self.head_dim
        if all(isinstance(s, nn.Identity) for s in shifts):
            return z
        same = all(type(s) is type(s0) for s in shifts)
        if same and isinstance(s0, DepthwiseBranches) and _same_branches(shifts):
            if s0.merged is not None:                                # reparameterised: one conv
                conv = s0.merged
                bias = None if conv.bias is None else torch.cat([s.merged.bias for s in shifts])
                return F.conv2d(z, torch.cat([s.merged.weight for s in shifts]), bias,
                                padding=conv.padding, groups=z.shape[1])
            weights = [torch.cat([s.branches[i].weight for s in shifts]) for i in range(len(s0.branches))]
            biases = [None if conv.bias is None else torch.cat([s.branches[i].bias for s in shifts])
                      for i, conv in enumerate(s0.branches)]
            alpha = None if s0.alpha is None else torch.stack([s.alpha for s in shifts]).repeat_interleave(d, dim=0)
            return depthwise_branches(z, weights, biases, alpha)                # alpha (C, K+1) per channel
        if same and isinstance(s0, QShift) and len({s.shift for s in shifts}) == 1:
            return _q_shift_groups(z, n, s0.shift)
        return torch.cat([s(g) for s, g in zip(shifts, z.split(d, dim=1))], dim=1)

    def _forward_batched(self, x: Tensor) -> Tensor:
        """All heads at once; the same parameters and function as ``_forward_loop``."""
        B, H, W, C = x.shape
        n, d = self.heads, self.head_dim
        mixes = list(self.mixes)
        for m in mixes:
            if C != n * m.dim:
                raise ValueError(f"MultiHeadScan(dim={n * d}) received {C} channels (input shape {tuple(x.shape)})")
        # Eq. 11-12: split + per-head projection = one block-diagonal projection
        w_in = torch.stack([p.weight for p in self.proj_in])                       # (n, d_out, d_in)
        b_in = torch.stack([p.bias for p in self.proj_in])                         # (n, d)
        z = torch.einsum("bhwni,noi->bhwno", self.norm_in(x).view(B, H, W, n, d), w_in)
        z = z + b_in.to(z.dtype)                                                  # bf16 maps stay bf16
        z = z.reshape(B, H, W, C)                                                  # (B, H, W, C)
        xs = self._shift_all(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)          # (B, H, W, C)
        # token mixing with mu_k, mu_v, mu_r: (B, 3, H*W, n, d)
        mu = torch.cat([m.mu_k for m in mixes] + [m.mu_v for m in mixes] + [m.mu_r for m in mixes])
        mixed = mix(z.reshape(B, 1, H * W, n, d), xs.reshape(B, 1, H * W, n, d), mu.view(3, 1, n, d))
        routes, inverse = _head_routes(tuple(m.order for m in mixes), H, W, x.device)
        if mixes[0].order.pad:                                    # the pad token as pixel H*W
            if mixes[0].pad_token is not None:
                pad = torch.stack([m.pad_token for m in mixes]).to(mixed.dtype)       # (n, d)
            else:
                pad = mixed.new_zeros(n, d)
            mixed = torch.cat([mixed, pad.view(1, 1, 1, n, d).expand(B, 3, 1, n, d)], dim=2)
        # k, v, r projections on the pixels (token-wise, so they commute with the scan's gather)
        w_kvr = torch.stack([m.key.weight for m in mixes] + [m.value.weight for m in mixes]
                            + [m.receptance.weight for m in mixes]).view(3, n, d, d)
        proj = torch.einsum("bspni,snoi->bspno", mixed, w_kvr)                   # (B, 3, P, n, d)
        # every head's scan in one gather: (B, 3, T', n, d), head h along its own route
        T = routes.shape[0]
        seq = proj.gather(2, routes.view(1, 1, T, n, 1).expand(B, 3, T, n, d))
        k, v, r = (t.reshape(B, T, C) for t in seq.unbind(1))                     # (B, T', C)
        w = torch.cat([m.decay() for m in mixes])
        u = torch.cat([m.u for m in mixes])
        wkv = uni_wkv(w, u, k, v, backend=mixes[0].backend)                       # one call, all heads
        g = (torch.sigmoid(r) * wkv).view(B, T * n, d)
        g = g.index_select(1, inverse).view(B, H * W, n, d)                       # unscan: pads dropped
        w_out = torch.stack([m.output.weight for m in mixes])                     # (n, d_out, d_in)
        out = torch.einsum("bpni,noi->bpno", g, w_out).reshape(B, H, W, C)        # Eq. 13: X_o
        return self.proj_out(self.norm_out(out))                                  # Eq. 14


def _same_branches(shifts) -> bool:
    """Depthwise-branch shifts that one conv per kernel size can run: same sizes, same merge state."""
    s0 = shifts[0]
    if any(s.kernels != s0.kernels or (s.merged is None) != (s0.merged is None) for s in shifts):
        return False
    if s0.merged is not None:
        return all(s.merged.weight.shape == s0.merged.weight.shape
                   and (s.merged.bias is None) == (s0.merged.bias is None) for s in shifts)
    return all(len(s.branches) == len(s0.branches)
               and all((a.bias is None) == (b.bias is None) for a, b in zip(s.branches, s0.branches))
               for s in shifts)


def _q_shift_groups(x: Tensor, n: int, shift: int) -> Tensor:
    """rwkvseg.shift.q_shift of each of the n channel groups of a (B, C, H, W) map at once."""
    B, C, H, W = x.shape
    return q_shift(x.reshape(B * n, C // n, H, W), shift).reshape(B, C, H, W)


@cached(maxsize=512)
def _head_routes(orders: tuple[ScanOrder, ...], H: int, W: int,
                 device: torch.device = torch.device("cpu")) -> tuple[Tensor, Tensor]:
    """The heads' routes stacked for one gather, and their inverses for one index_select.

    routes: int64 (T', n), slot t of head h -> pixel (H*W = the pad pixel); T' the longest head
    sequence, shorter heads filled up at the end with the pad pixel (causal: no earlier output
    sees them). inverse: int64 (H*W*n,), entry p*n + h = slot(h, p)*n + h, the position of pixel
    p of head h in the (T'*n)-flattened sequence. Cached like rwkvseg.scan's routes (callers must
    not modify them).
    """
    n, HW = len(orders), H * W
    seqs = [route(o, H, W) for o in orders]
    T = max(len(fwd) for fwd, _ in seqs)
    with torch.inference_mode(False):
        routes = torch.full((T, n), HW, dtype=torch.int64)
        inverse = torch.empty(HW, n, dtype=torch.int64)
        for h, (fwd, inv) in enumerate(seqs):
            f = torch.tensor(fwd, dtype=torch.int64)
            routes[: len(fwd), h] = torch.where(f < 0, HW, f)
            inverse[:, h] = torch.tensor(inv, dtype=torch.int64) * n + h
        return routes.to(device), inverse.view(-1).to(device)
