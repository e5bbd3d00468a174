"""Triton kernels for the causal WKV and Bi-WKV (spec kernels.md §3).

Which kernel runs (wkv_forward / wkv_backward at the bottom):
    Bi-WKV forward, channels with small decays (|w| T log2 e <= 2: every Vision-RWKV call)
        T <= 128  variant S, the single pass: the whole sequence of a channel block in one program
        T >  128  variant C, chunked: chunk summaries, then y (two launches, T-parallel); on a CUDA GPU for
                  T <= 1024 the same chunks from shared memory with one read of k, v (wkv_gluon.py, Gluon)
    Bi-WKV backward, the same channels, T >= 128: variant C's chunks, three launches
    everything else (causal forwards and backwards, wide decays): the tiled kernel below
    (variant T), which also takes the channel blocks that S or C declined.

Variant T: one program owns one batch item b and a block of BC channels, and walks the sequence in
tiles of BT tokens; the running sums of spec wkv.md §3 cross tile borders as small "carries".

    forward,  Bi-WKV   pass 1 (right to left): the suffix carry entering each tile -> scratch
                       pass 2 (left to right): intra-tile sums by associative scans, plus the
                       prefix carry (running) and the suffix carry (scratch); y = N / D
    forward,  causal   pass 2 only (one read of k, v: the memory floor)
    backward           recompute the forward, q = g / D, the same sums over q and q*y in both
                       directions, then dk, dv and per-program partials of dw, du (spec wkv.md §6)

When T <= BT the whole sequence is one tile: one read of k, v (and g), one write (the floor).
Inside a tile the decayed sums come from one cumulative sum each through the separable form
rho^(t-1-i) = rho^-1 rho^(t-c) rho^-(i-c) (c the tile centre) when every channel of the program
has |w| BT <= 40 and u >= -8 (the case of every Vision-RWKV call, w = spatial_decay / T);
otherwise from an associative scan with a segment combine that yields exclusive sums directly.
Numerics (spec wkv.md §5): exponentials in base 2 with pre-scaled arguments; each carry keeps
its own log2 scale and is rescaled when it meets a tile (flash-attention style), so no global
max is needed; decay powers come from w * distance directly (tables computed once per program);
no sum is obtained by subtracting a prefix from a total (the fast path only takes each token's
own term out of its inclusive sum).
Within one tile everything is measured against one reference r = max(tile max of k, carry
scales): exact for w >= 0 and any k; for w < 0 the growth inside a tile, |w| BT, must stay
below ~60 (the torch path has no such limit). dw and du are written per program and summed by
torch: deterministic, no atomics.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import wkv_gluon

LOG2E = 1.4426950408889634
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
POISON_OUTPUTS = False  # tests set this: outputs start as NaN so an unwritten element fails

# Tile shapes tried by the autotuner on a GPU (few: each is compiled and timed once per new
# shape, which a training run pays at its first steps); one small tile under the CPU interpreter so that
# tests at T <= 64 cross several tile borders.
if INTERPRET:
    _CONFIGS = [triton.Config({"BT": 16, "BC": 4}, num_warps=1)]
else:
    _CONFIGS = [
        triton.Config({"BT": bt, "BC": bc}, num_warps=nw)
        for bt, bc, nw in [(64, 16, 4), (128, 8, 4), (128, 16, 4), (256, 8, 8)]
    ]
MIN_BT = min(c.kwargs["BT"] for c in _CONFIGS)
# The tiled kernel's tile when it only follows a one-reference forward (variant S or C) for the channel blocks
# they declined: as fast as the autotuned tile on the H100 (results/wkv_ab_s6/ab15: within 0.5 % at 11 of 12
# shapes with every block declined, 5 % slower at 1024 x 960), and no autotuner on the host in every call.
FALLBACK_TILE = (16, 4, 1) if INTERPRET else (128, 16, 4)


@triton.jit
def _combine(a1, p1, x1, e1, y1, f1, a2, p2, x2, e2, y2, f2):
    """Join segment 1 (farther from the output) and segment 2 of a decayed scan.

    a = rho^len, p = rho^(len-1); x, y = inclusive sums and e, f = exclusive sums of two
    sequences at the segment's last token. Exclusive: E = x1 * rho^(len2-1) + e2.
    """
    return a1 * a2, a1 * p2, x1 * a2 + x2, x1 * p2 + e2, y1 * a2 + y2, y1 * p2 + f2


@triton.jit
def _exclusive_sums(rho, x, y, REVERSE: tl.constexpr):
    """sum_{i<t} rho^(t-1-i) x_i (or over i>t with rho^(i-1-t)) along axis 0 of (BT, BC) tiles."""
    ones = tl.full(x.shape, 1.0, tl.float32)
    zeros = tl.zeros(x.shape, tl.float32)
    _, _, _, ex, _, ey = tl.associative_scan((rho, ones, x, zeros, y, zeros), 0, _combine, reverse=REVERSE)
    return ex, ey


@triton.jit
def _intra(z1, z2, rho, grow, shrink, rinv, fast, tight, REVERSE: tl.constexpr):
    """Exclusive decayed sums of two (BT, BC) tiles inside one tile.

    fast (|w| BT <= 40 and u >= -8 in every channel of the program): the separable form
    rho^(t-1-i) = rinv * shrink_t * grow_i, one cumulative sum per sequence; the token's own
    term is taken out of the inclusive sum, harmless while e^u is not tiny.
    tight (fast and |w| BT log2(e) <= 2, every Vision-RWKV call at T >= 256): the suffix sums as the
    tile total minus a forward cumulative sum. Triton lowers reverse=True scans with ~6x the warp
    shuffles of forward ones. For the forward's sums (positive e, and e v measured against them)
    the cancellation costs at most a factor 2^(2 |w| BT log2 e) <= 16 on the rounding error of y;
    the backward's sums over q = g / D (signed, of any size) never take this path.
    Otherwise the segment-combine scan (no restriction on w beyond the tile's range).
    """
    if fast:
        if REVERSE:
            a1 = shrink * z1
            a2 = shrink * z2
            if tight:
                e1 = (tl.sum(a1, 0)[None, :] - tl.cumsum(a1, 0)) * grow * rinv
                e2 = (tl.sum(a2, 0)[None, :] - tl.cumsum(a2, 0)) * grow * rinv
            else:
                e1 = (tl.cumsum(a1, 0, reverse=True) - a1) * grow * rinv
                e2 = (tl.cumsum(a2, 0, reverse=True) - a2) * grow * rinv
        else:
            a1 = grow * z1
            a2 = grow * z2
            e1 = (tl.cumsum(a1, 0) - a1) * shrink * rinv
            e2 = (tl.cumsum(a2, 0) - a2) * shrink * rinv
    else:
        e1, e2 = _exclusive_sums(rho, z1, z2, REVERSE)
    return e1, e2


@triton.jit
def _carry(s, cx, cy, tx, ty, ref, w2, BT: tl.constexpr):
    """Move a carry 2^s (cx, cy) one tile (BT tokens) along and add the tile's own sums
    2^ref (tx, ty), already weighted by their distance to the new anchor. Returns the new
    scale max(s - w BT, ref) and values."""
    ns = tl.maximum(s - w2 * BT, ref)
    f_old = tl.exp2(s - w2 * BT - ns)
    f_new = tl.exp2(ref - ns)
    return ns, cx * f_old + tx * f_new, cy * f_old + ty * f_new


@triton.jit
def _load(ptr, sb, st, sc, b, t, cs, tmask, cmask, other):
    offs = b * sb + t[:, None].to(tl.int64) * st + cs[None, :].to(tl.int64) * sc
    return tl.load(ptr + offs, mask=tmask[:, None] & cmask[None, :], other=other).to(tl.float32)


@triton.jit
def _store(ptr, val, sb, st, sc, b, t, cs, tmask, cmask):
    offs = b * sb + t[:, None].to(tl.int64) * st + cs[None, :].to(tl.int64) * sc
    tl.store(ptr + offs, val.to(ptr.dtype.element_ty), mask=tmask[:, None] & cmask[None, :])


@triton.jit
def _load_carry(ptr, n, C, cs, cmask):
    """(scale, x, y) of a carry stored at tile n of a (B, NT, 3, C) scratch (ptr at row b)."""
    base = ptr + n * 3 * C + cs
    return (tl.load(base, mask=cmask, other=float("-inf")), tl.load(base + C, mask=cmask, other=0.0),
            tl.load(base + 2 * C, mask=cmask, other=0.0))


@triton.jit
def _store_carry(ptr, n, C, cs, cmask, s, cx, cy):
    base = ptr + n * 3 * C + cs
    tl.store(base, s, mask=cmask)
    tl.store(base + C, cx, mask=cmask)
    tl.store(base + 2 * C, cy, mask=cmask)


@triton.jit
def _channels(first, BC: tl.constexpr):
    """Channel indices first .. first + BC - 1 (BC,), marked contiguous in runs of 4 only, so that every thread
    holds 4 channels whatever the dtype. Left to itself, Triton gives 16-bit inputs 8 channels a thread (16-byte
    loads), which splits a tile's rows over twice the threads: in the chunked kernels every cumulative sum over a
    sub-tile's rows becomes shuffles and every (BC,) vector a layout conversion (bf16 launch 2: 235 registers
    instead of fp32's 168). float32 keeps its layout (the same PTX). On the H100 bf16 forward + backward ran
    1.3-2.1x faster with it, the tiled kernels 13-20 %; the single pass, whose tokens are spread over threads
    either way, ran 2-3 % slower and does not use it (results/wkv_ab_s9/)."""
    return tl.max_contiguous(first + tl.arange(0, BC), 4)


@triton.jit
def _load_wu(w_ptr, u_ptr, idx, mask):
    """w and u at channel indices idx (any shape), in log2 units (times log2 e); 0 where masked."""
    return (tl.load(w_ptr + idx, mask=mask, other=0.0) * 1.4426950408889634,
            tl.load(u_ptr + idx, mask=mask, other=0.0) * 1.4426950408889634)


@triton.jit
def _setup(w_ptr, u_ptr, cs, cmask, BT: tl.constexpr, BC: tl.constexpr, ALLOW_FAST: tl.constexpr,
           ALLOW_TIGHT: tl.constexpr):
    """Per-program constants: w, u in log2 units, e^u, and the (BT, BC) decay tables."""
    w2, u2 = _load_wu(w_ptr, u_ptr, cs, cmask)
    eu = tl.exp2(u2)
    jf = tl.arange(0, BT).to(tl.float32)[:, None]
    rho = tl.broadcast_to(tl.exp2(-w2)[None, :], (BT, BC))
    jpow = tl.exp2(-w2[None, :] * jf)                          # rho^j
    jpow_rev = tl.exp2(-w2[None, :] * (BT - 1 - jf))           # rho^(BT-1-j)
    centred = jf - (BT - 1) * 0.5
    grow = tl.exp2(w2[None, :] * centred)                      # used only when fast
    shrink = tl.exp2(-w2[None, :] * centred)
    rinv = tl.exp2(w2)[None, :]
    fast = (tl.max(tl.abs(w2), axis=0) * BT <= 40.0) & (tl.min(u2, axis=0) >= -8.0) & ALLOW_FAST
    tight = fast & (tl.max(tl.abs(w2), axis=0) * BT <= 2.0) & ALLOW_TIGHT
    return w2, eu, rho, jpow, jpow_rev, grow, shrink, rinv, fast, tight


@triton.jit
def _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink, rinv, fast, tight, jpow, jpow_rev,
                  CAUSAL: tl.constexpr):
    """The forward of one tile: reference r = max(tile max, carry scales), e = 2^(k - r), and the
    decayed sums at every token with the prefix carry 2^ps (pn, pd) and (Bi-WKV) the suffix carry
    2^ss (sn, sd) added; N, D are the numerator and denominator of y = N / D (spec wkv.md §3).
    The causal WKV has no suffix: its Sv, S1 are zeros that no caller reads."""
    r = tl.maximum(m, ps)
    if not CAUSAL:
        r = tl.maximum(r, ss)
    e = tl.exp2(k2 - r[None, :])                                        # (BT, BC) <= 1
    ev = e * v
    Pv, P1 = _intra(ev, e, rho, grow, shrink, rinv, fast, tight, False)
    fp = tl.exp2(ps - r)[None, :] * jpow                                # rho^j, rescaled
    Pv += fp * pn[None, :]
    P1 += fp * pd[None, :]
    N = Pv + eu[None, :] * ev
    D = P1 + eu[None, :] * e
    if CAUSAL:
        Sv = tl.zeros_like(Pv)
        S1 = tl.zeros_like(P1)
    else:
        Sv, S1 = _intra(ev, e, rho, grow, shrink, rinv, fast, tight, True)
        fs = tl.exp2(ss - r)[None, :] * jpow_rev                        # rho^(BT-1-j), rescaled
        Sv += fs * sn[None, :]
        S1 += fs * sd[None, :]
        N += Sv
        D += S1
    return r, e, ev, Pv, P1, Sv, S1, N, D


@triton.jit
def _suffix_carries(k_ptr, v_ptr, sx, b, T, C, skb, skt, skc, svb, svt, svc, cs, cmask, w2, jpow,
                    BT: tl.constexpr, BC: tl.constexpr):
    """Right to left: store the forward suffix carry entering tiles n_tiles-2 .. 0."""
    jj = tl.arange(0, BT)
    n_tiles = tl.cdiv(T, BT)
    s = tl.full((BC,), float("-inf"), tl.float32)
    cx = tl.zeros((BC,), tl.float32)
    cy = tl.zeros((BC,), tl.float32)
    for i in range(0, n_tiles - 1):
        n = n_tiles - 1 - i
        t = n * BT + jj
        tmask = t < T
        k2 = _load(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * 1.4426950408889634
        v = _load(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        e = tl.exp2(k2 - m[None, :]) * jpow                      # weight rho^j to the anchor t0 - 1
        s, cx, cy = _carry(s, cx, cy, tl.sum(e * v, axis=0), tl.sum(e, axis=0), m, w2, BT)
        _store_carry(sx, n - 1, C, cs, cmask, s, cx, cy)


# ---- variant S: the whole sequence of a channel block on chip (spec kernels.md §3) -----------------
# Bi-WKV forward only. One read of k, v and one write of y: the memory floor. It needs one reference
# per channel (the column max of k) and the suffix sums as total - prefix, so it takes only the
# channels with |w| T log2(e) <= 2 and -8 <= u log2(e) <= 60 (every Vision-RWKV call: w = decay / T
# with |decay| <= 1.39); a program with any other channel leaves its block to the tiled kernel, which
# runs each of its own blocks that holds a declined one and skips the rest (SKIP_BC). Within these
# bounds every decay factor lies in [1/4, 4] and D >= min(1/4, e^u) 2^(k_max - m) >= 2^-8: no term
# that matters can underflow.


@triton.jit
def _single_ok(w2, u2, T):
    """Channels (w, u in log2 units) that the one-reference forwards (variants S and C) compute
    exactly: |w| T log2 e <= 2 (suffix = total - prefix) and -8 <= u log2 e <= 60."""
    return (tl.abs(w2) * T <= 2.0) & (u2 >= -8.0) & (u2 <= 60.0)


@triton.jit
def _add2(a1, b1, a2, b2):
    return a1 + a2, b1 + b2


@triton.jit(do_not_specialize=["T"])
def _wkv_fwd_single_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, T, C, skb, skt, skc, svb, svt, svc, syb, syt, syc,
                           TP: tl.constexpr, BC: tl.constexpr):
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
    w2, u2 = _load_wu(w_ptr, u_ptr, cs, cmask)
    if tl.min(_single_ok(w2, u2, T).to(tl.int32), axis=0) == 0:
        return                                                         # left to the tiled kernel
    t = tl.arange(0, TP)
    tmask = t < T
    k2 = _load(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * 1.4426950408889634
    v = _load(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
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
    cgv, cg1 = tl.associative_scan((gv, g1), 0, _add2)
    shrink = tl.exp2(-wd)
    N = (cgv - gv) * (shrink * rinv) + eu * ev
    D = (cg1 - g1) * (shrink * rinv) + eu * e
    sv = shrink * ev
    s1 = shrink * e
    csv, cs1 = tl.associative_scan((sv, s1), 0, _add2)
    grow = tl.exp2(wd) * rinv
    N += (tl.sum(sv, axis=0)[None, :] - csv) * grow
    D += (tl.sum(s1, axis=0)[None, :] - cs1) * grow
    _store(y_ptr, N / D, syb, syt, syc, b, t, cs, tmask, cmask)


# Tile (TP, BC, num_warps) of the single-pass forward by sequence length: 16 elements of each
# (TP, BC) tile per thread. Chosen on the H100 (results/wkv_ab/: at T = 1024, 4 channels x 8 warps
# beat 2, 8 and 16 channels; at T = 256, 16 channels x 4 warps). At T = 4096 the best single-pass
# tile only matched the tiled kernel, so longer sequences take the tiled kernel.
SINGLE_MAX_T = 1024
# From here on the chunked kernel (variant C, below) is the default forward: on the H100 it is as fast as the single
# pass or faster at every T > 128 (up to 2.8x at 144-400 tokens, where the single pass pads to 256 or 512 tokens), and
# slower at T <= 128 but for C = 960 from 100 tokens (by 3-26 %; results/wkv_ab_s9/ab40, ab41)
CHUNK_MIN_T = 129
# The chunked backward beats the tiled one from ~128 tokens (results/wkv_ab_s8/ab37: from 196 on 1.5-2.9x faster;
# results/wkv_ab_s9/ab40, bf16 with its 4-channel layout: at 49-64 tokens the tiled kernel is faster at C <= 560 and
# the chunked one at C = 960, at 100 tokens the chunked one from C = 560)
CHUNK_BWD_MIN_T = 128


def _single_tile(T: int) -> tuple[int, int, int]:
    tp = max(16, triton.next_power_of_2(T))
    if INTERPRET:
        return tp, 4, 1
    if tp <= 256:
        return tp, 16, max(1, tp // 64)
    return tp, 4096 // tp, 8


# ---- variant C: chunked two-launch Bi-WKV forward (spec kernels.md §3) -----------------------------
# The same channels as the single pass (one reference per channel: the column max of k; suffix sums as
# totals minus prefix sums), for any T and with T-parallelism. Programs own (batch item, BC channels,
# chunk of CT tokens) and walk their chunk in sub-tiles of R tokens, each thread holding all R rows of
# its channels, so the in-sub-tile cumulative sums are additions in registers (no shuffles).
#   launch 1 (_wkv_fwd_sums_kernel): each chunk's max of k and its four weighted sums (summaries); the
#            last program of a sequence to finish (atomic counter) turns the NCH summaries into each
#            chunk's reference and carries.
#   launch 2 (_wkv_fwd_chunk_kernel): y, one sub-tile after another, from the carries.
# k, v are read twice and y written once: 5/3 of the single-read floor, in exchange for no limit on T and
# short register lifetimes.


@triton.jit
def _chunk_item(pid, NCB, NCH):
    """Work item pid -> (b, seq, chunk, cb): channel blocks fastest, then chunks, then batch items."""
    cb = pid % NCB
    chunk = (pid // NCB) % NCH
    b = pid // (NCB * NCH)
    return b, b * NCB + cb, chunk, cb


@triton.jit
def _chunk_setup(w_ptr, u_ptr, pid, T, C, NCB, NCH, CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr):
    """Item pid's sequence, chunk, channels and their mask, w and u (log2 units), whether the block is in
    the one-reference regime, the sub-tile decay tables rp = 2^(w r), rpi = 2^(-w r) (R, BC), its batch item
    (int64) and the chunk's first R tokens (R, 1)."""
    b, seq, chunk, cb = _chunk_item(pid, NCB, NCH)
    cs = _channels(cb * BC, BC)
    cmask = cs < C
    w2, u2 = _load_wu(w_ptr, u_ptr, cs, cmask)
    ok = tl.min(_single_ok(w2, u2, T).to(tl.int32), axis=0) == 1
    r = tl.arange(0, R)
    rr = r.to(tl.float32)[:, None]
    rows = (chunk * CT + r).to(tl.int64)[:, None]
    return (seq, chunk, cs, cmask, w2, u2, ok, tl.exp2(w2[None, :] * rr), tl.exp2(-w2[None, :] * rr),
            b.to(tl.int64), rows)


@triton.jit
def _chunk_ptr(ptr, b64, rows, cs, sb, st, sc):
    """(R, BC) pointers to rows `rows` (R, 1) and channels cs of batch item b64 of a (B, T, C) tensor."""
    return ptr + b64 * sb + rows * st + cs[None, :] * sc


@triton.jit
def _chunk_load(p, st, s, t0, T, cmask, other, R: tl.constexpr, MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Sub-tile s (R, BC) of a chunk (p points at its first R rows, row stride st; t0 its first token) in
    float32, `other` outside the sequence and the channels."""
    p += s * R * st
    if MASK_T:
        x = tl.load(p, mask=((t0 + tl.arange(0, R)) < T)[:, None] & cmask[None, :], other=other)
    elif MASK_C:
        x = tl.load(p, mask=cmask[None, :], other=other)
    else:
        x = tl.load(p)
    return x.to(tl.float32)


@triton.jit
def _chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT: tl.constexpr, R: tl.constexpr,
                MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Sub-tile s of the chunk (kp, vp point at the chunk's first R rows): its first token t0, k (log2 units)
    and v (R, BC) (k = -inf and v = 0 outside the sequence and the channels), and its first row's decay
    weights g0 = 2^(w (t0 - centre)), s0 = 1 / g0 (BC,)."""
    t0 = chunk * CT + s * R
    k = _chunk_load(kp, skt, s, t0, T, cmask, float("-inf"), R, MASK_T, MASK_C)
    v = _chunk_load(vp, svt, s, t0, T, cmask, 0.0, R, MASK_T, MASK_C)
    d = w2 * (t0 - centre)
    return t0, k * 1.4426950408889634, v, tl.exp2(d), tl.exp2(-d)


@triton.jit
def _chunk_store(yp, y, T, t0, cmask, R: tl.constexpr, MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Store the sub-tile y (R, BC) of rows t0 .. t0 + R - 1 at yp (the rows and channels that exist)."""
    y = y.to(yp.dtype.element_ty)
    if MASK_T:
        tl.store(yp, y, mask=((t0 + tl.arange(0, R)) < T)[:, None] & cmask[None, :])
    elif MASK_C:
        tl.store(yp, y, mask=cmask[None, :])
    else:
        tl.store(yp, y)


@triton.jit
def _chunk_fold(k2, v, g0, s0, rp, rpi, m, gv, g1, sv, s1):
    """Fold rows (k2, v) (R, BC) into a chunk summary: the running max m of k and the four weighted sums
    gv, g1 (grow-weighted e v and e), sv, s1 (shrink-weighted), rescaled online. The rows' weights are
    g0 rp (grow) and s0 rpi (shrink): g0, s0 (BC,) the sub-tile's first row's, rp, rpi its table."""
    nm = tl.maximum(m, tl.max(k2, axis=0))
    nm = tl.where(nm == float("-inf"), 0.0, nm)                        # no token yet (or a padding channel)
    f = tl.exp2(m - nm)
    e = tl.exp2(k2 - nm[None, :])
    ev = e * v
    return (nm, gv * f + g0 * tl.sum(rp * ev, axis=0), g1 * f + g0 * tl.sum(rp * e, axis=0),
            sv * f + s0 * tl.sum(rpi * ev, axis=0), s1 * f + s0 * tl.sum(rpi * e, axis=0))


@triton.jit
def _chunk_carries(sums_ptr, carry_ptr, seq, NCH, BC: tl.constexpr, NCHP: tl.constexpr):
    """Every chunk's reference M (the sequence max) and carries (prefix: the chunks before; suffix: this chunk
    and those after) from the sequence's NCH summaries (read from L2: .cg), each thread summing its own
    channels (no shuffles; the loads pipelined): one pass for M, then one pass that walks the chunks left to
    right for the prefix sums and right to left for the suffix sums at once."""
    cc = tl.arange(0, BC)
    src = sums_ptr + seq * NCHP * 5 * BC + cc
    dst = carry_ptr + seq * NCHP * 5 * BC + cc
    M = tl.full((BC,), float("-inf"), tl.float32)
    for j in tl.range(0, NCH, num_stages=3):
        M = tl.maximum(M, tl.load(src + j * 5 * BC, cache_modifier=".cg"))   # finite: 0 for a padding channel
    pv = tl.zeros((BC,), tl.float32)
    p1 = tl.zeros((BC,), tl.float32)
    qv = tl.zeros((BC,), tl.float32)
    q1 = tl.zeros((BC,), tl.float32)
    for j in tl.range(0, NCH, num_stages=3):
        fwd = j * 5 * BC                                               # chunk j: the prefix before it
        tl.store(dst + fwd, M)
        tl.store(dst + fwd + BC, pv)
        tl.store(dst + fwd + 2 * BC, p1)
        f = tl.exp2(tl.load(src + fwd, cache_modifier=".cg") - M)
        pv += f * tl.load(src + fwd + BC, cache_modifier=".cg")
        p1 += f * tl.load(src + fwd + 2 * BC, cache_modifier=".cg")
        bwd = (NCH - 1 - j) * 5 * BC                                   # chunk NCH-1-j: the suffix from it on
        f = tl.exp2(tl.load(src + bwd, cache_modifier=".cg") - M)
        qv += f * tl.load(src + bwd + 3 * BC, cache_modifier=".cg")
        q1 += f * tl.load(src + bwd + 4 * BC, cache_modifier=".cg")
        tl.store(dst + bwd + 3 * BC, qv)
        tl.store(dst + bwd + 4 * BC, q1)


@triton.jit
def _load_chunk_carries(carry_ptr, seq, chunk, NCHP: tl.constexpr, BC: tl.constexpr):
    """The five carries (reference, two prefix sums, two suffix sums) of one chunk, (BC,) each, from L2."""
    cp = carry_ptr + (seq * NCHP + chunk) * 5 * BC + tl.arange(0, BC)
    return (tl.load(cp, cache_modifier=".cg"), tl.load(cp + BC, cache_modifier=".cg"),
            tl.load(cp + 2 * BC, cache_modifier=".cg"), tl.load(cp + 3 * BC, cache_modifier=".cg"),
            tl.load(cp + 4 * BC, cache_modifier=".cg"))


@triton.jit
def _chunk_sums(x, x1, g0, s0, rp, rpi, rinv, cp, cp1, cs, cs1):
    """The decayed sums of a pair of (R, BC) tiles x, x1 on the rows whose weights are g0 rp (grow) and s0 rpi
    (shrink) (g0, s0, rinv = 2^w: (BC,)), from the carries entering the rows (cp, cp1: grow-weighted sums
    before them; cs, cs1: shrink-weighted sums from them on); returns, for each row r,
        P_r = sum_{i<r} rho^(r-1-i) x_i = rinv shrink_r (cp + sum_{j<r} grow_j x_j)
        S_r = sum_{i>r} rho^(i-1-r) x_i = rinv grow_r (cs - sum_{j<=r} shrink_j x_j)
    (P1, S1 the same for x1) and the carries after the rows. With g0 s0 = 1 taken out:
    P = rpi (rinv s0 cp + rinv X) and S = rp (rinv g0 cs - rinv Y), X, Y the in-thread sums of rp x
    (exclusive) and rpi x (inclusive)."""
    a = rp * x
    a1 = rp * x1
    xv, xv1 = tl.associative_scan((a, a1), 0, _add2)
    b = rpi * x
    b1 = rpi * x1
    yv, yv1 = tl.associative_scan((b, b1), 0, _add2)
    ri = rinv[None, :]
    P = rpi * ((rinv * s0 * cp)[None, :] + ri * (xv - a))
    P1 = rpi * ((rinv * s0 * cp1)[None, :] + ri * (xv1 - a1))
    S = rp * ((rinv * g0 * cs)[None, :] - ri * yv)
    S1 = rp * ((rinv * g0 * cs1)[None, :] - ri * yv1)
    return (P, P1, S, S1, cp + g0 * tl.sum(a, axis=0), cp1 + g0 * tl.sum(a1, axis=0),
            cs - s0 * tl.sum(b, axis=0), cs1 - s0 * tl.sum(b1, axis=0))


@triton.jit
def _chunk_y(k2, v, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1):
    """y for rows (k2, v) (R, BC) from the carries entering them (pv, p1: prefix sums before the rows; qv, q1:
    suffix sums from the rows on, all against the sequence reference M); returns y and the carries after the
    rows: N_r = P_r + S_r + e^u e_r v_r with _chunk_sums' P, S of e v (D the same with v = 1), y = N / D."""
    e = tl.exp2(k2 - M[None, :])
    ev = e * v
    P, P1, S, S1, pv, p1, qv, q1 = _chunk_sums(ev, e, g0, s0, rp, rpi, rinv, pv, p1, qv, q1)
    return (P + S + eu[None, :] * ev) / (P1 + S1 + eu[None, :] * e), pv, p1, qv, q1


@triton.jit
def _post_summary(sums_ptr, carry_ptr, cnt_ptr, seq, chunk, NCH, m, gv, g1, sv, s1, BC: tl.constexpr,
                  NCHP: tl.constexpr):
    """Write one chunk's summary (reference m and four weighted sums, (BC,) each); the sequence's last chunk
    to finish (counter cnt[seq]) turns the NCH summaries into every chunk's carries (_chunk_carries), then
    resets the counter for the next call."""
    out = sums_ptr + (seq * NCHP + chunk) * 5 * BC + tl.arange(0, BC)
    tl.store(out, m)
    tl.store(out + BC, gv)
    tl.store(out + 2 * BC, g1)
    tl.store(out + 3 * BC, sv)
    tl.store(out + 4 * BC, s1)
    tl.debug_barrier()                                                 # every thread's summary is written
    if tl.atomic_add(cnt_ptr + seq, 1, sem="acq_rel") == NCH - 1:      # the sequence's last chunk to finish
        _chunk_carries(sums_ptr, carry_ptr, seq, NCH, BC, NCHP)
        tl.debug_barrier()                                             # every thread's carries are written
        tl.store(cnt_ptr + seq, 0)                                     # ready for the next call


@triton.jit
def _chunk_summarise(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, pid, T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc,
                     CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                     NSTAGE: tl.constexpr, MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Phase 1 of item pid: the chunk's max of k and its four weighted sums (online rescale) -> sums.
    The sequence's last chunk to finish (counter cnt[seq]) turns the NCH summaries into every chunk's
    reference and carries, then resets the counter for the next call."""
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = _chunk_setup(w_ptr, u_ptr, pid, T, C, NCB, NCH, CT, R, BC)
    if ok:                                                             # else left to the tiled kernel
        centre = (T - 1) * 0.5
        kp = _chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = _chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        m = tl.full((BC,), float("-inf"), tl.float32)
        gv = tl.zeros((BC,), tl.float32)
        g1 = tl.zeros((BC,), tl.float32)
        sv = tl.zeros((BC,), tl.float32)
        s1 = tl.zeros((BC,), tl.float32)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            _, k2, v, g0, s0 = _chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            m, gv, g1, sv, s1 = _chunk_fold(k2, v, g0, s0, rp, rpi, m, gv, g1, sv, s1)
        _post_summary(sums_ptr, carry_ptr, cnt_ptr, seq, chunk, NCH, m, gv, g1, sv, s1, BC, NCHP)


@triton.jit
def _chunk_output(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, pid, T, C, NCB, NCH,
                  skb, skt, skc, svb, svt, svc, syb, syt, syc,
                  CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, NSTAGE: tl.constexpr,
                  MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Phase 2 of item pid: y for its chunk, sub-tile by sub-tile (_chunk_y), from the chunk's carries."""
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = _chunk_setup(w_ptr, u_ptr, pid, T, C, NCB, NCH, CT, R, BC)
    if ok:
        centre = (T - 1) * 0.5
        rinv = tl.exp2(w2)
        eu = tl.exp2(u2)
        kp = _chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = _chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        yp = _chunk_ptr(y_ptr, b64, rows, cs, syb, syt, syc)
        M, pv, p1, qv, q1 = _load_chunk_carries(carry_ptr, seq, chunk, NCHP, BC)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            t0, k2, v, g0, s0 = _chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            y, pv, p1, qv, q1 = _chunk_y(k2, v, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1)
            _chunk_store(yp + s * R * syt, y, T, t0, cmask, R, MASK_T, MASK_C)


@triton.jit(do_not_specialize=["T"])
def _wkv_fwd_sums_kernel(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, T, C, NCB, NCH,
                         skb, skt, skc, svb, svt, svc,
                         CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                         NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 1 of variant C, one program per item (B * NCB * NCH). sums / carry: (B * NCB, NCHP, 5, BC)
    float32; cnt: (>= B * NCB,) int32, zeros on entry, and zeros again on exit (the last program resets
    its counter), so one buffer serves every call on a stream. NSTAGE: software pipelining of the
    sub-tile loads (cp.async on sm_80+). MASK_T / MASK_C: T not a multiple of CT / C not of BC."""
    _chunk_summarise(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, tl.program_id(0), T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)


@triton.jit(do_not_specialize=["T"])
def _wkv_fwd_chunk_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, T, C, NCB, NCH,
                          skb, skt, skc, svb, svt, svc, syb, syt, syc,
                          CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                          NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 2 of variant C. Programs run in the reverse order of launch 1: the chunks launch 1 read
    last are still in L2."""
    _chunk_output(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, tl.num_programs(0) - 1 - tl.program_id(0), T, C,
                  NCB, NCH, skb, skt, skc, svb, svt, svc, syb, syt, syc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)


# ---- variant C backward: the same chunks, three launches ---------------------------------------------------
# Gradients of y = N / D (spec wkv.md §6) with q = g / D: dv_i = e_i (Sq_i + Pq_i + e^u q_i) and
# dk_i = v_i dv_i - e_i (Sqy_i + Pqy_i + e^u q_i y_i), where Pq, Sq are the decayed sums of q over the tokens
# before / after i (the forward's sums with q in place of e v) and Pqy, Sqy those of q y; dw and du from the
# same sums (as the tiled kernel's pass 3). q needs D, which needs the forward's carries, so:
#   launch 1 (_wkv_fwd_sums_kernel): the forward's chunk summaries and carries, as in the forward
#   launch 2 (_wkv_bwd_qsums_kernel): each chunk's forward again (y, D), q and q y, and their four weighted
#            sums (summaries); the sequence's last chunk turns them into carries (_chunk_carries, reference 0)
#   launch 3 (_wkv_bwd_chunk_kernel): forward and q sums from both carries; dk, dv; dw, du partials a program.
# k, v are read three times and g twice: 10N against the 5N floor of a backward, T-parallel like the forward.


@triton.jit
def _chunk_q(k2, v, gr, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1):
    """The forward of rows (k2, v) (R, BC) from its carries (_chunk_y's sums, through _chunk_sums), then
    q = g / D and q y for their incoming gradient gr; returns e, y, q, q y, the forward sums P, P1, S, S1 (of e v
    and e) and the carries after the rows."""
    e = tl.exp2(k2 - M[None, :])
    ev = e * v
    P, P1, S, S1, pv, p1, qv, q1 = _chunk_sums(ev, e, g0, s0, rp, rpi, rinv, pv, p1, qv, q1)
    inv = 1.0 / (P1 + S1 + eu[None, :] * e)
    y = (P + S + eu[None, :] * ev) * inv
    q = gr * inv                                                       # 0 on rows past T (g = 0 there)
    return e, y, q, q * y, P, P1, S, S1, pv, p1, qv, q1


@triton.jit(do_not_specialize=["T"])
def _wkv_bwd_qsums_kernel(w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, carry_ptr, qsums_ptr, qcarry_ptr, cnt_ptr, T, C, NCB,
                          NCH, skb, skt, skc, svb, svt, svc, sgb, sgt, sgc,
                          CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                          NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 2 of the chunked backward, one program per item: the chunk's forward from launch 1's carries,
    q = g / D, and the four weighted sums of q and q y -> qsums (reference 0); the sequence's last chunk to
    finish (counter cnt[seq], zeros on entry and exit) turns them into every chunk's q carries."""
    pid = tl.program_id(0)
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = _chunk_setup(w_ptr, u_ptr, pid, T, C, NCB, NCH, CT, R, BC)
    if ok:
        centre = (T - 1) * 0.5
        rinv = tl.exp2(w2)
        eu = tl.exp2(u2)
        kp = _chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = _chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        gp = _chunk_ptr(g_ptr, b64, rows, cs, sgb, sgt, sgc)
        M, pv, p1, qv, q1 = _load_chunk_carries(carry_ptr, seq, chunk, NCHP, BC)
        gq = tl.zeros((BC,), tl.float32)
        gqy = tl.zeros((BC,), tl.float32)
        sq = tl.zeros((BC,), tl.float32)
        sqy = tl.zeros((BC,), tl.float32)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            t0, k2, v, g0, s0 = _chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            gr = _chunk_load(gp, sgt, s, t0, T, cmask, 0.0, R, MASK_T, MASK_C)
            _, y, q, qy, _, _, _, _, pv, p1, qv, q1 = _chunk_q(k2, v, gr, g0, s0, rp, rpi, rinv, eu, M,
                                                               pv, p1, qv, q1)
            gq += g0 * tl.sum(rp * q, axis=0)
            gqy += g0 * tl.sum(rp * qy, axis=0)
            sq += s0 * tl.sum(rpi * q, axis=0)
            sqy += s0 * tl.sum(rpi * qy, axis=0)
        # reference 0: q needs no rescale
        _post_summary(qsums_ptr, qcarry_ptr, cnt_ptr, seq, chunk, NCH, tl.zeros((BC,), tl.float32), gq, gqy, sq, sqy,
                      BC, NCHP)


@triton.jit(do_not_specialize=["T"])
def _wkv_bwd_chunk_kernel(w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, dk_ptr, dv_ptr, dw_ptr, du_ptr, carry_ptr, qcarry_ptr,
                          T, C, NCB, NCH, skb, skt, skc, svb, svt, svc, sgb, sgt, sgc, sdb, sdt, sdc,
                          CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                          NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 3 of the chunked backward, one program per item: dk, dv of its chunk, and its partial dw, du
    ((BC,) at row pid of dw, du: zeros for a declined block), as the tiled kernel's pass 3 computes them."""
    pid = tl.program_id(0)
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = _chunk_setup(w_ptr, u_ptr, pid, T, C, NCB, NCH, CT, R, BC)
    dw_acc = tl.zeros((BC,), tl.float32)
    du_acc = tl.zeros((BC,), tl.float32)
    if ok:
        centre = (T - 1) * 0.5
        rinv = tl.exp2(w2)
        eu = tl.exp2(u2)
        kp = _chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = _chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        gp = _chunk_ptr(g_ptr, b64, rows, cs, sgb, sgt, sgc)
        dkp = _chunk_ptr(dk_ptr, b64, rows, cs, sdb, sdt, sdc)
        dvp = _chunk_ptr(dv_ptr, b64, rows, cs, sdb, sdt, sdc)
        M, pv, p1, qv, q1 = _load_chunk_carries(carry_ptr, seq, chunk, NCHP, BC)
        _, cq, cqy, rq, rqy = _load_chunk_carries(qcarry_ptr, seq, chunk, NCHP, BC)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            t0, k2, v, g0, s0 = _chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            gr = _chunk_load(gp, sgt, s, t0, T, cmask, 0.0, R, MASK_T, MASK_C)
            e, y, q, qy, P, P1, S, S1, pv, p1, qv, q1 = _chunk_q(k2, v, gr, g0, s0, rp, rpi, rinv, eu, M,
                                                                 pv, p1, qv, q1)
            Pq, Pqy, Sq, Sqy, cq, cqy, rq, rqy = _chunk_sums(q, qy, g0, s0, rp, rpi, rinv, cq, cqy, rq, rqy)
            dv = e * (Sq + Pq + eu[None, :] * q)
            dk = v * dv - e * (Sqy + Pqy + eu[None, :] * qy)
            pos = (t0 - centre + tl.arange(0, R).to(tl.float32))[:, None]
            # d/dw: sum over pairs (t, i) of c(t, i) = q_t rho^(|t-i|-1) e_i (v_i - y_t) times -(|t - i| - 1)
            dw_t = (pos + 1.0) * (e * (v * Sq - Sqy) + q * (S - y * S1)) - pos * (q * (P - y * P1) + e * (v * Pq - Pqy))
            dw_acc += tl.sum(dw_t, axis=0)                             # 0 on rows past T (e = q = 0)
            du_acc += tl.sum(e * q * (v - y), axis=0)
            _chunk_store(dkp + s * R * sdt, dk, T, t0, cmask, R, MASK_T, MASK_C)
            _chunk_store(dvp + s * R * sdt, dv, T, t0, cmask, R, MASK_T, MASK_C)
        du_acc = du_acc * eu
    cc = tl.arange(0, BC)
    tl.store(dw_ptr + pid * BC + cc, dw_acc)
    tl.store(du_ptr + pid * BC + cc, du_acc)


def _chunk_tile(T: int, B: int = 1, C: int = 0, slots: int = 0) -> tuple[int, int, int, int, int]:
    """(CT, R, BC, num_warps, num_stages) of variant C: sub-tiles of R = 4 rows, 128 channels a warp (4 a
    thread: 16-byte loads), loads pipelined 3 sub-tiles deep, and 8, 16 or 32 chunks a sequence: the most
    whose programs (B x channel blocks x chunks) still run in one wave of `slots`
    resident programs (measured on the H100, results/wkv_ab_chunk/: at B = 24, 16 chunks at C = 288,
    8 at C = 560 and 960; a second partial wave costs more than shorter chunks gain). Chunks of >= 64 tokens."""
    if INTERPRET:
        return 8, 4, 4, 1, 1
    bc, nch = 128, 8
    items = B * triton.cdiv(C, bc)
    while nch < 32 and items * nch * 2 <= slots:
        nch *= 2
    return max(64, triton.next_power_of_2(T) // nch), 4, bc, 1, 3


_SLOTS: dict = {}


def _wave_slots(device: torch.device) -> int:
    """One-warp programs of variant C resident at once on the device, counted as 13 an SM (on the H100 with
    Triton 3.6 launch 1 takes 126 registers, launch 2 168: 16 and 12 warps an SM; results/wkv_ab_s7/ab21)."""
    if device not in _SLOTS:
        _SLOTS[device] = 13 * torch.cuda.get_device_properties(device).multi_processor_count
    return _SLOTS[device]


_COUNTERS: dict = {}


def _counters(n: int, device: torch.device) -> torch.Tensor:
    """A zeroed int32 buffer of >= n chunk counters for this device and stream, kept between calls
    (launch 1 leaves it zeroed): no memset launch per call."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < n:
        buf = _COUNTERS[key] = torch.zeros(max(n, 4096), dtype=torch.int32, device=device)
    return buf


def _chunk_launch1(w, u, k, v, tile=None):
    """Variant C's launch 1 (chunk summaries and every chunk's carries), shared by the forward and the backward;
    returns the carries and what the later launches need: (carry, n_items, ncb, nch, meta)."""
    B, T, C = k.shape
    ct, r, bc, nw, ns = tile or _chunk_tile(T, B, C, 0 if INTERPRET else _wave_slots(k.device))
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums, carry = torch.empty((2, B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    n_items = B * ncb * nch
    meta = dict(CT=ct, R=r, BC=bc, NCHP=nchp, NSTAGE=ns, MASK_T=T % ct != 0, MASK_C=C % bc != 0, num_warps=nw)
    _wkv_fwd_sums_kernel[(n_items,)](w, u, k, v, sums, carry, _counters(B * ncb, k.device), T, C, ncb, nch,
                                     *k.stride(), *v.stride(), **meta)
    return carry, n_items, ncb, nch, meta


def _chunk_forward(w, u, k, v, y, tile=None) -> int:
    """Variant C into y (the channel blocks outside its bounds untouched); returns its BC."""
    T, C = k.shape[1:]
    carry, n_items, ncb, nch, meta = _chunk_launch1(w, u, k, v, tile)
    _wkv_fwd_chunk_kernel[(n_items,)](w, u, k, v, y, carry, T, C, ncb, nch, *k.stride(), *v.stride(), *y.stride(),
                                      **meta)
    return meta["BC"]


def _chunk_backward(w, u, k, v, gy, dk, dv, tile=None):
    """The chunked backward into dk, dv (the channel blocks outside its bounds untouched); returns its BC and
    its dw, du (C,), zero on the blocks it declined."""
    B, T, C = k.shape
    carry, n_items, ncb, nch, meta = _chunk_launch1(w, u, k, v, tile)
    bc = meta["BC"]
    qsums, qcarry = torch.empty((2, *carry.shape), dtype=torch.float32, device=k.device)
    dw_part, du_part = torch.empty((2, B, nch, ncb * bc), dtype=torch.float32, device=k.device)
    _wkv_bwd_qsums_kernel[(n_items,)](w, u, k, v, gy, carry, qsums, qcarry, _counters(B * ncb, k.device), T, C, ncb,
                                      nch, *k.stride(), *v.stride(), *gy.stride(), **meta)
    # launch 3 holds ~20 (R, BC) tiles at once: half the rows keeps it within 255 registers (results/wkv_ab_s8/ab37:
    # 4-11 % faster in fp32, 2-10 % in bf16)
    _wkv_bwd_chunk_kernel[(n_items,)](w, u, k, v, gy, dk, dv, dw_part, du_part, carry, qcarry, T, C, ncb, nch,
                                      *k.stride(), *v.stride(), *gy.stride(), *dk.stride(), **{**meta, "R": meta["R"] // 2})
    return bc, dw_part.sum((0, 1))[:C], du_part.sum((0, 1))[:C]


@triton.jit
def _blocks_taken(w_ptr, u_ptr, T, C, first, SKIP_BC: tl.constexpr):
    """Whether the one-reference kernel (blocks of SKIP_BC channels) took the block starting at each channel index
    of `first` (any shape): 1 where it did, 0 where it declined. Channels past C load w = u = 0, which passes, so
    the padding of the last block never declines it."""
    blk = first[:, None] + tl.arange(0, SKIP_BC)[None, :]
    w2, u2 = _load_wu(w_ptr, u_ptr, blk, blk < C)
    return tl.min(_single_ok(w2, u2, T).to(tl.int32), axis=1)


@triton.jit
def _done_by_single(w_ptr, u_ptr, T, C, cs, SKIP_BC: tl.constexpr, BC: tl.constexpr):
    """Whether the one-reference kernel did all of this program's channels cs: every block they touch is checked
    once (NB blocks, powers of two: NB = 1 when BC <= SKIP_BC)."""
    blocks = tl.min(cs, axis=0) // SKIP_BC + tl.arange(0, (BC + SKIP_BC - 1) // SKIP_BC)
    return tl.min(_blocks_taken(w_ptr, u_ptr, T, C, blocks * SKIP_BC, SKIP_BC), axis=0) == 1


@triton.jit
def _declined(w_ptr, u_ptr, T, C, cs, SKIP_BC: tl.constexpr):
    """Per channel cs (BC,): whether the one-reference kernel declined its block."""
    return _blocks_taken(w_ptr, u_ptr, T, C, cs // SKIP_BC * SKIP_BC, SKIP_BC) == 0


@triton.jit(do_not_specialize=["T"])
def _wkv_fwd_kernel(
    w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sx_ptr, B, T, C, NT,
    skb, skt, skc, svb, svt, svc, syb, syt, syc,
    CAUSAL: tl.constexpr, ALLOW_FAST: tl.constexpr, ALLOW_TIGHT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
    SKIP_BC: tl.constexpr = 0,
):
    b = tl.program_id(0).to(tl.int64)
    cs = _channels(tl.program_id(1) * BC, BC)
    cmask = cs < C
    if SKIP_BC > 0:                  # the single-pass kernel ran first (same stream: it has finished)
        # Skip a block only when the single pass did all of it; otherwise redo the whole block (its
        # stores overwrite, in stream order). Narrowing cmask to the declined channels instead made
        # the mask data-dependent and cost the loads their vectorisation (2x slower on the H100).
        if _done_by_single(w_ptr, u_ptr, T, C, cs, SKIP_BC, BC):
            return
    w2, eu, rho, jpow, jpow_rev, grow, shrink, rinv, fast, tight = _setup(w_ptr, u_ptr, cs, cmask, BT, BC, ALLOW_FAST, ALLOW_TIGHT)
    jj = tl.arange(0, BT)
    n_tiles = tl.cdiv(T, BT)
    sx = sx_ptr + b * NT * 3 * C
    if not CAUSAL:
        _suffix_carries(k_ptr, v_ptr, sx, b, T, C, skb, skt, skc, svb, svt, svc, cs, cmask, w2, jpow, BT, BC)
        tl.debug_barrier()
    ps = tl.full((BC,), float("-inf"), tl.float32)
    pn = tl.zeros((BC,), tl.float32)
    pd = tl.zeros((BC,), tl.float32)
    for n in range(0, n_tiles):
        t = n * BT + jj
        tmask = t < T
        k2 = _load(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * 1.4426950408889634
        v = _load(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        if CAUSAL:
            ss, sn, sd = ps, pn, pd                                     # no suffix: never read
        else:
            ss, sn, sd = _load_carry(sx, n, C, cs, cmask & (n < n_tiles - 1))
        r, e, ev, Pv, P1, Sv, S1, N, D = _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink,
                                                       rinv, fast, tight, jpow, jpow_rev, CAUSAL)
        _store(y_ptr, N / D, syb, syt, syc, b, t, cs, tmask, cmask)
        ps, pn, pd = _carry(ps, pn, pd, tl.sum(jpow_rev * ev, axis=0), tl.sum(jpow_rev * e, axis=0), r, w2, BT)


@triton.jit(do_not_specialize=["T"])
def _wkv_bwd_kernel(
    w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, dk_ptr, dv_ptr, dw_ptr, du_ptr,
    sx_ptr, px_ptr, qx_ptr, B, T, C, NT,
    skb, skt, skc, svb, svt, svc, sgb, sgt, sgc, sdb, sdt, sdc,
    CAUSAL: tl.constexpr, ALLOW_FAST: tl.constexpr, ALLOW_TIGHT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
    SKIP_BC: tl.constexpr = 0,
):
    b = tl.program_id(0).to(tl.int64)
    cs = _channels(tl.program_id(1) * BC, BC)
    cmask = cs < C
    if SKIP_BC > 0:                  # the chunked backward ran first: skip what it did (as the forward does)
        if _done_by_single(w_ptr, u_ptr, T, C, cs, SKIP_BC, BC):
            tl.store(dw_ptr + b * C + cs, tl.zeros((BC,), tl.float32), mask=cmask)
            tl.store(du_ptr + b * C + cs, tl.zeros((BC,), tl.float32), mask=cmask)
            return
    w2, eu, rho, jpow, jpow_rev, grow, shrink, rinv, fast, tight = _setup(w_ptr, u_ptr, cs, cmask, BT, BC, ALLOW_FAST, ALLOW_TIGHT)
    jj = tl.arange(0, BT)
    n_tiles = tl.cdiv(T, BT)
    sx = sx_ptr + b * NT * 3 * C
    px = px_ptr + b * NT * 3 * C
    qx = qx_ptr + b * NT * 3 * C
    centre = (T - 1) * 0.5

    # pass 1 (Bi-WKV): forward suffix carries, as in the forward kernel
    if not CAUSAL:
        _suffix_carries(k_ptr, v_ptr, sx, b, T, C, skb, skt, skc, svb, svt, svc, cs, cmask, w2, jpow, BT, BC)
        tl.debug_barrier()

    # pass 2, left to right over all tiles but the last: forward prefix carries, and (Bi-WKV)
    # the prefix carries of q = g / D and q * y, which need the whole forward of each tile
    ps = tl.full((BC,), float("-inf"), tl.float32)
    pn = tl.zeros((BC,), tl.float32)
    pd = tl.zeros((BC,), tl.float32)
    qs = tl.full((BC,), float("-inf"), tl.float32)
    qa = tl.zeros((BC,), tl.float32)
    qb = tl.zeros((BC,), tl.float32)
    for n in range(0, n_tiles - 1):
        t = n * BT + jj
        tmask = t < T
        k2 = _load(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * 1.4426950408889634
        v = _load(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        if CAUSAL:  # only the prefix carry is needed here: no in-tile sums
            r = tl.maximum(m, ps)
            e = tl.exp2(k2 - r[None, :])
            ev = e * v
        else:
            ss, sn, sd = _load_carry(sx, n, C, cs, cmask)
            r, e, ev, Pv, P1, Sv, S1, N, D = _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink,
                                                           rinv, fast, tight, jpow, jpow_rev, CAUSAL)
            g = _load(g_ptr, sgb, sgt, sgc, b, t, cs, tmask, cmask, 0.0)
            inv = tl.where(tmask[:, None], 1.0 / D, 0.0)                # 0/0 beyond T
            q = g * inv                                                 # scale 2^-r
            qy = q * (N * inv)
            qs, qa, qb = _carry(qs, qa, qb, tl.sum(jpow_rev * q, axis=0), tl.sum(jpow_rev * qy, axis=0),
                                -r, w2, BT)
            _store_carry(qx, n + 1, C, cs, cmask, qs, qa, qb)
        ps, pn, pd = _carry(ps, pn, pd, tl.sum(jpow_rev * ev, axis=0), tl.sum(jpow_rev * e, axis=0), r, w2, BT)
        _store_carry(px, n + 1, C, cs, cmask, ps, pn, pd)
    tl.debug_barrier()

    # pass 3, right to left over all tiles: everything, then dk, dv and the dw, du partials
    ss = tl.full((BC,), float("-inf"), tl.float32)
    sn = tl.zeros((BC,), tl.float32)
    sd = tl.zeros((BC,), tl.float32)
    qs = tl.full((BC,), float("-inf"), tl.float32)
    qa = tl.zeros((BC,), tl.float32)
    qb = tl.zeros((BC,), tl.float32)
    dw_acc = tl.zeros((BC,), tl.float32)
    du_acc = tl.zeros((BC,), tl.float32)
    for i in range(0, n_tiles):
        n = n_tiles - 1 - i
        t = n * BT + jj
        tmask = t < T
        k2 = _load(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * 1.4426950408889634
        v = _load(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        g = _load(g_ptr, sgb, sgt, sgc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        ps, pn, pd = _load_carry(px, n, C, cs, cmask & (n > 0))
        r, e, ev, Pv, P1, Sv, S1, N, D = _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink,
                                                       rinv, fast, tight, jpow, jpow_rev, CAUSAL)
        inv = tl.where(tmask[:, None], 1.0 / D, 0.0)                    # 0/0 beyond T
        y = N * inv
        q = g * inv                                                     # scale 2^-r
        qy = q * y
        # sums over q from the right (every token i is seen by the tokens t > i)
        Sq, Sqy = _intra(q, qy, rho, grow, shrink, rinv, fast, False, True)  # q = g / D: signed, any size
        fqs = tl.exp2(qs + r)[None, :] * jpow_rev
        Sq += fqs * qa[None, :]
        Sqy += fqs * qb[None, :]
        dv = e * (Sq + eu[None, :] * q)
        dk_sub = e * (Sqy + eu[None, :] * qy)
        pos = (t.to(tl.float32) - centre)[:, None]
        Rm = q * (Pv - y * P1)                                          # sum_{i<t} c(t, i)
        Gp = e * (v * Sq - Sqy)                                         # sum_{t>i} c(t, i)
        dw_t = (pos + 1.0) * Gp - pos * Rm
        if not CAUSAL:
            Pq, Pqy = _intra(q, qy, rho, grow, shrink, rinv, fast, False, False)  # q = g / D: signed, any size
            qps, qpa, qpb = _load_carry(qx, n, C, cs, cmask & (n > 0))
            fqp = tl.exp2(qps + r)[None, :] * jpow
            Pq += fqp * qpa[None, :]
            Pqy += fqp * qpb[None, :]
            dv += e * Pq
            dk_sub += e * Pqy
            Rp = q * (Sv - y * S1)                                      # sum_{i>t} c(t, i)
            Gm = e * (v * Pq - Pqy)                                     # sum_{t<i} c(t, i)
            dw_t += (pos + 1.0) * Rp - pos * Gm
        _store(dv_ptr, dv, sdb, sdt, sdc, b, t, cs, tmask, cmask)
        _store(dk_ptr, v * dv - dk_sub, sdb, sdt, sdc, b, t, cs, tmask, cmask)
        dw_acc += tl.sum(tl.where(tmask[:, None], dw_t, 0.0), axis=0)
        du_acc += tl.sum(eu[None, :] * e * q * (v - y), axis=0)
        # move the suffix carries (forward sums and q sums) to the tile on the left
        if not CAUSAL:
            ss, sn, sd = _carry(ss, sn, sd, tl.sum(jpow * ev, axis=0), tl.sum(jpow * e, axis=0), r, w2, BT)
        qs, qa, qb = _carry(qs, qa, qb, tl.sum(jpow * q, axis=0), tl.sum(jpow * qy, axis=0), -r, w2, BT)
    if SKIP_BC > 0:                  # a program spanning several blocks: dw, du of the others are the chunked kernel's
        keep = _declined(w_ptr, u_ptr, T, C, cs, SKIP_BC)
        dw_acc = tl.where(keep, dw_acc, 0.0)
        du_acc = tl.where(keep, du_acc, 0.0)
    tl.store(dw_ptr + b * C + cs, dw_acc, mask=cmask)
    tl.store(du_ptr + b * C + cs, du_acc, mask=cmask)


# B is an argument only so that the tuned tile shape is chosen per batch size too.
_fwd = triton.autotune(configs=_CONFIGS, key=["B", "T", "C", "CAUSAL", "ALLOW_FAST", "ALLOW_TIGHT", "SKIP_BC"])(_wkv_fwd_kernel)
_bwd = triton.autotune(configs=_CONFIGS, key=["B", "T", "C", "CAUSAL", "ALLOW_FAST", "ALLOW_TIGHT", "SKIP_BC"])(_wkv_bwd_kernel)


def _empty(shape, dtype, device):
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _launch(tuned, kernel, tile, B, C, *args, **constexprs):
    """Run a kernel with the autotuned tile, or with a fixed tile (BT, BC, num_warps)."""
    if tile is None:
        tuned[lambda meta: (B, triton.cdiv(C, meta["BC"]))](*args, **constexprs)
    else:
        bt, bc, nw = tile
        kernel[(B, triton.cdiv(C, bc))](*args, **constexprs, BT=bt, BC=bc, num_warps=nw)


def wkv_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                allow_fast: bool = True, allow_tight: bool = True, allow_single: bool = True,
                tile: tuple[int, int, int] | None = None, single_tile: tuple | None = None,
                single_impl: str = "auto") -> torch.Tensor:
    """y (B, T, C) in k's dtype. k, v any strides (a (B, C, T) view works); w, u (C,) float32.

    Bi-WKV: a one-reference kernel first (single_impl "auto": on a CUDA GPU with Gluon the single-read kernel of
    wkv_gluon for wkv_gluon.MIN_T <= T <= wkv_gluon.MAX_T; else the chunked two-launch kernel when
    T >= CHUNK_MIN_T, else the single pass), then the tiled kernel for the channel blocks it declined
    (an early exit everywhere else; tile FALLBACK_TILE unless given). For benchmarks and tests:
    allow_fast=False forces the segment scan everywhere, allow_tight=False the reversed scans for the
    suffix sums, allow_single=False the tiled kernel alone (autotuned), tile=(BT, BC, num_warps) a fixed
    tile instead, single_impl "scan" (the single pass, T <= SINGLE_MAX_T), "chunk" or "gluon", and single_tile
    their tile: (TP, BC, num_warps) or (CT, R, BC, num_warps, num_stages)."""
    B, T, C = k.shape
    y = _empty((B, T, C), k.dtype, k.device)
    if y.numel() == 0:
        return y
    w, u = w.float().contiguous(), u.float().contiguous()
    if single_impl == "auto":
        single_impl = "gluon" if k.is_cuda else "chunk" if T >= CHUNK_MIN_T else "scan"
    one_ref = not causal and allow_single and allow_fast and allow_tight
    skip = 0
    if one_ref and single_impl == "gluon":
        skip = wkv_gluon.forward(w, u, k, v, y)          # 0 where it does not take the call (wkv_gluon.usable)
        if not skip:
            single_impl = "chunk" if T >= CHUNK_MIN_T else "scan"
    if one_ref and single_impl == "chunk":
        skip = _chunk_forward(w, u, k, v, y, single_tile)
    elif one_ref and single_impl == "scan" and (T <= SINGLE_MAX_T or single_tile):
        tp, skip, nw = single_tile or _single_tile(T)
        _wkv_fwd_single_kernel[(triton.cdiv(C, skip), B)](w, u, k, v, y, T, C, *k.stride(), *v.stride(),
                                                           *y.stride(), TP=tp, BC=skip, num_warps=nw)
    if skip and tile is None:
        tile = FALLBACK_TILE   # after a one-reference kernel: a fixed tile, no autotuner on the host
    nt = triton.cdiv(T, tile[0] if tile else MIN_BT)
    scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
    _launch(_fwd, _wkv_fwd_kernel, tile, B, C, w, u, k, v, y, scratch, B, T, C, nt, *k.stride(), *v.stride(),
            *y.stride(), CAUSAL=causal, ALLOW_FAST=allow_fast, ALLOW_TIGHT=allow_tight, SKIP_BC=skip)
    return y


def wkv_backward(w, u, k, v, gy, *, causal: bool, allow_fast: bool = True, allow_tight: bool = True,
                 allow_single: bool = True, tile: tuple[int, int, int] | None = None, single_tile: tuple | None = None,
                 single_impl: str = "auto"):
    """(dw, du, dk, dv): dw, du (C,) float32 summed over the batch in fixed order; dk, dv in k's dtype.
    Bi-WKV with T >= CHUNK_BWD_MIN_T (or single_impl "chunk"): the chunked backward first, then the tiled kernel
    for the channel blocks it declined (an early exit elsewhere); single_impl "none" never chunks. allow_fast,
    allow_tight, allow_single, tile, single_tile: as in wkv_forward."""
    B, T, C = k.shape
    dk = _empty((B, T, C), k.dtype, k.device)
    dv = _empty((B, T, C), v.dtype, v.device)
    dw_part = _empty((B, C), torch.float32, k.device)
    du_part = _empty((B, C), torch.float32, k.device)
    if dk.numel() == 0:
        return dw_part.sum(0), du_part.sum(0), dk, dv
    w, u = w.float().contiguous(), u.float().contiguous()
    if single_impl == "auto":
        single_impl = "chunk" if T >= CHUNK_BWD_MIN_T else "none"
    skip, dw, du = 0, 0.0, 0.0
    if not causal and allow_single and allow_fast and allow_tight and single_impl == "chunk":
        skip, dw, du = _chunk_backward(w, u, k, v, gy, dk, dv, single_tile)
        tile = tile or FALLBACK_TILE
    nt = triton.cdiv(T, tile[0] if tile else MIN_BT)
    sx, px, qx = (torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device) for _ in range(3))
    _launch(_bwd, _wkv_bwd_kernel, tile, B, C, w, u, k, v, gy, dk, dv, dw_part, du_part, sx, px, qx, B, T, C, nt,
            *k.stride(), *v.stride(), *gy.stride(), *dk.stride(), CAUSAL=causal, ALLOW_FAST=allow_fast,
            ALLOW_TIGHT=allow_tight, SKIP_BC=skip)
    return dw_part.sum(0) + dw, du_part.sum(0) + du, dk, dv
