"""The chunked Bi-WKV kernels: the sequence split into chunks across programs (forward and backward).

The same channels as the single pass (the one-reference regime of common.py: one reference per channel, the
sequence max of k; suffix sums as totals minus prefix sums), for any T and with T-parallelism. Programs own
(batch item, BC channels, chunk of CT tokens) and walk their chunk in sub-tiles of R tokens, each thread holding
all R rows of its channels, so the in-sub-tile cumulative sums are additions in registers (no shuffles).

Forward, two launches:
    launch 1 (chunk_summaries_kernel): each chunk's max of k and its four weighted sums (its summary, fold_rows);
             the last program of a sequence to finish (an atomic counter) turns the NCH summaries into every
             chunk's reference and carries (chunk_carries).
    launch 2 (chunk_forward_kernel): y, one sub-tile after another, from the carries (y_from_carries).
k, v are read twice and y written once: 5/3 of the single-read floor, in exchange for no limit on T and short
register lifetimes.

Decays. With the sequence centre c = (T - 1) / 2 and rho = 2^(-w) (w in log2 units), the separable form
rho^(t-1-i) = rinv shrink_t grow_i, grow_i = 2^(w (i - c)), shrink_t = 1 / grow_t, rinv = 2^w turns every decayed
sum into a plain sum of grow- or shrink-weighted terms. A chunk's summary holds those sums over its tokens; the
carries entering a chunk are the sums of the summaries before it (prefix) and from it on (suffix).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRET, LOG2E, add_pair, channel_block, load_w_u, one_reference_ok

# From here on the chunked forward is the default: on an H100 it is as fast as the single pass or faster at every
# T > 128 (up to 2.8x at 144-400 tokens, where the single pass pads to 256 or 512 tokens), and slower at T <= 128
# except at C = 960 from 100 tokens (by 3-26 %).
CHUNK_MIN_T = 129
# The chunked backward beats the tiled one from ~128 tokens on an H100 (1.5-2.9x faster from 196 tokens; in
# bfloat16 at 49-64 tokens the tiled kernel is faster at C <= 560 and the chunked one at C = 960).
CHUNK_BWD_MIN_T = 128


# ---- the forward: two launches ---------------------------------------------------------------------------


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
    cs = channel_block(cb * BC, BC)
    cmask = cs < C
    w2, u2 = load_w_u(w_ptr, u_ptr, cs, cmask)
    ok = tl.min(one_reference_ok(w2, u2, T).to(tl.int32), axis=0) == 1
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
    return t0, k * LOG2E, v, tl.exp2(d), tl.exp2(-d)


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
def fold_rows(k2, v, g0, s0, rp, rpi, m, gv, g1, sv, s1):
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
def chunk_carries(sums_ptr, carry_ptr, seq, NCH, BC: tl.constexpr, NCHP: tl.constexpr):
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
def chunk_sums(x, x1, g0, s0, rp, rpi, rinv, cp, cp1, cs, cs1):
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
    xv, xv1 = tl.associative_scan((a, a1), 0, add_pair)
    b = rpi * x
    b1 = rpi * x1
    yv, yv1 = tl.associative_scan((b, b1), 0, add_pair)
    ri = rinv[None, :]
    P = rpi * ((rinv * s0 * cp)[None, :] + ri * (xv - a))
    P1 = rpi * ((rinv * s0 * cp1)[None, :] + ri * (xv1 - a1))
    S = rp * ((rinv * g0 * cs)[None, :] - ri * yv)
    S1 = rp * ((rinv * g0 * cs1)[None, :] - ri * yv1)
    return (P, P1, S, S1, cp + g0 * tl.sum(a, axis=0), cp1 + g0 * tl.sum(a1, axis=0),
            cs - s0 * tl.sum(b, axis=0), cs1 - s0 * tl.sum(b1, axis=0))


@triton.jit
def y_from_carries(k2, v, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1):
    """y for rows (k2, v) (R, BC) from the carries entering them (pv, p1: prefix sums before the rows; qv, q1:
    suffix sums from the rows on, all against the sequence reference M); returns y and the carries after the
    rows: N_r = P_r + S_r + e^u e_r v_r with chunk_sums' P, S of e v (D the same with v = 1), y = N / D."""
    e = tl.exp2(k2 - M[None, :])
    ev = e * v
    P, P1, S, S1, pv, p1, qv, q1 = chunk_sums(ev, e, g0, s0, rp, rpi, rinv, pv, p1, qv, q1)
    return (P + S + eu[None, :] * ev) / (P1 + S1 + eu[None, :] * e), pv, p1, qv, q1


@triton.jit
def _post_summary(sums_ptr, carry_ptr, cnt_ptr, seq, chunk, NCH, m, gv, g1, sv, s1, BC: tl.constexpr,
                  NCHP: tl.constexpr):
    """Write one chunk's summary (reference m and four weighted sums, (BC,) each); the sequence's last chunk
    to finish (counter cnt[seq]) turns the NCH summaries into every chunk's carries (chunk_carries), then
    resets the counter for the next call."""
    out = sums_ptr + (seq * NCHP + chunk) * 5 * BC + tl.arange(0, BC)
    tl.store(out, m)
    tl.store(out + BC, gv)
    tl.store(out + 2 * BC, g1)
    tl.store(out + 3 * BC, sv)
    tl.store(out + 4 * BC, s1)
    tl.debug_barrier()                                                 # every thread's summary is written
    if tl.atomic_add(cnt_ptr + seq, 1, sem="acq_rel") == NCH - 1:      # the sequence's last chunk to finish
        chunk_carries(sums_ptr, carry_ptr, seq, NCH, BC, NCHP)
        tl.debug_barrier()                                             # every thread's carries are written
        tl.store(cnt_ptr + seq, 0)                                     # ready for the next call


@triton.jit
def _summarise_chunk(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, pid, T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc,
                     CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                     NSTAGE: tl.constexpr, MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Launch 1's work for item pid: the chunk's max of k and its four weighted sums (online rescale) -> sums.
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
            m, gv, g1, sv, s1 = fold_rows(k2, v, g0, s0, rp, rpi, m, gv, g1, sv, s1)
        _post_summary(sums_ptr, carry_ptr, cnt_ptr, seq, chunk, NCH, m, gv, g1, sv, s1, BC, NCHP)


@triton.jit
def chunk_output(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, pid, T, C, NCB, NCH,
                 skb, skt, skc, svb, svt, svc, syb, syt, syc,
                 CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, NSTAGE: tl.constexpr,
                 MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Launch 2's work for item pid: y for its chunk, sub-tile by sub-tile (y_from_carries), from its carries."""
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
            y, pv, p1, qv, q1 = y_from_carries(k2, v, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1)
            _chunk_store(yp + s * R * syt, y, T, t0, cmask, R, MASK_T, MASK_C)


@triton.jit(do_not_specialize=["T"])
def chunk_summaries_kernel(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, T, C, NCB, NCH,
                           skb, skt, skc, svb, svt, svc,
                           CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                           NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 1 of the chunked forward (and backward), one program per item (B * NCB * NCH). sums / carry:
    (B * NCB, NCHP, 5, BC) float32; cnt: (>= B * NCB,) int32, zeros on entry, and zeros again on exit (the last
    program resets its counter), so one buffer serves every call on a stream. NSTAGE: software pipelining of the
    sub-tile loads (cp.async on sm_80+). MASK_T / MASK_C: T not a multiple of CT / C not of BC."""
    _summarise_chunk(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, carry_ptr, cnt_ptr, tl.program_id(0), T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)


@triton.jit(do_not_specialize=["T"])
def chunk_forward_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, T, C, NCB, NCH,
                         skb, skt, skc, svb, svt, svc, syb, syt, syc,
                         CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr,
                         NSTAGE: tl.constexpr = 3, MASK_T: tl.constexpr = True, MASK_C: tl.constexpr = True):
    """Launch 2 of the chunked forward. Programs run in the reverse order of launch 1: the chunks launch 1 read
    last are still in L2."""
    chunk_output(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, carry_ptr, tl.num_programs(0) - 1 - tl.program_id(0), T, C,
                 NCB, NCH, skb, skt, skc, svb, svt, svc, syb, syt, syc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)


# ---- the backward: the same chunks, three launches ---------------------------------------------------------
# Gradients of y = N / D (book appendix *Derivations*) with q = g / D: dv_i = e_i (Sq_i + Pq_i + e^u q_i) and
# dk_i = v_i dv_i - e_i (Sqy_i + Pqy_i + e^u q_i y_i), where Pq, Sq are the decayed sums of q over the tokens
# before / after i (the forward's sums with q in place of e v) and Pqy, Sqy those of q y; dw and du from the
# same sums (as the tiled kernel's pass 3). q needs D, which needs the forward's carries, so:
#   launch 1 (chunk_summaries_kernel): the forward's chunk summaries and carries, as in the forward
#   launch 2 (chunk_q_summaries_kernel): each chunk's forward again (y, D), q and q y, and their four weighted
#            sums (summaries); the sequence's last chunk turns them into carries (chunk_carries, reference 0)
#   launch 3 (chunk_backward_kernel): forward and q sums from both carries; dk, dv; dw, du partials a program.
# k, v are read three times and g twice: 10N against the 5N floor of a backward, T-parallel like the forward.


@triton.jit
def _chunk_q(k2, v, gr, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1):
    """The forward of rows (k2, v) (R, BC) from its carries (y_from_carries's sums, through chunk_sums), then
    q = g / D and q y for their incoming gradient gr; returns e, y, q, q y, the forward sums P, P1, S, S1 (of e v
    and e) and the carries after the rows."""
    e = tl.exp2(k2 - M[None, :])
    ev = e * v
    P, P1, S, S1, pv, p1, qv, q1 = chunk_sums(ev, e, g0, s0, rp, rpi, rinv, pv, p1, qv, q1)
    inv = 1.0 / (P1 + S1 + eu[None, :] * e)
    y = (P + S + eu[None, :] * ev) * inv
    q = gr * inv                                                       # 0 on rows past T (g = 0 there)
    return e, y, q, q * y, P, P1, S, S1, pv, p1, qv, q1


@triton.jit(do_not_specialize=["T"])
def chunk_q_summaries_kernel(w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, carry_ptr, qsums_ptr, qcarry_ptr, cnt_ptr, T, C,
                             NCB, NCH, skb, skt, skc, svb, svt, svc, sgb, sgt, sgc,
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
def chunk_backward_kernel(w_ptr, u_ptr, k_ptr, v_ptr, g_ptr, dk_ptr, dv_ptr, dw_ptr, du_ptr, carry_ptr, qcarry_ptr,
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
            Pq, Pqy, Sq, Sqy, cq, cqy, rq, rqy = chunk_sums(q, qy, g0, s0, rp, rpi, rinv, cq, cqy, rq, rqy)
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


# ---- host side -------------------------------------------------------------------------------------------


def chunk_tile(T: int, B: int = 1, C: int = 0, slots: int = 0) -> tuple[int, int, int, int, int]:
    """(CT, R, BC, num_warps, num_stages) of the chunked kernels: sub-tiles of R = 4 rows, 128 channels a warp
    (4 a thread: 16-byte loads), loads pipelined 3 sub-tiles deep, and 8, 16 or 32 chunks a sequence: the most
    whose programs (B x channel blocks x chunks) still run in one wave of `slots` resident programs (measured on
    an H100: at B = 24, 16 chunks at C = 288, 8 at C = 560 and 960; a second partial wave costs more than shorter
    chunks gain). Chunks of >= 64 tokens."""
    if INTERPRET:
        return 8, 4, 4, 1, 1
    bc, nch = 128, 8
    items = B * triton.cdiv(C, bc)
    while nch < 32 and items * nch * 2 <= slots:
        nch *= 2
    return max(64, triton.next_power_of_2(T) // nch), 4, bc, 1, 3


_SLOTS: dict = {}


def _wave_slots(device: torch.device) -> int:
    """One-warp programs of the chunked kernels resident at once on the device, counted as 13 an SM (on an H100
    with Triton 3.6 launch 1 takes 126 registers, launch 2 168: 16 and 12 warps an SM)."""
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
    """Launch 1 (chunk summaries and every chunk's carries), shared by the forward and the backward;
    returns the carries and what the later launches need: (carry, n_items, ncb, nch, meta)."""
    B, T, C = k.shape
    ct, r, bc, nw, ns = tile or chunk_tile(T, B, C, 0 if INTERPRET else _wave_slots(k.device))
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums, carry = torch.empty((2, B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    n_items = B * ncb * nch
    meta = dict(CT=ct, R=r, BC=bc, NCHP=nchp, NSTAGE=ns, MASK_T=T % ct != 0, MASK_C=C % bc != 0, num_warps=nw)
    chunk_summaries_kernel[(n_items,)](w, u, k, v, sums, carry, _counters(B * ncb, k.device), T, C, ncb, nch,
                                       *k.stride(), *v.stride(), **meta)
    return carry, n_items, ncb, nch, meta


def chunk_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, y: torch.Tensor,
                  tile: tuple | None = None) -> int:
    """y (B, T, C) for the channel blocks in the one-reference regime (the others untouched); returns the block
    width BC. w, u (C,) float32 contiguous; k, v, y any strides. tile: (CT, R, BC, num_warps, num_stages),
    chunk_tile's by default."""
    T, C = k.shape[1:]
    carry, n_items, ncb, nch, meta = _chunk_launch1(w, u, k, v, tile)
    chunk_forward_kernel[(n_items,)](w, u, k, v, y, carry, T, C, ncb, nch, *k.stride(), *v.stride(), *y.stride(),
                                     **meta)
    return meta["BC"]


def chunk_backward(w, u, k, v, gy, dk, dv, tile=None):
    """dk, dv (B, T, C) for the channel blocks in the one-reference regime (the others untouched); returns the
    block width BC and dw, du (C,), zero on the blocks it declined. tile: as in chunk_forward."""
    B, T, C = k.shape
    carry, n_items, ncb, nch, meta = _chunk_launch1(w, u, k, v, tile)
    bc = meta["BC"]
    qsums, qcarry = torch.empty((2, *carry.shape), dtype=torch.float32, device=k.device)
    dw_part, du_part = torch.empty((2, B, nch, ncb * bc), dtype=torch.float32, device=k.device)
    chunk_q_summaries_kernel[(n_items,)](w, u, k, v, gy, carry, qsums, qcarry, _counters(B * ncb, k.device), T, C,
                                         ncb, nch, *k.stride(), *v.stride(), *gy.stride(), **meta)
    # launch 3 holds ~20 (R, BC) tiles at once: half the rows keeps it within 255 registers (on an H100 4-11 %
    # faster in float32, 2-10 % in bfloat16)
    chunk_backward_kernel[(n_items,)](w, u, k, v, gy, dk, dv, dw_part, du_part, carry, qcarry, T, C, ncb, nch,
                                      *k.stride(), *v.stride(), *gy.stride(), *dk.stride(),
                                      **{**meta, "R": meta["R"] // 2})
    return bc, dw_part.sum((0, 1))[:C], du_part.sum((0, 1))[:C]
