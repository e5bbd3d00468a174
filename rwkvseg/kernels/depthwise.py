"""Depthwise 2-D convolution (groups = channels, no bias) on channels-last maps: forward and both gradients.

x (B, C, H, W) in memory order NHWC (channels_last), weight (C, 1, KH, KW), stride S in {1, 2} (both axes),
padding (PH, PW) >= 0, output y (B, C, OH, OW) with OH = (H + 2 PH - KH) // S + 1 (OW likewise):

    y[b, c, oh, ow]  = sum_{kh, kw} x[b, c, oh S - PH + kh, ow S - PW + kw] w[c, kh, kw]    (zero outside x)
    dx[b, c, ih, iw] = sum_{kh, kw} dy[b, c, oh, ow] w[c, kh, kw],  oh = (ih + PH - kh) / S, ow = (iw + PW - kw) / S,
                       over the taps where both divisions are exact and land inside dy (the gather form)
    dw[c, kh, kw]    = sum_{b, oh, ow} dy[b, c, oh, ow] x[b, c, oh S - PH + kh, ow S - PW + kw]

Each program of the forward and of the input gradient owns one row of its result (y or dx), a block of BW
columns and a block of BC channels, and walks the KH x KW taps with masks for the padding; every load is a
(BW, BC) tile whose channels are contiguous in memory. The input gradient splits the columns of a row into
their S residues mod S, so that inside a program every tap lands on dy for all columns or for none (then it
is skipped). The weight gradient runs one program per (chunk of rows (b, oh), channel block, kh) and writes
its (KW, BC) sums to a partial buffer that torch sums: deterministic, no atomics. Accumulation in float32
(float64 for float64 inputs); results in the input's dtype. The networks' kernels are square (K x K, padding
P on both axes) except MS-RWKV-UNet's MCM, whose 1 x K and K x 1 convolutions take the rectangular form.

The weights travel as a (KH*KW, C) table (tap-major), so a tap's BC weights are one contiguous load.

The forward and the input gradient loop over kh at run time and unroll kw only. Unrolling all KH x KW taps
(81 masked tile loads at 9 x 9) cost ~8 s of Triton's build per kernel before a cold run's first step, and
ran slower: on an H100 (batch 32, bfloat16) the run-time loop builds in ~0.5 s and is 17-20 % faster at the
networks' 9 x 9 shapes (forward, 48 channels at 128 x 128: 0.87 -> 0.72 ms).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import INTERPRET

# Tiles (BW columns, BC channels, warps). A launch takes its tile from tile_for, a rule of the shape, not from an
# autotuner, which compiles and times every candidate at every new shape before a cold run's first step (RWKV-UNet-T:
# 12 shapes, 16 candidates over the three kernels); TILES and DW_TILES are the candidates benchmarks/depthwise.py
# --sweep times to check the rule. Under the CPU interpreter one small tile, small enough that the tests' maps
# (W <= 11, C <= 19) cross column and channel block borders.
if INTERPRET:
    TILES = [(8, 16, 1)]
    DW_TILES = [(8, 16, 1)]
    _DW_PROGRAMS = 8        # target number of weight-gradient programs: several row chunks even at tiny shapes
else:
    TILES = [(8, 32, 2), (16, 32, 4), (32, 32, 4), (8, 64, 4), (16, 64, 4), (32, 64, 8)]
    DW_TILES = [(4, 32, 4), (8, 32, 4), (16, 32, 4), (8, 64, 8)]
    _DW_PROGRAMS = 2048     # enough programs to fill an H100 (132 SMs) several times over


def tile_for(kernel: str, C: int, OW: int) -> tuple[int, int, int]:
    """(BW, BC, num_warps) of one launch on C channels and OW output columns; kernel is "forward", "input_grad"
    or "weight_grad"."""
    if INTERPRET:
        return TILES[0]
    if kernel == "weight_grad":
        return (8, 32, 4)
    bc = 64 if C % 64 == 0 else 32            # no channel block half empty (96 = 3 x 32, 160 = 5 x 32)
    return (16 if OW >= 16 else 8, bc, 4)


def output_size(n: int, k: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis of length n."""
    return (n + 2 * padding - k) // stride + 1


@triton.jit
def depthwise_forward_kernel(
    x_ptr, w_ptr, y_ptr, C, H, W, OH, OW,
    sxb, sxc, sxh, sxw, syb, syc, syh, syw,
    KH: tl.constexpr, KW: tl.constexpr, S: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, F64: tl.constexpr,
    BW: tl.constexpr, BC: tl.constexpr,
):
    """y (B, C, OH, OW) from x (B, C, H, W) and the (KH*KW, C) weight table.

    Grid (B*OH, cdiv(OW, BW), cdiv(C, BC))."""
    row = tl.program_id(0)
    b = row // OH
    oh = row % OH
    ow = tl.program_id(1) * BW + tl.arange(0, BW)
    cs = tl.program_id(2) * BC + tl.arange(0, BC)
    cmask = cs < C
    omask = ow < OW
    acc = tl.zeros((BW, BC), tl.float64 if F64 else tl.float32)
    xb = x_ptr + b.to(tl.int64) * sxb
    for kh in range(KH):                          # a run-time loop (module docstring)
        ih = oh * S - PH + kh
        hok = (ih >= 0) & (ih < H)
        for kw in tl.static_range(KW):
            iw = ow * S - PW + kw
            m = (iw >= 0) & (iw < W) & omask & hok
            xv = tl.load(xb + ih * sxh + iw[:, None] * sxw + cs[None, :] * sxc, mask=m[:, None] & cmask[None, :],
                         other=0.0)
            wv = tl.load(w_ptr + (kh * KW + kw) * C + cs, mask=cmask, other=0.0)
            acc += xv.to(acc.dtype) * wv.to(acc.dtype)[None, :]
    offs = b.to(tl.int64) * syb + oh * syh + ow[:, None] * syw + cs[None, :] * syc
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=omask[:, None] & cmask[None, :])


@triton.jit
def depthwise_input_grad_kernel(
    dy_ptr, w_ptr, dx_ptr, C, H, W, OH, OW,
    syb, syc, syh, syw, sxb, sxc, sxh, sxw,
    KH: tl.constexpr, KW: tl.constexpr, S: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, F64: tl.constexpr,
    BW: tl.constexpr, BC: tl.constexpr,
):
    """dx (B, C, H, W) from dy (B, C, OH, OW) and the (KH*KW, C) weight table, in the gather form.

    Grid (B*H, S * cdiv(cdiv(W, S), BW), cdiv(C, BC)); program column index = block * S + residue r, and the
    program's columns are iw = r + S j for its BW values of j."""
    row = tl.program_id(0)
    b = row // H
    ih = row % H
    pid = tl.program_id(1)
    r = pid % S
    j = (pid // S) * BW + tl.arange(0, BW)
    iw = r + S * j
    cs = tl.program_id(2) * BC + tl.arange(0, BC)
    cmask = cs < C
    imask = iw < W
    acc = tl.zeros((BW, BC), tl.float64 if F64 else tl.float32)
    yb = dy_ptr + b.to(tl.int64) * syb
    for kh in range(KH):                          # a run-time loop (module docstring)
        nh = ih + PH - kh + S * KH                # >= 0, so // and % are exact whatever the sign convention
        oh = nh // S - KH
        hok = (nh % S == 0) & (oh >= 0) & (oh < OH)
        for kw in tl.static_range(KW):
            nw = r + PW - kw + S * KW
            if hok & (nw % S == 0):               # the tap lands on dy for every column of the program
                ow = nw // S - KW + j
                m = (ow >= 0) & (ow < OW) & imask
                dyv = tl.load(yb + oh * syh + ow[:, None] * syw + cs[None, :] * syc,
                              mask=m[:, None] & cmask[None, :], other=0.0)
                wv = tl.load(w_ptr + (kh * KW + kw) * C + cs, mask=cmask, other=0.0)
                acc += dyv.to(acc.dtype) * wv.to(acc.dtype)[None, :]
    offs = b.to(tl.int64) * sxb + ih * sxh + iw[:, None] * sxw + cs[None, :] * sxc
    tl.store(dx_ptr + offs, acc.to(dx_ptr.dtype.element_ty), mask=imask[:, None] & cmask[None, :])


@triton.jit
def depthwise_weight_grad_kernel(
    x_ptr, dy_ptr, part_ptr, C, H, W, OH, OW, ROWS, ROWS_PER,
    sxb, sxc, sxh, sxw, syb, syc, syh, syw,
    KH: tl.constexpr, KW: tl.constexpr, S: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr, F64: tl.constexpr,
    KP: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr,
):
    """Partial weight gradients (NCHUNK, KH, KW, C) over chunks of ROWS_PER of the ROWS = B*OH output rows.

    Grid (NCHUNK, cdiv(C, BC), KH): one kh per program; the KW taps kw (padded to KP, a power of 2) are the
    first axis of (KP, BW, BC) tiles of x, each multiplied by the same (BW, BC) tile of dy."""
    chunk = tl.program_id(0)
    cs = tl.program_id(1) * BC + tl.arange(0, BC)
    kh = tl.program_id(2)
    cmask = cs < C
    kw = tl.arange(0, KP)
    kmask = kw < KW
    acc = tl.zeros((KP, BW, BC), tl.float64 if F64 else tl.float32)
    first = chunk * ROWS_PER
    last = tl.minimum(first + ROWS_PER, ROWS)
    for rr in range(first, last):
        b = rr // OH
        oh = rr % OH
        ih = oh * S - PH + kh
        if (ih >= 0) & (ih < H):
            xb = x_ptr + b.to(tl.int64) * sxb + ih * sxh
            yb = dy_ptr + b.to(tl.int64) * syb + oh * syh
            for ow0 in range(0, OW, BW):
                ow = ow0 + tl.arange(0, BW)
                omask = ow < OW
                dyv = tl.load(yb + ow[:, None] * syw + cs[None, :] * syc, mask=omask[:, None] & cmask[None, :],
                              other=0.0)
                iw = ow[None, :] * S - PW + kw[:, None]                                 # (KP, BW)
                m = (iw >= 0) & (iw < W) & kmask[:, None] & omask[None, :]
                xv = tl.load(xb + iw[:, :, None] * sxw + cs[None, None, :] * sxc,
                             mask=m[:, :, None] & cmask[None, None, :], other=0.0)
                acc += xv.to(acc.dtype) * dyv.to(acc.dtype)[None, :, :]
    tot = tl.sum(acc, axis=1)                                                           # (KP, BC)
    offs = chunk.to(tl.int64) * KH * KW * C + (kh * KW + kw[:, None]) * C + cs[None, :]
    tl.store(part_ptr + offs, tot, mask=kmask[:, None] & cmask[None, :])


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2), t.stride(3)


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a kernel size or padding given as one int or a pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def weight_table(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (C, 1, KH, KW) weight as the (KH*KW, C) table the kernels read (tap-major, channels contiguous)."""
    C, KH, KW = weight.shape[0], weight.shape[2], weight.shape[3]
    return weight.reshape(C, KH * KW).t().to(dtype).contiguous()


def depthwise_forward(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int | tuple[int, int],
                      tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """y (B, C, OH, OW), channels_last, in x's dtype, from x (B, C, H, W) and weight (C, 1, KH, KW); padding
    one int or (PH, PW); tile (BW, BC, num_warps) or None for tile_for's."""
    B, C, H, W = x.shape
    KH, KW = weight.shape[2], weight.shape[3]
    PH, PW = pair(padding)
    OH, OW = output_size(H, KH, stride, PH), output_size(W, KW, stride, PW)
    y = torch.empty((B, C, OH, OW), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    wt = weight_table(weight, x.dtype)
    BW, BC, warps = tile or tile_for("forward", C, OW)
    depthwise_forward_kernel[(B * OH, triton.cdiv(OW, BW), triton.cdiv(C, BC))](
        x, wt, y, C, H, W, OH, OW, *_strides(x), *_strides(y),
        KH=KH, KW=KW, S=stride, PH=PH, PW=PW, F64=x.dtype == torch.float64, BW=BW, BC=BC, num_warps=warps)
    return y


def depthwise_input_grad(dy: torch.Tensor, weight: torch.Tensor, H: int, W: int, stride: int,
                         padding: int | tuple[int, int], tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """dx (B, C, H, W), channels_last, in dy's dtype, from dy (B, C, OH, OW) and weight (C, 1, KH, KW)."""
    B, C, OH, OW = dy.shape
    KH, KW = weight.shape[2], weight.shape[3]
    PH, PW = pair(padding)
    dx = torch.empty((B, C, H, W), device=dy.device, dtype=dy.dtype, memory_format=torch.channels_last)
    wt = weight_table(weight, dy.dtype)
    BW, BC, warps = tile or tile_for("input_grad", C, OW)
    depthwise_input_grad_kernel[(B * H, stride * triton.cdiv(triton.cdiv(W, stride), BW), triton.cdiv(C, BC))](
        dy, wt, dx, C, H, W, OH, OW, *_strides(dy), *_strides(dx),
        KH=KH, KW=KW, S=stride, PH=PH, PW=PW, F64=dy.dtype == torch.float64, BW=BW, BC=BC, num_warps=warps)
    return dx


def depthwise_weight_grad(x: torch.Tensor, dy: torch.Tensor, kernel_size: int | tuple[int, int], stride: int,
                          padding: int | tuple[int, int], tile: tuple[int, int, int] | None = None) -> torch.Tensor:
    """dw (C, 1, KH, KW) in float32 (float64 for float64 x) from x (B, C, H, W) and dy (B, C, OH, OW): the
    kernel's per-chunk partial sums, then one sum over the chunks."""
    B, C, H, W = x.shape
    OH, OW = dy.shape[2], dy.shape[3]
    (KH, KW), (PH, PW) = pair(kernel_size), pair(padding)
    rows = B * OH
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    n_chunks = min(rows, max(1, _DW_PROGRAMS // (KH * triton.cdiv(C, 32))))
    rows_per = triton.cdiv(rows, n_chunks)
    n_chunks = triton.cdiv(rows, rows_per)
    part = torch.empty((n_chunks, KH, KW, C), device=x.device, dtype=acc)
    BW, BC, warps = tile or tile_for("weight_grad", C, OW)
    depthwise_weight_grad_kernel[(n_chunks, triton.cdiv(C, BC), KH)](
        x, dy, part, C, H, W, OH, OW, rows, rows_per, *_strides(x), *_strides(dy),
        KH=KH, KW=KW, S=stride, PH=PH, PW=PW, F64=x.dtype == torch.float64, KP=triton.next_power_of_2(KW), BW=BW,
        BC=BC, num_warps=warps)
    return part.sum(0).permute(2, 0, 1).unsqueeze(1)
