"""What every WKV kernel shares: base-2 units, tile loads and stores, and the one-reference regime.

Exponentials are taken in base 2 (`exp2`, one instruction on a GPU): e^x = 2^(x log2 e), so w, u and k are
multiplied by LOG2E once, when they are loaded.

The one-reference regime. A Bi-WKV channel whose total decay over the sequence is small,
|w| T log2 e <= 2, and whose bonus is moderate, -8 <= u log2 e <= 60, can measure every term against a single
reference (its largest key) and take the suffix sums as total minus prefix: every decay factor then lies in
[1/4, 4] and no term that matters underflows. Vision-RWKV's w is spatial_decay / T, so every call with
|spatial_decay| <= 1.39 is in it. The single-pass, chunked and Gluon forwards and the chunked backward take
only such channels; the tiled kernel takes everything else (book appendix *Derivations* has the bounds).
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"   # the CPU interpreter: small tiles, no GPU-only paths


@triton.jit
def add_pair(a1, b1, a2, b2):
    """Combine function of a two-value cumulative sum (tl.associative_scan over a pair of tiles)."""
    return a1 + a2, b1 + b2


@triton.jit
def load_tile(ptr, sb, st, sc, b, t, cs, tmask, cmask, other):
    """The (len(t), len(cs)) tile of tokens t and channels cs of batch item b of a strided (B, T, C) tensor,
    in float32; `other` where a mask is off."""
    offs = b * sb + t[:, None].to(tl.int64) * st + cs[None, :].to(tl.int64) * sc
    return tl.load(ptr + offs, mask=tmask[:, None] & cmask[None, :], other=other).to(tl.float32)


@triton.jit
def store_tile(ptr, val, sb, st, sc, b, t, cs, tmask, cmask):
    """Store a (len(t), len(cs)) tile into a strided (B, T, C) tensor, in the tensor's dtype."""
    offs = b * sb + t[:, None].to(tl.int64) * st + cs[None, :].to(tl.int64) * sc
    tl.store(ptr + offs, val.to(ptr.dtype.element_ty), mask=tmask[:, None] & cmask[None, :])


@triton.jit
def channel_block(first, BC: tl.constexpr):
    """Channel indices first .. first + BC - 1 (BC,), marked contiguous in runs of 4 only, so that every thread
    holds 4 channels whatever the dtype. Left to itself, Triton gives 16-bit inputs 8 channels a thread (16-byte
    loads), which splits a tile's rows over twice the threads: every cumulative sum over a sub-tile's rows then
    becomes warp shuffles and every (BC,) vector a layout conversion. float32 compiles to the same code either
    way. Measured on an H100, bfloat16 forward + backward ran 1.3-2.1x faster with it, the tiled kernels 13-20 %;
    the single pass, whose tokens are spread over threads anyway, ran 2-3 % slower and does not use it."""
    return tl.max_contiguous(first + tl.arange(0, BC), 4)


@triton.jit
def load_w_u(w_ptr, u_ptr, idx, mask):
    """w and u at channel indices idx (any shape), in log2 units (times log2 e); 0 where masked."""
    return (tl.load(w_ptr + idx, mask=mask, other=0.0) * LOG2E,
            tl.load(u_ptr + idx, mask=mask, other=0.0) * LOG2E)


@triton.jit
def one_reference_ok(w2, u2, T):
    """Channels (w, u in log2 units) in the one-reference regime: |w| T log2 e <= 2 and -8 <= u log2 e <= 60."""
    return (tl.abs(w2) * T <= 2.0) & (u2 >= -8.0) & (u2 <= 60.0)
