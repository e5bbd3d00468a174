"""Which WKV kernel runs: wkv_forward and wkv_backward.

    Bi-WKV forward, channels in the one-reference regime (common.py: |w| T log2 e <= 2, every Vision-RWKV call)
        T <= 128          the single pass: the whole sequence of a channel block in one program (single_pass.py)
        T >  128          the chunked forward: chunk summaries, then y (two launches, T-parallel; chunked.py)
        129 <= T <= 1024  on a CUDA GPU: the same chunks from shared memory, one read of k, v (gluon.py)
    Bi-WKV backward, the same channels, T >= 128: the chunked backward (three launches; chunked.py)
    everything else (causal forwards and backwards, wide decays): the tiled kernel (tiled.py), which also
    takes the channel blocks that the kernels above declined (with its segment scan alone, see below) and exits
    at once on the others.

forward_variant and backward_variant run a chosen kernel, tile or arithmetic path instead: for tests and
benchmarks, which compare them (every variant computes the same function).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import gluon
from .chunked import CHUNK_BWD_MIN_T, CHUNK_MIN_T, chunk_backward, chunk_forward
from .common import INTERPRET
from .single_pass import SINGLE_MAX_T, single_pass_forward
from .tiled import FALLBACK_TILE, tiled_backward, tiled_forward

POISON_OUTPUTS = False  # tests set this: outputs start as NaN, so an element no kernel writes fails

# After a one-reference kernel the tiled kernel only redoes the channel blocks it declined, and it does so with its
# segment scan alone (allow_fast=False: the same results). Those blocks are rare (none in the shipped networks:
# their |spatial_decay| stays under 0.11, the regime reaches 1.39), while the kernel is built at every cold start
# before the first step, and the fast path's code doubles that build (compiled for sm_90, bf16, FALLBACK_TILE, on
# a 2-core CPU: backward 9.7 -> 4.4 s, forward 2.6 -> 1.5 s).


def _quiet_interpreter():
    """The kernels compute 0 / 0 on the padding rows past T, which they never store: silent on a GPU, but the CPU
    interpreter runs them in numpy, which would warn on every call."""
    return np.errstate(divide="ignore", invalid="ignore", over="ignore") if INTERPRET else contextlib.nullcontext()


def _empty(shape, dtype, device):
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def wkv_forward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """y (B, T, C) of the causal WKV or the Bi-WKV, in k's dtype. k, v (B, T, C) with any strides (a (B, C, T)
    view works), float32, bfloat16 or float16; w, u (C,), computed in float32."""
    return forward_variant(w, u, k, v, causal=causal)


def wkv_backward(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gy: torch.Tensor, *,
                 causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dw, du, dk, dv) for the incoming gradient gy (B, T, C): dw, du (C,) float32, summed over the batch in a
    fixed order (deterministic); dk, dv in k's dtype."""
    return backward_variant(w, u, k, v, gy, causal=causal)


def forward_variant(w, u, k, v, *, causal: bool, impl: str = "auto", impl_tile: tuple | None = None,
                    tile: tuple[int, int, int] | None = None, allow_fast: bool = True,
                    allow_tight: bool = True) -> torch.Tensor:
    """wkv_forward with a chosen kernel (for tests and benchmarks).

    impl: the one-reference kernel that runs first on a Bi-WKV: "auto" (wkv_forward's choice), "gluon",
    "chunked", "single_pass" (T <= SINGLE_MAX_T unless impl_tile is given) or "none"; impl_tile its tile
    ((CT, R, BC, num_warps, num_stages) chunked, (TP, BC, num_warps) single pass). The tiled kernel then runs on
    the blocks it declined, with `tile` = (BT, BC, num_warps), FALLBACK_TILE after a one-reference kernel, else
    autotuned. allow_fast=False forces the tiled kernel's segment scan everywhere and allow_tight=False its
    reversed scans for the suffix sums (either also turns the one-reference kernels off)."""
    B, T, C = k.shape
    y = _empty((B, T, C), k.dtype, k.device)
    if y.numel() == 0:
        return y
    w, u = w.float().contiguous(), u.float().contiguous()
    if impl == "auto":
        impl = "gluon" if k.is_cuda else "chunked" if T >= CHUNK_MIN_T else "single_pass"
    one_ref = not causal and allow_fast and allow_tight
    skip = 0
    with _quiet_interpreter():
        if one_ref and impl == "gluon":
            skip = gluon.gluon_forward(w, u, k, v, y)          # 0 where it does not take the call (gluon.usable)
            if not skip:
                impl = "chunked" if T >= CHUNK_MIN_T else "single_pass"
        if one_ref and impl == "chunked":
            skip = chunk_forward(w, u, k, v, y, impl_tile)
        elif one_ref and impl == "single_pass" and (T <= SINGLE_MAX_T or impl_tile):
            skip = single_pass_forward(w, u, k, v, y, impl_tile)
        if skip and tile is None:
            tile = FALLBACK_TILE   # after a one-reference kernel: a fixed tile, no autotuner on the host
        tiled_forward(w, u, k, v, y, causal=causal, allow_fast=allow_fast and not skip,
                      allow_tight=allow_tight, tile=tile, skip=skip)
    return y


def backward_variant(w, u, k, v, gy, *, causal: bool, impl: str = "auto", impl_tile: tuple | None = None,
                     tile: tuple[int, int, int] | None = None, allow_fast: bool = True, allow_tight: bool = True):
    """wkv_backward with a chosen kernel (for tests and benchmarks). impl: "auto" (the chunked backward on a
    Bi-WKV with T >= CHUNK_BWD_MIN_T), "chunked" or "none"; the other arguments as in forward_variant."""
    B, T, C = k.shape
    dk = _empty((B, T, C), k.dtype, k.device)
    dv = _empty((B, T, C), v.dtype, v.device)
    dw_part = _empty((B, C), torch.float32, k.device)
    du_part = _empty((B, C), torch.float32, k.device)
    if dk.numel() == 0:
        return dw_part.sum(0), du_part.sum(0), dk, dv
    w, u = w.float().contiguous(), u.float().contiguous()
    if impl == "auto":
        impl = "chunked" if T >= CHUNK_BWD_MIN_T else "none"
    skip, dw, du = 0, 0.0, 0.0
    with _quiet_interpreter():
        if not causal and allow_fast and allow_tight and impl == "chunked":
            skip, dw, du = chunk_backward(w, u, k, v, gy, dk, dv, impl_tile)
            tile = tile or FALLBACK_TILE
        tiled_backward(w, u, k, v, gy, dk, dv, dw_part, du_part, causal=causal,
                       allow_fast=allow_fast and not skip, allow_tight=allow_tight, tile=tile,
                       skip=skip)
    return dw_part.sum(0) + dw, du_part.sum(0) + du, dk, dv
