"""The Triton depthwise convolution (rwkvseg.depthwise) against cuDNN (F.conv2d, groups = C) at the shapes of
RWKV-UNet-T's depthwise convolutions: batch 32, bfloat16, channels_last, 256 x 256 inputs.

    python benchmarks/depthwise.py --out rwkvseg/results/depthwise/depthwise.json    # on a CUDA machine
    python benchmarks/depthwise.py --quick                                            # CPU smoke run (interpreter)

For each shape: the median time (triton.testing.do_bench) of the forward, the input gradient, the weight
gradient and forward + backward (autograd, both gradients), ours and cuDNN's (torch.backends.cudnn.benchmark
on; cuDNN's gradients alone through aten.convolution_backward); then the totals over the network's layers
(a shape that occurs n times counts n times). Accuracy: ours against cuDNN in float32 (TF32 off), max |a - b| /
max |b| of y, dx and dw. --quick checks the accuracy on two tiny shapes under the CPU interpreter and times
nothing.

    python benchmarks/depthwise.py --sweep --out sweep.json     # every tile of TILES / DW_TILES at every shape

--sweep checks the rule that picks each launch's tile (rwkvseg.kernels.depthwise.tile_for): per shape and kernel,
the time of every tile, the best, and the rule's against the best; then the totals over the network's layers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if "--quick" in sys.argv or not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton's kernels
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from triton.testing import do_bench  # noqa: E402
from rwkvseg.depthwise import depthwise_conv2d  # noqa: E402
from rwkvseg.env import provenance  # noqa: E402
from rwkvseg.kernels.depthwise import (DW_TILES, TILES, depthwise_forward, depthwise_input_grad,  # noqa: E402
                                       depthwise_weight_grad, output_size, tile_for)

BATCH = 32
# (channels, input side, kernel, stride, layers of this shape) for every depthwise conv of RWKV-UNet-T at 256 x 256
SHAPES = [
    (3, 256, 5, 1, 1), (96, 256, 5, 2, 1), (64, 128, 5, 1, 1), (160, 128, 5, 2, 1), (120, 64, 5, 1, 1),
    (288, 64, 5, 2, 1), (288, 32, 5, 1, 3), (672, 32, 5, 2, 1), (560, 16, 5, 1, 1),
    (160, 16, 9, 1, 1), (192, 32, 9, 1, 1), (96, 64, 9, 1, 1), (64, 128, 9, 1, 1),
]
QUICK_SHAPES = [(5, 7, 5, 2, 1), (2, 6, 9, 1, 1)]


def padding(k: int, s: int) -> int:
    """The networks' padding, ceil((k - s) / 2) (rwkvseg.layers.CNA)."""
    return -(-(k - s) // 2)


def inputs(batch, C, size, K, dtype, device, seed=0):
    """x (channels_last), weight, and an upstream gradient dy (channels_last) of the output's shape."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, C, size, size, generator=g, device=device).to(dtype)
    w = (torch.randn(C, 1, K, K, generator=g, device=device) / K).to(dtype)
    return x.contiguous(memory_format=torch.channels_last), w


def cudnn(x, w, s, p):
    return F.conv2d(x, w, stride=s, padding=p, groups=x.shape[1])


def fwd_bwd(conv, x, w, s, p, dy):
    """Both gradients of sum(conv(x, w) * dy)."""
    xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
    return (conv(xg, wg, s, p), *torch.autograd.grad(conv(xg, wg, s, p), (xg, wg), dy))


def errors(C, size, K, s, batch, device) -> dict:
    """max |ours - reference| / max |reference| of y, dx, dw in float32 (the reference: F.conv2d, TF32 off)."""
    p = padding(K, s)
    x, w = inputs(batch, C, size, K, torch.float32, device, seed=1)
    y = cudnn(x, w, s, p)
    dy = torch.randn(y.shape, device=device).contiguous(memory_format=torch.channels_last)
    ours = fwd_bwd(depthwise_conv2d, x, w, s, p, dy)
    ref = fwd_bwd(cudnn, x, w, s, p, dy)
    return {f"rel_err_{n}": ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
            for n, a, b in zip(("y", "dx", "dw"), ours, ref)}


def timings(C, size, K, s, batch) -> dict:
    """Median ms of each part, ours and cuDNN's, bfloat16 channels_last."""
    p = padding(K, s)
    x, w = inputs(batch, C, size, K, torch.bfloat16, "cuda")
    y = cudnn(x, w, s, p)
    dy = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    H = x.shape[2]

    def cudnn_grad(mask):
        return lambda: torch.ops.aten.convolution_backward(dy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0],
                                                           C, mask)

    parts = {
        "fwd": (lambda: depthwise_conv2d(x, w, s, p), lambda: cudnn(x, w, s, p)),
        "dx": (lambda: depthwise_input_grad(dy, w, H, H, s, p), cudnn_grad([True, False, False])),
        "dw": (lambda: depthwise_weight_grad(x, dy, K, s, p), cudnn_grad([False, True, False])),
        "fwd_bwd": (lambda: torch.autograd.grad(depthwise_conv2d(xr, wr, s, p), (xr, wr), dy),
                    lambda: torch.autograd.grad(cudnn(xr, wr, s, p), (xr, wr), dy)),
    }
    out = {}
    for name, (ours, theirs) in parts.items():
        ours(), theirs()                                 # Triton builds / cuDNN's algorithm search, untimed
        torch.cuda.synchronize()
        out[f"ours_{name}_ms"] = do_bench(ours, warmup=25, rep=100, return_mode="median")
        out[f"cudnn_{name}_ms"] = do_bench(theirs, warmup=25, rep=100, return_mode="median")
    return out


def write(out: dict, path: str | None) -> None:
    """The record as JSON at path (nothing when path is None)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=1))
        print(f"wrote {path}")


def sweep(C, size, K, s, batch) -> dict:
    """Per kernel, the median ms of every tile and of the rule's tile, bfloat16 channels_last."""
    p = padding(K, s)
    x, w = inputs(batch, C, size, K, torch.bfloat16, "cuda")
    OW = output_size(size, K, s, p)
    dy = torch.randn(batch, C, OW, OW, device="cuda", dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    calls = {"forward": (TILES, lambda t: depthwise_forward(x, w, s, p, tile=t)),
             "input_grad": (TILES, lambda t: depthwise_input_grad(dy, w, size, size, s, p, tile=t)),
             "weight_grad": (DW_TILES, lambda t: depthwise_weight_grad(x, dy, K, s, p, tile=t))}
    out = {}
    for kernel, (tiles, call) in calls.items():
        ms = {t: do_bench(lambda: call(t), warmup=10, rep=40, return_mode="median") for t in tiles}
        rule = tile_for(kernel, C, OW)
        if rule not in ms:
            ms[rule] = do_bench(lambda: call(rule), warmup=10, rep=40, return_mode="median")
        best = min(ms, key=ms.get)
        out[kernel] = {"rule": list(rule), "rule_ms": ms[rule], "best": list(best), "best_ms": ms[best],
                       "ms": {"x".join(map(str, t)): v for t, v in ms.items()}}
    return out


def run_sweep(out_path: str | None) -> int:
    t0 = time.time()
    torch.backends.cudnn.allow_tf32 = False             # the float32 check compares against exact cuDNN
    rows = []
    for C, size, K, s, n in SHAPES:
        if C < 16:
            continue                                     # the stem: F.conv2d (rwkvseg.depthwise.MIN_CHANNELS)
        row = {"C": C, "size": size, "k": K, "stride": s, "layers": n, "batch": BATCH,
               **errors(C, size, K, s, BATCH, "cuda"), **sweep(C, size, K, s, BATCH)}
        rows.append(row)
        err = max(row[f"rel_err_{v}"] for v in ("y", "dx", "dw"))
        print(f"{C:>4} {size:>4} {K:>2} {s:>2} | err {err:.1e} | " + "  ".join(
            f"{k[:5]} rule {row[k]['rule_ms']:.3f} best {row[k]['best_ms']:.3f} {row[k]['best']}"
            for k in ("forward", "input_grad", "weight_grad")), flush=True)
    totals = {f"{who}_{k}": sum(r["layers"] * r[k][f"{who}_ms"] for r in rows)
              for k in ("forward", "input_grad", "weight_grad") for who in ("rule", "best")}
    print("totals over the network's layers (ms), rule / best: " + ", ".join(
        f"{k} {totals[f'rule_{k}']:.2f}/{totals[f'best_{k}']:.2f}" for k in ("forward", "input_grad", "weight_grad")))
    out = {"results": rows, "totals_ms": totals, "provenance": provenance(
        mode="full", device="cuda", wall_s=round(time.time() - t0, 1),
        timing="triton.testing.do_bench, median, warmup 10 ms, rep 40 ms; bfloat16, channels_last")}
    write(out, out_path)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: accuracy at two tiny shapes, no timing")
    ap.add_argument("--sweep", action="store_true", help="time every tile at every shape (CUDA only)")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args(argv)
    if a.sweep and torch.cuda.is_available():
        return run_sweep(a.out)
    t0 = time.time()
    quick = a.quick or not torch.cuda.is_available()
    if quick and not a.quick:
        print("no CUDA device: running the --quick check only")
    device = "cpu" if quick else "cuda"
    if not quick:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False             # the float32 check compares against exact cuDNN
    rows = []
    print(f"{'C':>4} {'size':>4} {'k':>2} {'s':>2} {'n':>2} | {'rel err y, dx, dw (fp32)':>26} | "
          + ("" if quick else "ms ours/cudnn: fwd, dx, dw, fwd+bwd"))
    for C, size, K, s, n in QUICK_SHAPES if quick else SHAPES:
        row = {"C": C, "size": size, "k": K, "stride": s, "padding": padding(K, s), "layers": n,
               "batch": 1 if quick else BATCH}
        row.update(errors(C, size, K, s, row["batch"], device))
        if not quick:
            row.update(timings(C, size, K, s, BATCH))
        rows.append(row)
        line = f"{C:>4} {size:>4} {K:>2} {s:>2} {n:>2} | " + " ".join(
            f"{row[f'rel_err_{v}']:8.1e}" for v in ("y", "dx", "dw"))
        if not quick:
            line += " | " + "  ".join(f"{row[f'ours_{p}_ms']:.3f}/{row[f'cudnn_{p}_ms']:.3f}"
                                      for p in ("fwd", "dx", "dw", "fwd_bwd"))
        print(line, flush=True)
    worst = max(max(r[f"rel_err_{v}"] for v in ("y", "dx", "dw")) for r in rows)
    out = {"results": rows, "max_rel_err": worst}
    if not quick:
        out["totals_ms"] = {f"{who}_{p}": sum(r["layers"] * r[f"{who}_{p}_ms"] for r in rows)
                            for who in ("ours", "cudnn") for p in ("fwd", "dx", "dw", "fwd_bwd")}
        print("totals over the network's layers (ms), ours / cuDNN: " + ", ".join(
            f"{p} {out['totals_ms'][f'ours_{p}']:.2f}/{out['totals_ms'][f'cudnn_{p}']:.2f}"
            for p in ("fwd", "dx", "dw", "fwd_bwd")))
    out["provenance"] = provenance(
        mode="quick" if quick else "full", device=device, wall_s=round(time.time() - t0, 1),
        timing="triton.testing.do_bench, median, warmup 25 ms, rep 100 ms; bfloat16, channels_last; "
               "torch.backends.cudnn.benchmark = True")
    write(out, a.out)
    if worst > 1e-4:
        print(f"max relative error {worst:.1e} > 1e-4")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
