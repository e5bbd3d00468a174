"""Where does the Bi-WKV forward kernel's time go? Stripped-down copies of its tile loop, timed
side by side on one shape (spec kernels.md §1; METHOD.md: "time variants that leave one stage
out"). Each stage adds work to the previous one:

    copy       load the k, v tiles, store k * v                         (the access pattern alone)
    exp        + tile max and exp2 of k                                 (+ 1 special function / element)
    cumsum2    + two cumulative sums along the tile                     (prefix sums only)
    cumsum4    + two more, reversed                                     (prefix and suffix)
    tuple4     the same four sums as two 2-tuple scans (fewer scan phases)
    kernel     the real forward (two passes, carries, division)

    PYTHONPATH=. python benchmarks/wkv_probe.py --out results/wkv_probe     # on a CUDA machine
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rwkvseg.kernels import wkv_triton  # noqa: E402
from wkv import time_fn  # noqa: E402  (benchmarks/wkv.py: the same CUDA-event timing)
from rwkvseg.notebook import git_commit  # noqa: E402


@triton.jit
def _add2(a1, b1, a2, b2):
    return a1 + a2, b1 + b2


@triton.jit
def _probe(k_ptr, v_ptr, y_ptr, T, C, STAGE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    cs = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = cs < C
    jj = tl.arange(0, BT)
    for n in range(0, tl.cdiv(T, BT)):
        t = n * BT + jj
        mask = (t < T)[:, None] & cmask[None, :]
        offs = b * T * C + t[:, None].to(tl.int64) * C + cs[None, :]
        k = tl.load(k_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        out = k * v
        if STAGE >= 1:
            m = tl.max(k, axis=0)
            e = tl.exp2(k - m[None, :])
            out = e * v
        if STAGE >= 2:
            out = tl.cumsum(out, 0) + tl.cumsum(e, 0)
        if STAGE == 3:
            out += tl.cumsum(e * v, 0, reverse=True) + tl.cumsum(e, 0, reverse=True)
        if STAGE == 4:  # the same four sums as two 2-tuple scans
            a, c = tl.associative_scan((e * v, e), 0, _add2)
            r1, r2 = tl.associative_scan((e * v, e), 0, _add2, reverse=True)
            out = a + c + r1 + r2
        tl.store(y_ptr + offs, out.to(y_ptr.dtype.element_ty), mask=mask)


def median_ms(fn, reps=30):
    return statistics.median(time_fn(fn, reps=reps, flush=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/wkv_probe")
    args = ap.parse_args()
    B, T, C = 24, 1024, 560
    k, v = (torch.randn(B, T, C, device="cuda") for _ in range(2))
    y = torch.empty_like(k)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor_ms = 3 * k.numel() * 4 / 2.96e12 * 1e3
    rows = []
    configs = [(64, 16, 4), (128, 8, 4), (32, 32, 4), (64, 64, 4), (16, 128, 4), (128, 32, 8),
               (64, 16, 1), (64, 16, 2), (128, 8, 2), (32, 16, 1), (128, 16, 2), (256, 8, 2)]
    for bt, bc, nw in configs:
        for stage, name in enumerate(["copy", "exp", "cumsum2", "cumsum4", "tuple4"]):
            grid = (B, triton.cdiv(C, bc))
            ms = median_ms(lambda: _probe[grid](k, v, y, T, C, STAGE=stage, BT=bt, BC=bc, num_warps=nw))
            rows.append({"BT": bt, "BC": bc, "warps": nw, "stage": name, "ms": ms, "pct_floor": 100 * floor_ms / ms})
            print(f"BT={bt:4d} BC={bc:4d} warps={nw} {name:8s} {ms:.3f} ms  {100 * floor_ms / ms:5.1f}% of the 3N floor", flush=True)
    ms = median_ms(lambda: wkv_triton.wkv_forward(w, u, k, v, causal=False))
    rows.append({"stage": "kernel (autotuned)", "ms": ms, "pct_floor": 100 * floor_ms / ms})
    print(f"real forward kernel {ms:.3f} ms  {100 * floor_ms / ms:.1f}%")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wkv_probe.json").write_text(json.dumps({
        "command": "PYTHONPATH=. python " + " ".join(sys.argv), "commit": git_commit(),
        "device": torch.cuda.get_device_name(0),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "triton": triton.__version__, "shape": [B, T, C], "dtype": "float32",
        "floor_ms": floor_ms, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
