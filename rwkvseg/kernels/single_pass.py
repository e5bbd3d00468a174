"""The single-pass Bi-WKV forward: the whole sequence of a channel block in one program.

One read of k, v and one write of y: the memory floor. One program owns one batch item and BC channels and
holds all T <= TP tokens at once; one reference per channel (the column max of k) and the suffix sums as total
minus prefix, so it takes only channels in the one-reference regime (common.py) and leaves any block with
another channel to the tiled kernel, which runs after it and skips the blocks done here. From 129 tokens the
chunked forward is faster (it does not pad the sequence to a power of two), so the dispatch uses this kernel
for T <= 128.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRET, LOG2E, add_pair, load_tile, load_w_u, one_reference_ok, store_tile

# The longest sequence this kernel takes: at 4096 tokens its best tile only matched the tiled kernel (H100).
SINGLE_MAX_T = 1024


@triton.jit(do_not_specialize=["T"])
def single_pass_forward_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, T, C, skb, skt, skc, svb, svt, svc, syb, syt,
                               syc, TP: tl.constexpr, BC: tl.constexpr):
    """y for one batch item and BC channels, all T (<= TP) tokens at once (grid: C blocks fastest, then B).

    With e_i = 2^(k_i - m) (m the column max) and the separable decay rho^(t-1-i) = rinv shrink_t grow_i,
    grow_i = rho^-(i - c) around the centre c = (T-1)/2:
        N_t = rinv (shrink_t sum_{i<t} grow_i e_i v_i + grow_t sum_{i>t} shrink_i e_i v_i) + e^u e_t v_t
    and D_t the same with v = 1; y = N / D. Two 2-way cumulative sums give the four prefix sums; the
    suffix sums are the totals minus the inclusive prefix sums (cancellation <= 2^(2 |w| T log2 e) <= 16).
    """
    cs = tl.program_id(0) * BC + tl.arange(0, BC)
    b = tl.program_id(1).to(tl.int64)
    cmask = cs < C
    w2, u2 = load_w_u(w_ptr, u_ptr, cs, cmask)
    if tl.min(one_reference_ok(w2, u2, T).to(tl.int32), axis=0) == 0:
        return                                                         # left to the tiled kernel
    t = tl.arange(0, TP)
    tmask = t < T
    k2 = load_tile(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * LOG2E
    v = load_tile(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
    m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
    e = tl.exp2(k2 - m[None, :])                                       # 0 on padding rows
    ev = e * v
    wd = w2[None, :] * (t.to(tl.float32) - (T - 1) * 0.5)[:, None]
    rinv = tl.exp2(w2)[None, :]
    eu = tl.exp2(u2)[None, :]
    # prefix sums (weights grow), then suffix sums (weights shrink): two 2-way scans, fewer live tiles
    grow = tl.exp2(wd)
    gv = grow * ev
    g1 = grow * e
    cgv, cg1 = tl.associative_scan((gv, g1), 0, add_pair)
    shrink = tl.exp2(-wd)
    N = (cgv - gv) * (shrink * rinv) + eu * ev
    D = (cg1 - g1) * (shrink * rinv) + eu * e
    sv = shrink * ev
    s1 = shrink * e
    csv, cs1 = tl.associative_scan((sv, s1), 0, add_pair)
    grow = tl.exp2(wd) * rinv
    N += (tl.sum(sv, axis=0)[None, :] - csv) * grow
    D += (tl.sum(s1, axis=0)[None, :] - cs1) * grow
    store_tile(y_ptr, N / D, syb, syt, syc, b, t, cs, tmask, cmask)


def single_pass_tile(T: int) -> tuple[int, int, int]:
    """(TP, BC, num_warps) by sequence length: 16 elements of each (TP, BC) tile a thread. Chosen on an H100: at
    T = 1024, 4 channels x 8 warps beat 2, 8 and 16 channels; at T = 256, 16 channels x 4 warps."""
    tp = max(16, triton.next_power_of_2(T))
    if INTERPRET:
        return tp, 4, 1
    if tp <= 256:
        return tp, 16, max(1, tp // 64)
    return tp, 4096 // tp, 8


def single_pass_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, y: torch.Tensor,
                        tile: tuple[int, int, int] | None = None) -> int:
    """y (B, T, C) for the channel blocks in the one-reference regime (the others untouched); returns the block
    width BC. w, u (C,) float32 contiguous; k, v, y any strides. tile: (TP, BC, num_warps), single_pass_tile's
    by default."""
    B, T, C = k.shape
    tp, bc, nw = tile or single_pass_tile(T)
    single_pass_forward_kernel[(triton.cdiv(C, bc), B)](w, u, k, v, y, T, C, *k.stride(), *v.stride(), *y.stride(),
                                                         TP=tp, BC=bc, num_warps=nw)
    return bc
