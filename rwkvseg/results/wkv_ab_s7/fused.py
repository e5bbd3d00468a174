"""Session 7 prototype: variant F, variant C's two loops fused into one persistent launch. P programs take work items
(batch item, chunk, channel block) from a ticket counter in order; each reads its chunk (sub-tile loop, as launch 1),
posts the chunk summary, waits until every chunk of its sequence has posted (spin on a per-sequence counter), sums
its own carries from the summaries (L2) and reads the chunk again (now from L2: the items in flight at once are
sized to a fraction of L2) to write y (the sub-tile loop of launch 2). DRAM: one read of k, v and one write of y.
No deadlock: tickets are taken in order and a batch item's NCB * NCH items fit in the P programs."""
import torch, triton, triton.language as tl
from rwkvseg.kernels import wkv_triton as kt


@triton.jit
def _own_carries(sp, chunk, NCH, BC: tl.constexpr):
    """The sequence reference M and the carries entering chunk `chunk` from the NCH summaries at sp (online rescale)."""
    cc = tl.arange(0, BC)
    M = tl.full((BC,), float("-inf"), tl.float32)
    pv = tl.zeros((BC,), tl.float32)
    p1 = tl.zeros((BC,), tl.float32)
    qv = tl.zeros((BC,), tl.float32)
    q1 = tl.zeros((BC,), tl.float32)
    for j in tl.range(0, NCH, num_stages=3):
        base = sp + j * 5 * BC + cc
        mj = tl.load(base, cache_modifier=".cg")
        gv = tl.load(base + BC, cache_modifier=".cg")
        g1 = tl.load(base + 2 * BC, cache_modifier=".cg")
        sv = tl.load(base + 3 * BC, cache_modifier=".cg")
        s1 = tl.load(base + 4 * BC, cache_modifier=".cg")
        nm = tl.maximum(M, mj)
        fa = tl.exp2(M - nm)
        fb = tl.exp2(mj - nm)
        pre = (j < chunk).to(tl.float32) * fb
        suf = (j >= chunk).to(tl.float32) * fb
        pv = pv * fa + pre * gv
        p1 = p1 * fa + pre * g1
        qv = qv * fa + suf * sv
        q1 = q1 * fa + suf * s1
        M = nm
    return M, pv, p1, qv, q1


@triton.jit
def _phase_a(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, cnt_ptr, item, T, C, NCB, NCH, skb, skt, skc, svb, svt, svc,
             CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, NSTAGE: tl.constexpr,
             MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Read item's chunk (DRAM), post its summary, count it in (release)."""
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = kt._chunk_setup(w_ptr, u_ptr, item, T, C, NCB, NCH, CT, R, BC)
    if ok:
        centre = (T - 1) * 0.5
        kp = kt._chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = kt._chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        m = tl.full((BC,), float("-inf"), tl.float32)
        gv = tl.zeros((BC,), tl.float32)
        g1 = tl.zeros((BC,), tl.float32)
        sv = tl.zeros((BC,), tl.float32)
        s1 = tl.zeros((BC,), tl.float32)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            _, k2, v, g0, s0 = kt._chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            m, gv, g1, sv, s1 = kt._chunk_fold(k2, v, g0, s0, rp, rpi, m, gv, g1, sv, s1)
        out = sums_ptr + (seq * NCHP + chunk) * 5 * BC + tl.arange(0, BC)
        tl.store(out, m)
        tl.store(out + BC, gv)
        tl.store(out + 2 * BC, g1)
        tl.store(out + 3 * BC, sv)
        tl.store(out + 4 * BC, s1)
        tl.debug_barrier()
        tl.atomic_add(cnt_ptr + seq, 1, sem="release")


@triton.jit
def _phase_b(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sums_ptr, cnt_ptr, item, T, C, NCB, NCH,
             skb, skt, skc, svb, svt, svc, syb, syt, syc,
             CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, NSTAGE: tl.constexpr,
             MASK_T: tl.constexpr, MASK_C: tl.constexpr):
    """Wait until every chunk of item's sequence has posted, sum the carries, read the chunk again (L2), write y."""
    seq, chunk, cs, cmask, w2, u2, ok, rp, rpi, b64, rows = kt._chunk_setup(w_ptr, u_ptr, item, T, C, NCB, NCH, CT, R, BC)
    if ok:
        while tl.load(cnt_ptr + seq, volatile=True) < NCH:
            pass
        if tl.atomic_add(cnt_ptr + seq, 1, sem="acq_rel") == 2 * NCH - 1:
            tl.store(cnt_ptr + seq, 0)                                 # the last reader: ready for the next call
        M, pv, p1, qv, q1 = _own_carries(sums_ptr + seq * NCHP * 5 * BC, chunk, NCH, BC)
        centre = (T - 1) * 0.5
        rinv = tl.exp2(w2)
        eu = tl.exp2(u2)
        kp = kt._chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = kt._chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        yp = kt._chunk_ptr(y_ptr, b64, rows, cs, syb, syt, syc)
        for s in tl.range(0, CT // R, num_stages=NSTAGE):
            t0, k2, v, g0, s0 = kt._chunk_rows(kp, vp, skt, svt, s, chunk, T, centre, w2, cmask, CT, R, MASK_T, MASK_C)
            y, pv, p1, qv, q1 = kt._chunk_y(k2, v, g0, s0, rp, rpi, rinv, eu, M, pv, p1, qv, q1)
            kt._chunk_store(yp + s * R * syt, y, T, t0, cmask, R, MASK_T, MASK_C)


@triton.jit(do_not_specialize=["T"])
def _fused_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sums_ptr, cnt_ptr, T, C, NCB, NCH, NITEMS, NSEQ,
                  skb, skt, skc, svb, svt, svc, syb, syt, syc,
                  CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, NSTAGE: tl.constexpr,
                  MASK_T: tl.constexpr, MASK_C: tl.constexpr, LOOKAHEAD: tl.constexpr = True):
    """Items in ticket order. LOOKAHEAD: phase A of the next item before phase B of this one (the wait is
    hidden behind a read); else A then B of each item."""
    tick = cnt_ptr + NSEQ
    t1 = tl.atomic_add(tick, 1, sem="relaxed")
    if LOOKAHEAD:
        if t1 < NITEMS:
            _phase_a(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, cnt_ptr, t1, T, C, NCB, NCH, skb, skt, skc, svb, svt, svc,
                     CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)
            t2 = tl.atomic_add(tick, 1, sem="relaxed")
        else:
            t2 = t1
        while t1 < NITEMS:
            if t2 < NITEMS:
                _phase_a(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, cnt_ptr, t2, T, C, NCB, NCH, skb, skt, skc, svb, svt, svc,
                         CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)
            _phase_b(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sums_ptr, cnt_ptr, t1, T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc, syb, syt, syc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)
            t1 = t2
            if t2 < NITEMS:
                t2 = tl.atomic_add(tick, 1, sem="relaxed")
        last = t2
    else:
        while t1 < NITEMS:
            _phase_a(w_ptr, u_ptr, k_ptr, v_ptr, sums_ptr, cnt_ptr, t1, T, C, NCB, NCH, skb, skt, skc, svb, svt, svc,
                     CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)
            _phase_b(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sums_ptr, cnt_ptr, t1, T, C, NCB, NCH,
                     skb, skt, skc, svb, svt, svc, syb, syt, syc, CT, R, BC, NCHP, NSTAGE, MASK_T, MASK_C)
            t1 = tl.atomic_add(tick, 1, sem="relaxed")
        last = t1
    if last == NITEMS + tl.num_programs(0) - 1:                        # the last ticket: ready for the next call
        tl.store(tick, 0)


def fused(w, u, k, v, y, tile, per_sm=4, lookahead=True):
    B, T, C = k.shape
    ct, r, bc, nw, ns = tile
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums = torch.empty((B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    nseq = B * ncb
    cnt = kt._counters(nseq + 1, k.device)
    n = B * ncb * nch
    P = min(n, per_sm * torch.cuda.get_device_properties(k.device).multi_processor_count)
    assert P >= ncb * nch, (P, ncb, nch)   # no deadlock (see the module docstring)
    _fused_kernel[(P,)](w, u, k, v, y, sums, cnt, T, C, ncb, nch, n, nseq, *k.stride(), *v.stride(), *y.stride(),
                        CT=ct, R=r, BC=bc, NCHP=nchp, NSTAGE=ns, MASK_T=T % ct != 0, MASK_C=C % bc != 0, LOOKAHEAD=lookahead, num_warps=nw)
    return bc


def wkv_forward(w, u, k, v, tile, per_sm=4, fallback=True, lookahead=True):
    B, T, C = k.shape
    y = torch.empty_like(k)
    w, u = w.float().contiguous(), u.float().contiguous()
    skip = fused(w, u, k, v, y, tile, per_sm, lookahead)
    if fallback:
        tile2 = kt.FALLBACK_TILE
        nt = triton.cdiv(T, tile2[0])
        scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
        kt._launch(kt._fwd, kt._wkv_fwd_kernel, tile2, B, C, w, u, k, v, y, scratch, B, T, C, nt, *k.stride(),
                   *v.stride(), *y.stride(), CAUSAL=False, ALLOW_FAST=True, ALLOW_TIGHT=True, SKIP_BC=skip)
    return y
