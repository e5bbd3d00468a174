"""Session 7 prototype: variant P, a one-read chunked Bi-WKV forward. Each program loads its whole chunk
(CT tokens x BC channels) once, posts the chunk summary, waits (spin on a per-sequence counter) until every
chunk of its sequence has posted, sums its own carries from the summaries (L2) and writes y from the
registers it still holds. PHASE 1 / 2 split it into two launches (the CPU interpreter runs programs one by one)."""
import torch, triton, triton.language as tl
from rwkvseg.kernels import wkv_triton as kt


@triton.jit(do_not_specialize=["T"])
def _onepass_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, sums_ptr, cnt_ptr, T, C, NCB, NCH, NITEMS,
                    skb, skt, skc, svb, svt, svc, syb, syt, syc,
                    CT: tl.constexpr, BC: tl.constexpr, NCHP: tl.constexpr, PHASE: tl.constexpr,
                    MASK_T: tl.constexpr, MASK_C: tl.constexpr, TICKET: tl.constexpr,
                    KEEP_TABLES: tl.constexpr = False):
    if TICKET:
        nseq = NITEMS // NCH
        pid = tl.atomic_add(cnt_ptr + nseq, 1, sem="relaxed")
        if pid == NITEMS - 1:
            tl.store(cnt_ptr + nseq, 0)
    else:
        pid = tl.program_id(0)
    chunk = pid % NCH
    seq = pid // NCH
    cb = seq % NCB
    b64 = (seq // NCB).to(tl.int64)
    cs = cb * BC + tl.arange(0, BC)
    cmask = cs < C
    w2, u2 = kt._load_wu(w_ptr, u_ptr, cs, cmask)
    ok = tl.min(kt._single_ok(w2, u2, T).to(tl.int32), axis=0) == 1
    if ok:
        centre = (T - 1) * 0.5
        r = tl.arange(0, CT)
        rr = r.to(tl.float32)[:, None]
        rows = (chunk * CT + r).to(tl.int64)[:, None]
        rp = tl.exp2(w2[None, :] * rr)
        rpi = tl.exp2(-w2[None, :] * rr)
        kp = kt._chunk_ptr(k_ptr, b64, rows, cs, skb, skt, skc)
        vp = kt._chunk_ptr(v_ptr, b64, rows, cs, svb, svt, svc)
        t0, k2, v, g0, s0 = kt._chunk_rows(kp, vp, skt, svt, 0, chunk, T, centre, w2, cmask, CT, CT, MASK_T, MASK_C)
        cc = tl.arange(0, BC)
        sp = sums_ptr + seq * NCHP * 5 * BC
        m = tl.max(k2, axis=0)
        m = tl.where(m == float("-inf"), 0.0, m)                       # a padding channel
        e = tl.exp2(k2 - m[None, :])                                   # against the chunk max; 0 outside
        cc = tl.arange(0, BC)
        sp = sums_ptr + seq * NCHP * 5 * BC
        if PHASE != 2:
            ev = e * v
            out = sp + chunk * 5 * BC + cc
            tl.store(out, m)
            tl.store(out + BC, g0 * tl.sum(rp * ev, axis=0))
            tl.store(out + 2 * BC, g0 * tl.sum(rp * e, axis=0))
            tl.store(out + 3 * BC, s0 * tl.sum(rpi * ev, axis=0))
            tl.store(out + 4 * BC, s0 * tl.sum(rpi * e, axis=0))
        if PHASE == 0:
            tl.debug_barrier()                                         # every thread's summary is written
            tl.atomic_add(cnt_ptr + seq, 1, sem="release")
            while tl.load(cnt_ptr + seq, volatile=True) < NCH:
                pass
            if tl.atomic_add(cnt_ptr + seq, 1, sem="acq_rel") == 2 * NCH - 1:
                tl.store(cnt_ptr + seq, 0)                             # the last reader: ready for the next call
        if PHASE != 1:
            if not KEEP_TABLES:                                        # w again (after the wait: not merged)
                w2, u2 = kt._load_wu(w_ptr, u_ptr, cs, cmask)
                rp = tl.exp2(w2[None, :] * rr)
                rpi = tl.exp2(-w2[None, :] * rr)
            j = tl.arange(0, NCHP)[:, None]
            jm = j < NCH
            off = j * 5 * BC + cc[None, :]
            ms = tl.load(sp + off, mask=jm, other=float("-inf"), cache_modifier=".cg")
            M = tl.max(ms, axis=0)
            f = tl.exp2(ms - M[None, :])
            pre = j < chunk
            suf = (j >= chunk) & jm
            pv = tl.sum(tl.where(pre, f * tl.load(sp + off + BC, mask=pre, other=0.0, cache_modifier=".cg"), 0.0), axis=0)
            p1 = tl.sum(tl.where(pre, f * tl.load(sp + off + 2 * BC, mask=pre, other=0.0, cache_modifier=".cg"), 0.0), axis=0)
            qv = tl.sum(tl.where(suf, f * tl.load(sp + off + 3 * BC, mask=suf, other=0.0, cache_modifier=".cg"), 0.0), axis=0)
            q1 = tl.sum(tl.where(suf, f * tl.load(sp + off + 4 * BC, mask=suf, other=0.0, cache_modifier=".cg"), 0.0), axis=0)
            ri = tl.exp2(w2)
            eu = tl.exp2(u2)[None, :]
            e = e * tl.exp2(m - M)[None, :]                            # against the sequence max
            ev = e * v
            a = rp * ev
            N = rpi * ((ri * s0 * pv)[None, :] + ri[None, :] * (tl.cumsum(a, axis=0) - a)) + eu * ev
            a = rp * e
            D = rpi * ((ri * s0 * p1)[None, :] + ri[None, :] * (tl.cumsum(a, axis=0) - a)) + eu * e
            N += rp * ((ri * g0 * qv)[None, :] - ri[None, :] * tl.cumsum(rpi * ev, axis=0))
            D += rp * ((ri * g0 * q1)[None, :] - ri[None, :] * tl.cumsum(rpi * e, axis=0))
            yp = kt._chunk_ptr(y_ptr, b64, rows, cs, syb, syt, syc)
            kt._chunk_store(yp, N / D, T, t0, cmask, CT, MASK_T, MASK_C)


def onepass(w, u, k, v, y, tile, ticket=False, split=False, keep=False):
    B, T, C = k.shape
    ct, bc, nw = tile
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums = torch.empty((B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    cnt = kt._counters(B * ncb + 1, k.device)
    n = B * ncb * nch
    meta = dict(CT=ct, BC=bc, NCHP=nchp, MASK_T=T % ct != 0, MASK_C=C % bc != 0, TICKET=ticket, KEEP_TABLES=keep, num_warps=nw)
    args = (w, u, k, v, y, sums, cnt, T, C, ncb, nch, n, *k.stride(), *v.stride(), *y.stride())
    for phase in ((1, 2) if split or kt.INTERPRET else (0,)):
        _onepass_kernel[(n,)](*args, PHASE=phase, **meta)
    return bc


def wkv_forward(w, u, k, v, tile, ticket=False, split=False, fallback=True, keep=False):
    """Like the package's Bi-WKV forward, with variant P as the one-reference kernel."""
    B, T, C = k.shape
    y = torch.empty_like(k)
    w, u = w.float().contiguous(), u.float().contiguous()
    skip = onepass(w, u, k, v, y, tile, ticket, split, keep)
    if fallback:
        tile2 = kt.FALLBACK_TILE
        nt = triton.cdiv(T, tile2[0])
        scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
        kt._launch(kt._fwd, kt._wkv_fwd_kernel, tile2, B, C, w, u, k, v, y, scratch, B, T, C, nt, *k.stride(),
                   *v.stride(), *y.stride(), CAUSAL=False, ALLOW_FAST=True, ALLOW_TIGHT=True, SKIP_BC=skip)
    return y
