"""The tiled WKV kernel (causal and Bi-WKV, forward and backward, any w and u).

One program owns one batch item b and a block of BC channels, and walks the sequence in tiles of BT tokens;
the running sums of the WKV cross tile borders as small "carries", each with its own log2 scale.

    forward,  Bi-WKV   pass 1 (right to left): the suffix carry entering each tile -> scratch
                       pass 2 (left to right): intra-tile sums by associative scans, plus the
                       prefix carry (running) and the suffix carry (scratch); y = N / D
    forward,  causal   pass 2 only (one read of k, v: the memory floor)
    backward           recompute the forward, q = g / D, the same sums over q and q*y in both
                       directions, then dk, dv and per-program partials of dw, du

When T <= BT the whole sequence is one tile: one read of k, v (and g), one write (the floor).
Inside a tile the decayed sums come from one cumulative sum each through the separable form
rho^(t-1-i) = rho^-1 rho^(t-c) rho^-(i-c) (c the tile centre) when every channel of the program
has |w| BT <= 40 and u >= -8 (the case of every Vision-RWKV call, w = spatial_decay / T);
otherwise from an associative scan with a segment combine that yields exclusive sums directly.
Numerics (book appendix *Derivations*): exponentials in base 2 with pre-scaled arguments; each carry keeps
its own log2 scale and is rescaled when it meets a tile (flash-attention style), so no global
max is needed; decay powers come from w * distance directly (tables computed once per program);
no sum is obtained by subtracting a prefix from a total (the fast path only takes each token's
own term out of its inclusive sum).
Within one tile everything is measured against one reference r = max(tile max of k, carry
scales): exact for w >= 0 and any k; for w < 0 the growth inside a tile, |w| BT, must stay
below ~60 (the torch path has no such limit). dw and du are written per program and summed by
torch: deterministic, no atomics.

After a one-reference kernel (single pass, chunked or Gluon; SKIP_BC = its block width) this kernel exits at
once on the channel blocks that kernel completed and redoes the blocks it declined.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRET, LOG2E, channel_block, load_tile, load_w_u, one_reference_ok, store_tile

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
# The tile when this kernel only follows a one-reference forward for the channel blocks it declined: on an H100
# (measured with the fast path) as fast as the autotuned tile (within 0.5 % at 11 of 12 shapes with every block
# declined, 5 % slower at 1024 x 960), and no autotuner on the host in every call.
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
def _setup(w_ptr, u_ptr, cs, cmask, BT: tl.constexpr, BC: tl.constexpr, ALLOW_FAST: tl.constexpr,
           ALLOW_TIGHT: tl.constexpr):
    """Per-program constants: w, u in log2 units, e^u, and the (BT, BC) decay tables."""
    w2, u2 = load_w_u(w_ptr, u_ptr, cs, cmask)
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
    2^ss (sn, sd) added; N, D are the numerator and denominator of y = N / D.
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
        k2 = load_tile(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * LOG2E
        v = load_tile(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        e = tl.exp2(k2 - m[None, :]) * jpow                      # weight rho^j to the anchor t0 - 1
        s, cx, cy = _carry(s, cx, cy, tl.sum(e * v, axis=0), tl.sum(e, axis=0), m, w2, BT)
        _store_carry(sx, n - 1, C, cs, cmask, s, cx, cy)


# ---- which channel blocks a one-reference kernel left to this one ----------------------------------------


@triton.jit
def _blocks_taken(w_ptr, u_ptr, T, C, first, SKIP_BC: tl.constexpr):
    """Whether the one-reference kernel (blocks of SKIP_BC channels) took the block starting at each channel index
    of `first` (any shape): 1 where it did, 0 where it declined. Channels past C load w = u = 0, which passes, so
    the padding of the last block never declines it."""
    blk = first[:, None] + tl.arange(0, SKIP_BC)[None, :]
    w2, u2 = load_w_u(w_ptr, u_ptr, blk, blk < C)
    return tl.min(one_reference_ok(w2, u2, T).to(tl.int32), axis=1)


@triton.jit
def _done_before(w_ptr, u_ptr, T, C, cs, SKIP_BC: tl.constexpr, BC: tl.constexpr):
    """Whether the one-reference kernel did all of this program's channels cs: every block they touch is checked
    once (NB blocks, powers of two: NB = 1 when BC <= SKIP_BC)."""
    blocks = tl.min(cs, axis=0) // SKIP_BC + tl.arange(0, (BC + SKIP_BC - 1) // SKIP_BC)
    return tl.min(_blocks_taken(w_ptr, u_ptr, T, C, blocks * SKIP_BC, SKIP_BC), axis=0) == 1


@triton.jit
def _declined(w_ptr, u_ptr, T, C, cs, SKIP_BC: tl.constexpr):
    """Per channel cs (BC,): whether the one-reference kernel declined its block."""
    return _blocks_taken(w_ptr, u_ptr, T, C, cs // SKIP_BC * SKIP_BC, SKIP_BC) == 0


@triton.jit(do_not_specialize=["T"])
def tiled_forward_kernel(
    w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sx_ptr, B, T, C, NT,
    skb, skt, skc, svb, svt, svc, syb, syt, syc,
    CAUSAL: tl.constexpr, ALLOW_FAST: tl.constexpr, ALLOW_TIGHT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
    SKIP_BC: tl.constexpr = 0,
):
    """y of one batch item (program_id 0) and BC channels (program_id 1); sx: (B, NT, 3, C) scratch for the
    suffix carries (Bi-WKV)."""
    b = tl.program_id(0).to(tl.int64)
    cs = channel_block(tl.program_id(1) * BC, BC)
    cmask = cs < C
    if SKIP_BC > 0:                  # a one-reference kernel ran first (same stream: it has finished)
        # Skip a block only when that kernel did all of it; otherwise redo the whole block (its
        # stores overwrite, in stream order). Narrowing cmask to the declined channels instead made
        # the mask data-dependent and cost the loads their vectorisation (2x slower on an H100).
        if _done_before(w_ptr, u_ptr, T, C, cs, SKIP_BC, BC):
            return
    w2, eu, rho, jpow, jpow_rev, grow, shrink, rinv, fast, tight = _setup(w_ptr, u_ptr, cs, cmask, BT, BC,
                                                                          ALLOW_FAST, ALLOW_TIGHT)
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
        k2 = load_tile(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * LOG2E
        v = load_tile(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        if CAUSAL:
            ss, sn, sd = ps, pn, pd                                     # no suffix: never read
        else:
            ss, sn, sd = _load_carry(sx, n, C, cs, cmask & (n < n_tiles - 1))
        r, e, ev, Pv, P1, Sv, S1, N, D = _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink,
                                                       rinv, fast, tight, jpow, jpow_rev, CAUSAL)
        store_tile(y_ptr, N / D, syb, syt, syc, b, t, cs, tmask, cmask)
        ps, pn, pd = _carry(ps, pn, pd, tl.sum(jpow_rev * ev, axis=0), tl.sum(jpow_rev * e, axis=0), r, w2, BT)


@triton.jit(do_not_specialize=["T"])
def tiled_backward_kernel(
    w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, dk_ptr, dv_ptr, dw_ptr, du_ptr,
    sx_ptr, px_ptr, qx_ptr, B, T, C, NT,
    skb, skt, skc, svb, svt, svc, sgb, sgt, sgc, sdb, sdt, sdc,
    CAUSAL: tl.constexpr, ALLOW_FAST: tl.constexpr, ALLOW_TIGHT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
    SKIP_BC: tl.constexpr = 0,
):
    """dk, dv of one batch item and BC channels, and their partial dw, du (row b of dw, du: (B, C)); sx, px, qx:
    (B, NT, 3, C) scratch for the forward's suffix and prefix carries and the q carries."""
    b = tl.program_id(0).to(tl.int64)
    cs = channel_block(tl.program_id(1) * BC, BC)
    cmask = cs < C
    if SKIP_BC > 0:                  # the chunked backward ran first: skip what it did (as the forward does)
        if _done_before(w_ptr, u_ptr, T, C, cs, SKIP_BC, BC):
            tl.store(dw_ptr + b * C + cs, tl.zeros((BC,), tl.float32), mask=cmask)
            tl.store(du_ptr + b * C + cs, tl.zeros((BC,), tl.float32), mask=cmask)
            return
    w2, eu, rho, jpow, jpow_rev, grow, shrink, rinv, fast, tight = _setup(w_ptr, u_ptr, cs, cmask, BT, BC,
                                                                          ALLOW_FAST, ALLOW_TIGHT)
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
        k2 = load_tile(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * LOG2E
        v = load_tile(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        m = tl.where(cmask, tl.max(k2, axis=0), 0.0)
        if CAUSAL:  # only the prefix carry is needed here: no in-tile sums
            r = tl.maximum(m, ps)
            e = tl.exp2(k2 - r[None, :])
            ev = e * v
        else:
            ss, sn, sd = _load_carry(sx, n, C, cs, cmask)
            r, e, ev, Pv, P1, Sv, S1, N, D = _tile_forward(k2, v, m, ps, pn, pd, ss, sn, sd, eu, rho, grow, shrink,
                                                           rinv, fast, tight, jpow, jpow_rev, CAUSAL)
            g = load_tile(g_ptr, sgb, sgt, sgc, b, t, cs, tmask, cmask, 0.0)
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
        k2 = load_tile(k_ptr, skb, skt, skc, b, t, cs, tmask, cmask, float("-inf")) * LOG2E
        v = load_tile(v_ptr, svb, svt, svc, b, t, cs, tmask, cmask, 0.0)
        g = load_tile(g_ptr, sgb, sgt, sgc, b, t, cs, tmask, cmask, 0.0)
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
        store_tile(dv_ptr, dv, sdb, sdt, sdc, b, t, cs, tmask, cmask)
        store_tile(dk_ptr, v * dv - dk_sub, sdb, sdt, sdc, b, t, cs, tmask, cmask)
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
_KEY = ["B", "T", "C", "CAUSAL", "ALLOW_FAST", "ALLOW_TIGHT", "SKIP_BC"]
_fwd = triton.autotune(configs=_CONFIGS, key=_KEY)(tiled_forward_kernel)
_bwd = triton.autotune(configs=_CONFIGS, key=_KEY)(tiled_backward_kernel)


def _launch(tuned, kernel, tile, B, C, *args, **constexprs):
    """Run a kernel with the autotuned tile, or with a fixed tile (BT, BC, num_warps)."""
    if tile is None:
        tuned[lambda meta: (B, triton.cdiv(C, meta["BC"]))](*args, **constexprs)
    else:
        bt, bc, nw = tile
        kernel[(B, triton.cdiv(C, bc))](*args, **constexprs, BT=bt, BC=bc, num_warps=nw)


def tiled_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, y: torch.Tensor, *,
                  causal: bool, allow_fast: bool = True, allow_tight: bool = True,
                  tile: tuple[int, int, int] | None = None, skip: int = 0) -> None:
    """y (B, T, C) of the causal WKV or the Bi-WKV. w, u (C,) float32 contiguous; k, v, y any strides.
    skip: the block width of a one-reference kernel that ran before (0: none), whose completed blocks are left
    alone. tile: (BT, BC, num_warps), or None for the autotuned one. allow_fast=False forces the segment scan,
    allow_tight=False the reversed scans for the suffix sums (the same results; for tests and benchmarks)."""
    B, T, C = k.shape
    nt = triton.cdiv(T, tile[0] if tile else MIN_BT)
    scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
    _launch(_fwd, tiled_forward_kernel, tile, B, C, w, u, k, v, y, scratch, B, T, C, nt, *k.stride(), *v.stride(),
            *y.stride(), CAUSAL=causal, ALLOW_FAST=allow_fast, ALLOW_TIGHT=allow_tight, SKIP_BC=skip)


def tiled_backward(w, u, k, v, gy, dk, dv, dw_part, du_part, *, causal: bool, allow_fast: bool = True,
                   allow_tight: bool = True, tile: tuple[int, int, int] | None = None, skip: int = 0) -> None:
    """dk, dv (B, T, C) and the per-item partials dw_part, du_part (B, C) float32 (zeros on the blocks a chunked
    backward that ran before completed: skip = its block width). dk and dv share one set of strides. Other
    arguments as in tiled_forward."""
    B, T, C = k.shape
    nt = triton.cdiv(T, tile[0] if tile else MIN_BT)
    sx, px, qx = (torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device) for _ in range(3))
    _launch(_bwd, tiled_backward_kernel, tile, B, C, w, u, k, v, gy, dk, dv, dw_part, du_part, sx, px, qx, B, T, C,
            nt, *k.stride(), *v.stride(), *gy.stride(), *dk.stride(), CAUSAL=causal, ALLOW_FAST=allow_fast,
            ALLOW_TIGHT=allow_tight, SKIP_BC=skip)
