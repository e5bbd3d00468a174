"""The Bi-WKV forward with one read of k and v, in Gluon (Triton's dialect with explicit layouts and shared memory).

Why a second kernel language. The chunked forward (chunked.py) reads k and v twice: once for the chunk
summaries, once for y. At T = 1024 two reads cannot reach half the memory floor, and one read needs a sequence's
k, v held on chip while its chunks' summaries are combined. Plain Triton does not let a kernel keep a tile in
shared memory and read it back in a layout of its choosing, and every single-read design written in it was slower
than the chunked forward (book appendix *What the kernel experiments taught*). Gluon does: this kernel is the
chunked forward's two loops run from shared memory, and at T = 1024 it is 1.4-1.5x faster than the chunked
forward on an H100.

    one program (CTA) = one batch item x BC = 8 channels, the whole sequence (T <= TP <= 1024 tokens)
    1. k, v -> shared memory with cp.async (one DRAM read; 64 KB in float32 at TP = 1024)
    2. NCH = 4 x num_warps chunks of CT = TP / NCH tokens; a thread owns one chunk of one channel and walks it in
       sub-tiles of R rows held in its registers (layout L3): each chunk's max of k and its four weighted sums
    3. the sequence max and every chunk's carries: scans over the chunk axis (prefix: the chunks before;
       suffix: this chunk and those after), as chunked.chunk_carries does across programs
    4. the chunk again from shared memory: y = N / D sub-tile by sub-tile (chunked.chunk_sums' formula)

Same channels as the chunked kernel (the one-reference regime of common.py); a block with any other channel is
left to the tiled kernel, which runs after it and skips the blocks done here (SKIP_BC = BC).

Checks. Gluon does not run under TRITON_INTERPRET=1, so CI compiles this kernel for sm_90 on the CPU
(tests/test_wkv_gluon.py) and checks the formulas through the chunked kernel, which shares them; its numbers are
checked on a GPU against the float64 torch path (the same test file, and benchmarks/wkv.py). Where Gluon is
missing or fails to compile (another Triton version, a GPU before sm_80), the dispatch falls back to the chunked
forward and says so once.
"""
from __future__ import annotations

import warnings

import torch
import triton

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
except ImportError:                      # a Triton without Gluon: the dispatch uses the chunked forward
    gluon = None

from .common import LOG2E

HAVE_GLUON = gluon is not None

BC = 8                     # channels a program: 8 lanes of a warp, 4 chunks on the other lanes
MAX_T = 1024               # 64 KB of shared memory in float32: two programs an SM
MIN_T = 129                # from here the single pass pads to 256 tokens (below, it stays: not measured against this)
NUM_WARPS = 8
# 16-bit inputs halve the bytes but not the arithmetic: past T x C = 2^19 the chunked forward's T-parallel programs
# are faster (bfloat16 on an H100 at 1024 x 560: 81 against 78 us, 1024 x 960: 129 against 109; below it the
# single read wins by up to 40 %, 1024 x 288: 49 against 55 us)
MAX_TC_16BIT = 2 ** 19
R = 4                      # rows a sub-tile: <= 128 registers, two programs an SM (8 rows took 134: 1.4x slower)

_failed: list = []         # the first failure, if Gluon could not compile or launch here


if HAVE_GLUON:
    _barrier = gl.barrier if hasattr(gl, "barrier") else gl.thread_barrier   # renamed in Triton 3.7

    # combine functions of our own: the standard library's gl.sum / gl.max are Triton functions, which
    # TRITON_INTERPRET=1 (set for the CPU tests) turns into interpreter objects that Gluon cannot compile
    @gluon.jit
    def _add(a, b):
        return a + b

    @gluon.jit
    def _max(a, b):
        return gl.maximum(a, b)

    @gluon.jit
    def _min(a, b):
        return gl.minimum(a, b)

    @gluon.jit
    def _add2(a1, b1, a2, b2):
        return a1 + a2, b1 + b2

    @gluon.jit
    def _sub_tile(k_s, v_s, chunk, rr, T, w2, centre, s: gl.constexpr, CT: gl.constexpr, R: gl.constexpr,
                  L3: gl.constexpr):
        """Sub-tile s of every chunk from shared memory (as chunked._chunk_rows): its rows' tokens trow (NCH, R, 1)
        and whether they exist, k (log2 units, -inf past T) and v (0 past T) (NCH, R, BC) in float32, and the
        decay weights of its first row g0 = 2^(w (t0 - centre)), s0 = 1 / g0 (NCH, BC)."""
        t0 = chunk * CT + s * R                                        # (NCH, 1): the sub-tile's first token
        trow = t0[:, None, :] + rr
        inside = trow < T
        k2 = gl.where(inside, k_s.slice(s * R, R, dim=1).load(L3).to(gl.float32) * LOG2E, float("-inf"))
        v = gl.where(inside, v_s.slice(s * R, R, dim=1).load(L3).to(gl.float32), 0.0)
        d = w2[None, :] * (t0.to(gl.float32) - centre)
        return trow, inside, k2, v, gl.exp2(d), gl.exp2(-d)

    @gluon.jit
    def gluon_forward_kernel(w_ptr, u_ptr, k_ptr, v_ptr, y_ptr, T, C, skb, skt, svb, svt, syb, syt,
                              TP: gl.constexpr, BC: gl.constexpr, R: gl.constexpr, NW: gl.constexpr,
                              VEC: gl.constexpr):
        """y of one batch item (program_id 1) and BC channels (program_id 0), k, v, y with unit channel stride."""
        NCH: gl.constexpr = 4 * NW
        CT: gl.constexpr = TP // NCH
        # a thread: R rows of one channel of one chunk; a warp: 4 chunks x 8 channels; warps along the chunks
        L3: gl.constexpr = gl.BlockedLayout([1, R, 1], [4, 1, 8], [NW, 1, 1], [2, 1, 0])
        S2: gl.constexpr = gl.SliceLayout(1, L3)                   # (NCH, BC): one value a chunk and channel
        LS: gl.constexpr = gl.BlockedLayout([1, 1], [4, 8], [NW, 1], [1, 0])   # the same spread, for the scans
        # copies: VEC channels a thread (16 bytes)
        LD: gl.constexpr = gl.BlockedLayout([1, 1, VEC], [1, 32 * VEC // BC, BC // VEC], [NW, 1, 1], [2, 1, 0])
        SMEM: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
        cb = gl.program_id(0)
        b = gl.program_id(1).to(gl.int64)
        hc = gl.arange(0, BC, gl.SliceLayout(0, S2))
        cm = (cb * BC + hc) < C
        w2 = gl.load(w_ptr + cb * BC + hc, mask=cm, other=0.0) * LOG2E
        u2 = gl.load(u_ptr + cb * BC + hc, mask=cm, other=0.0) * LOG2E
        ok = (gl.abs(w2) * T <= 2.0) & (u2 >= -8.0) & (u2 <= 60.0)       # common.one_reference_ok
        if gl.reduce(ok.to(gl.int32), 0, _min) == 1:                        # else left to the tiled kernel
            # 1. the whole sequence into shared memory: one read of k and v
            dt: gl.constexpr = k_ptr.dtype.element_ty
            k_s = gl.allocate_shared_memory(dt, [NCH, CT, BC], SMEM)
            v_s = gl.allocate_shared_memory(dt, [NCH, CT, BC], SMEM)
            ci = gl.arange(0, NCH, gl.SliceLayout(1, gl.SliceLayout(2, LD)))[:, None, None]
            ri = gl.arange(0, CT, gl.SliceLayout(0, gl.SliceLayout(2, LD)))[None, :, None]
            hi = gl.arange(0, BC, gl.SliceLayout(0, gl.SliceLayout(1, LD)))[None, None, :]
            rows = (ci * CT + ri).to(gl.int64)
            chan = cb * BC + hi
            mask = (rows < T) & (chan < C)
            cp.async_copy_global_to_shared(k_s, k_ptr + b * skb + rows * skt + chan, mask=mask)
            cp.async_copy_global_to_shared(v_s, v_ptr + b * svb + rows * svt + chan, mask=mask)
            cp.commit_group()
            # while the copies fly: the decay tables (as chunked._chunk_setup) and positions
            rr = gl.arange(0, R, gl.SliceLayout(0, gl.SliceLayout(2, L3)))[None, :, None]      # (1, R, 1)
            w3 = w2[None, None, :]
            rp = gl.exp2(w3 * rr.to(gl.float32))                      # (1, R, BC): 2^(w r)
            rpi = gl.exp2(-w3 * rr.to(gl.float32))
            rinv = gl.exp2(w2)[None, :]                                # (1, BC): 2^w
            eu = gl.exp2(u2)[None, None, :]
            chunk = gl.arange(0, NCH, gl.SliceLayout(1, S2))[:, None]  # (NCH, 1)
            centre = (T - 1) * 0.5
            cp.wait_group(0)
            _barrier()

            # 2. each chunk's max of k and its four weighted sums (online rescale; chunked.fold_rows)
            m = gl.full([NCH, BC], float("-inf"), gl.float32, S2)
            gv = gl.full([NCH, BC], 0.0, gl.float32, S2)
            g1 = gl.full([NCH, BC], 0.0, gl.float32, S2)
            sv = gl.full([NCH, BC], 0.0, gl.float32, S2)
            s1 = gl.full([NCH, BC], 0.0, gl.float32, S2)
            for s in gl.static_range(CT // R):
                _, _, k2, v, g0, s0 = _sub_tile(k_s, v_s, chunk, rr, T, w2, centre, s, CT, R, L3)
                nm = gl.maximum(m, gl.reduce(k2, 1, _max))
                nm = gl.where(nm == float("-inf"), 0.0, nm)            # no token yet (or a padding channel)
                f = gl.exp2(m - nm)
                e = gl.exp2(k2 - nm[:, None, :])
                ev = e * v
                gv = gv * f + g0 * gl.reduce(rp * ev, 1, _add)
                g1 = g1 * f + g0 * gl.reduce(rp * e, 1, _add)
                sv = sv * f + s0 * gl.reduce(rpi * ev, 1, _add)
                s1 = s1 * f + s0 * gl.reduce(rpi * e, 1, _add)
                m = nm

            # 3. the sequence max M and each chunk's carries against it (chunked.chunk_carries)
            M = gl.reduce(m, 0, _max)                                      # (BC,)
            f = gl.exp2(m - M[None, :])
            gv = gl.convert_layout(gv * f, LS)
            g1 = gl.convert_layout(g1 * f, LS)
            cgv, cg1 = gl.associative_scan((gv, g1), 0, _add2)
            pv = gl.convert_layout(cgv - gv, S2)                       # the chunks before
            p1 = gl.convert_layout(cg1 - g1, S2)
            qv, q1 = gl.associative_scan((gl.convert_layout(sv * f, LS), gl.convert_layout(s1 * f, LS)), 0, _add2,
                                         reverse=True)
            qv = gl.convert_layout(qv, S2)                             # this chunk and those after
            q1 = gl.convert_layout(q1, S2)

            # 4. y, sub-tile by sub-tile (chunked.chunk_sums / y_from_carries), from shared memory
            hh = gl.arange(0, BC, gl.SliceLayout(0, gl.SliceLayout(1, L3)))[None, None, :]
            ych = cb * BC + hh
            ri3 = rinv[:, None, :]
            for s in gl.static_range(CT // R):
                trow, inside, k2, v, g0, s0 = _sub_tile(k_s, v_s, chunk, rr, T, w2, centre, s, CT, R, L3)
                e = gl.exp2(k2 - M[None, None, :])
                ev = e * v
                a = rp * ev
                a1 = rp * e
                xv, x1 = gl.associative_scan((a, a1), 1, _add2)
                bb = rpi * ev
                b1 = rpi * e
                yv, y1 = gl.associative_scan((bb, b1), 1, _add2)
                P = rpi * ((rinv * s0 * pv)[:, None, :] + ri3 * (xv - a))
                P1 = rpi * ((rinv * s0 * p1)[:, None, :] + ri3 * (x1 - a1))
                S = rp * ((rinv * g0 * qv)[:, None, :] - ri3 * yv)
                S1 = rp * ((rinv * g0 * q1)[:, None, :] - ri3 * y1)
                y = (P + S + eu * ev) / (P1 + S1 + eu * e)
                pv = pv + g0 * gl.reduce(a, 1, _add)
                p1 = p1 + g0 * gl.reduce(a1, 1, _add)
                qv = qv - s0 * gl.reduce(bb, 1, _add)
                q1 = q1 - s0 * gl.reduce(b1, 1, _add)
                gl.store(y_ptr + b * syb + trow.to(gl.int64) * syt + ych, y.to(y_ptr.dtype.element_ty),
                         mask=inside & (ych < C))


def usable(k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether this kernel can take the call: CUDA sm_80+, Gluon importable and not failed here before, MIN_T <= T
    <= MAX_T, 16- or 32-bit floats with unit channel stride. A cp.async copies 4, 8 or 16 bytes, so 16-bit inputs
    also need what lets Triton prove 4-byte alignment: C and the strides multiples of 16, 16-byte aligned data
    (a bf16 call at C = 8 failed to compile); and T x C <= MAX_TC_16BIT."""
    if not HAVE_GLUON or _failed or not k.is_cuda:
        return False
    T, C = k.shape[1:]
    if k.element_size() == 2 and (C % 16 or any(s % 16 for t in (k, v) for s in t.stride()[:2])
                                  or k.data_ptr() % 16 or v.data_ptr() % 16 or T * C > MAX_TC_16BIT):
        return False
    return (MIN_T <= T <= MAX_T and k.dtype in (torch.float32, torch.bfloat16, torch.float16) and k.stride(2) == 1
            and v.stride(2) == 1 and torch.cuda.get_device_capability(k.device) >= (8, 0))


def gluon_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, y: torch.Tensor) -> int:
    """y (B, T, C) for the channel blocks in the one-reference regime (the others untouched); returns BC, or 0 when
    the kernel cannot take the call (usable) or Gluon failed to compile or launch here (once, with a warning): the
    caller then runs a Triton kernel."""
    if not usable(k, v):
        return 0
    B, T, C = k.shape
    tp = max(triton.next_power_of_2(T), 4 * NUM_WARPS * R)
    try:
        gluon_forward_kernel[(triton.cdiv(C, BC), B)](
            w, u, k, v, y, T, C, k.stride(0), k.stride(1), v.stride(0), v.stride(1), y.stride(0), y.stride(1),
            TP=tp, BC=BC, R=R, NW=NUM_WARPS, VEC=min(BC, 16 // k.element_size()), num_warps=NUM_WARPS)
    except Exception as exc:                                           # noqa: BLE001 (any compile or launch error)
        _failed.append(repr(exc))
        warnings.warn(f"the Gluon Bi-WKV forward failed here ({exc!r:.200}); using the chunked Triton kernel")
        return 0
    return BC
