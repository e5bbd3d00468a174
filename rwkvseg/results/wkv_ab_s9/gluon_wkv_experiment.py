"""Experiment (not part of the package): a single-read Bi-WKV forward in Gluon, for the one-reference regime.

One CTA per (channel block of BC channels, batch item) holds the whole sequence's k, v in shared memory (cp.async,
one DRAM read), then runs variant C's two loops from shared memory: NCH chunks of CT rows (one thread per chunk and
channel, R rows a sub-tile), chunk summaries -> per-chunk carries (scans over the chunk axis) -> y. T <= TP."""
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp


@gluon.jit
def _add2(a1, b1, a2, b2):
    return a1 + a2, b1 + b2


@gluon.jit
def _add1(a, b):
    return a + b


@gluon.jit
def gluon_bi_wkv_fwd(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, T, C, skb, skt, svb, svt, syb, syt,
                     TP: gl.constexpr, BC: gl.constexpr, R: gl.constexpr, NW: gl.constexpr):
    NCH: gl.constexpr = 4 * NW                     # chunks: 4 a warp (x 8 channels = 32 lanes)
    CT: gl.constexpr = TP // NCH                   # rows a chunk
    L3: gl.constexpr = gl.BlockedLayout([1, R, 1], [4, 1, 8], [NW, 1, 1], [2, 1, 0])
    LD: gl.constexpr = gl.BlockedLayout([1, 1, 4], [1, 16, 2], [NW, 1, 1], [2, 1, 0])
    S2: gl.constexpr = gl.SliceLayout(1, L3)       # (NCH, BC)
    SMEM: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
    cb = gl.program_id(0)
    b = gl.program_id(1).to(gl.int64)

    # 1. the whole sequence into shared memory (one read of k and v)
    k_s = gl.allocate_shared_memory(gl.float32, [NCH, CT, BC], SMEM)
    v_s = gl.allocate_shared_memory(gl.float32, [NCH, CT, BC], SMEM)
    ci = gl.arange(0, NCH, gl.SliceLayout(1, gl.SliceLayout(2, LD)))[:, None, None]
    ri = gl.arange(0, CT, gl.SliceLayout(0, gl.SliceLayout(2, LD)))[None, :, None]
    hi = gl.arange(0, BC, gl.SliceLayout(0, gl.SliceLayout(1, LD)))[None, None, :]
    rows = ci * CT + ri
    chan = cb * BC + hi
    mask = (rows < T) & (chan < C)
    cp.async_copy_global_to_shared(k_s, k_ptr + b * skb + rows.to(gl.int64) * skt + chan, mask=mask)
    cp.async_copy_global_to_shared(v_s, v_ptr + b * svb + rows.to(gl.int64) * svt + chan, mask=mask)
    cp.commit_group()

    # per-channel constants while the copies fly
    hc = gl.arange(0, BC, gl.SliceLayout(0, S2))
    cm = (cb * BC + hc) < C
    w2 = gl.load(w_ptr + cb * BC + hc, mask=cm, other=0.0) * 1.4426950408889634
    u2 = gl.load(u_ptr + cb * BC + hc, mask=cm, other=0.0) * 1.4426950408889634
    rr = gl.arange(0, R, gl.SliceLayout(0, gl.SliceLayout(2, L3))).to(gl.float32)[None, :, None]
    w3 = w2[None, None, :]
    rp = gl.exp2(w3 * rr)                          # (1, R, BC): 2^(w r)
    rpi = gl.exp2(-w3 * rr)
    rinv = gl.exp2(w2)[None, :]                    # (1, BC)
    eu = gl.exp2(u2)[None, None, :]
    chunk = gl.arange(0, NCH, gl.SliceLayout(1, S2))[:, None]          # (NCH, 1)
    centre = (T - 1) * 0.5
    rrow = gl.arange(0, R, gl.SliceLayout(0, gl.SliceLayout(2, L3)))[None, :, None]   # (1, R, 1) int

    cp.wait_group(0)
    gl.thread_barrier()

    # 2. chunk summaries: max of k, and the four weighted sums (online rescale)
    m = gl.full([NCH, BC], float("-inf"), gl.float32, S2)
    gv = gl.zeros([NCH, BC], gl.float32, S2)
    g1 = gl.zeros([NCH, BC], gl.float32, S2)
    sv = gl.zeros([NCH, BC], gl.float32, S2)
    s1 = gl.zeros([NCH, BC], gl.float32, S2)
    for s in gl.static_range(CT // R):
        t0 = chunk * CT + s * R                                        # (NCH, 1)
        trow = t0[:, None, :] + rrow                                   # (NCH, R, 1)
        k2 = k_s.slice(s * R, R, dim=1).load(L3) * 1.4426950408889634
        v = v_s.slice(s * R, R, dim=1).load(L3)
        k2 = gl.where(trow < T, k2, float("-inf"))
        v = gl.where(trow < T, v, 0.0)
        d = w2[None, :] * (t0.to(gl.float32) - centre)                 # (NCH, BC)
        g0 = gl.exp2(d)
        s0 = gl.exp2(-d)
        nm = gl.maximum(m, gl.max(k2, axis=1))
        nm = gl.where(nm == float("-inf"), 0.0, nm)
        f = gl.exp2(m - nm)
        e = gl.exp2(k2 - nm[:, None, :])
        ev = e * v
        gv = gv * f + g0 * gl.sum(rp * ev, axis=1)
        g1 = g1 * f + g0 * gl.sum(rp * e, axis=1)
        sv = sv * f + s0 * gl.sum(rpi * ev, axis=1)
        s1 = s1 * f + s0 * gl.sum(rpi * e, axis=1)
        m = nm

    # 3. carries: the sequence max M, prefix sums over the chunks before, suffix sums from this chunk on
    M = gl.max(m, axis=0)                                              # (BC,)
    f = gl.exp2(m - M[None, :])
    gv = gv * f
    g1 = g1 * f
    sv = sv * f
    s1 = s1 * f
    LS: gl.constexpr = gl.BlockedLayout([1, 1], [4, 8], [NW, 1], [1, 0])   # the same spread, as a plain layout
    gv = gl.convert_layout(gv, LS)
    g1 = gl.convert_layout(g1, LS)
    sv = gl.convert_layout(sv, LS)
    s1 = gl.convert_layout(s1, LS)
    cgv, cg1 = gl.associative_scan((gv, g1), 0, _add2)
    pv = gl.convert_layout(cgv - gv, S2)
    p1 = gl.convert_layout(cg1 - g1, S2)
    qv, q1 = gl.associative_scan((sv, s1), 0, _add2, reverse=True)
    qv = gl.convert_layout(qv, S2)
    q1 = gl.convert_layout(q1, S2)

    # 4. y, sub-tile by sub-tile, from shared memory
    for s in gl.static_range(CT // R):
        t0 = chunk * CT + s * R
        trow = t0[:, None, :] + rrow
        k2 = k_s.slice(s * R, R, dim=1).load(L3) * 1.4426950408889634
        v = v_s.slice(s * R, R, dim=1).load(L3)
        k2 = gl.where(trow < T, k2, float("-inf"))
        v = gl.where(trow < T, v, 0.0)
        d = w2[None, :] * (t0.to(gl.float32) - centre)
        g0 = gl.exp2(d)
        s0 = gl.exp2(-d)
        e = gl.exp2(k2 - M[None, None, :])
        ev = e * v
        a = rp * ev
        a1 = rp * e
        xv, x1 = gl.associative_scan((a, a1), 1, _add2)
        bb = rpi * ev
        b1 = rpi * e
        yv, y1 = gl.associative_scan((bb, b1), 1, _add2)
        ri3 = rinv[:, None, :]
        P = rpi * ((rinv * s0 * pv)[:, None, :] + ri3 * (xv - a))
        P1 = rpi * ((rinv * s0 * p1)[:, None, :] + ri3 * (x1 - a1))
        S = rp * ((rinv * g0 * qv)[:, None, :] - ri3 * yv)
        S1 = rp * ((rinv * g0 * q1)[:, None, :] - ri3 * y1)
        y = (P + S + eu * ev) / (P1 + S1 + eu * e)
        pv = pv + g0 * gl.sum(a, axis=1)
        p1 = p1 + g0 * gl.sum(a1, axis=1)
        qv = qv - s0 * gl.sum(bb, axis=1)
        q1 = q1 - s0 * gl.sum(b1, axis=1)
        hh = gl.arange(0, BC, gl.SliceLayout(0, gl.SliceLayout(1, L3)))[None, None, :]
        ch = cb * BC + hh
        gl.store(y_ptr + b * syb + trow.to(gl.int64) * syt + ch, y, mask=(trow < T) & (ch < C))


def forward(w, u, k, v, TP=None, BC=8, R=4, NW=8):
    """y (B, T, C) float32; k, v, y contiguous in C. T <= TP (a power of two, default the next one)."""
    import torch
    B, T, C = k.shape
    TP = TP or max(triton.next_power_of_2(T), 4 * NW * R)
    assert k.stride(2) == 1 and v.stride(2) == 1 and k.dtype == torch.float32
    y = torch.empty_like(k)
    gluon_bi_wkv_fwd[(triton.cdiv(C, BC), B)](w, u, k, v, y, T, C, k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                                              y.stride(0), y.stride(1), TP=TP, BC=BC, R=R, NW=NW, num_warps=NW)
    return y
