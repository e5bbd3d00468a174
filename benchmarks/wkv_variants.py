"""Bi-WKV forward: which kernel variant and tile shape, at which T? (spec kernels.md §3)

Side by side in one run, L2-flushed, median of --reps, B = 24:

    add         torch.add(k, v, out=y): the same 3N bytes as the forward, no arithmetic (the
                practical ceiling of any forward)
    sequential  one program per (b, channel block) walks the tiles (autotuned; the v2 kernel), and
                forced tile shapes, including one tile holding the whole sequence (no second read)
    chunked     one program per tile, two launches (tile totals, then the tiles with both carries):
                5N bytes but B * C/BC * T/BT programs; suffix sums by reversed scans or by
                "total - prefix" (TOTAL_SUFFIX)
    totals      phase 1 of chunked alone (2N bytes)

Each variant's error against the float64 torch path is measured on the same shapes at B = 2.

    PYTHONPATH=. python benchmarks/wkv_variants.py --out results/wkv_variants     # CUDA machine
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rwkvseg.kernels import wkv_triton as kt  # noqa: E402
from rwkvseg.notebook import git_commit  # noqa: E402
from rwkvseg.wkv import wkv_torch_forward  # noqa: E402
from wkv import copy_bandwidth, rel, time_fn  # noqa: E402

CHUNKED = [(64, 16, 4), (64, 32, 4), (32, 32, 4), (64, 16, 2), (128, 16, 4), (128, 8, 4), (256, 16, 8),
           (32, 64, 4), (16, 64, 2)]
SEQUENTIAL = [(64, 16, 4), (128, 16, 4), (256, 8, 8), (512, 8, 8), (1024, 4, 8), (1024, 8, 8), (1024, 8, 16),
              (1024, 4, 4)]


def sequential_forced(w, u, k, v, bt, bc, nw):
    B, T, C = k.shape
    y = torch.empty_like(k)
    nt = triton.cdiv(T, bt)
    scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
    kt._wkv_fwd_kernel[(B, triton.cdiv(C, bc))](w, u, k, v, y, scratch, B, T, C, nt, *k.stride(), *v.stride(),
                                                *y.stride(), CAUSAL=False, ALLOW_FAST=True, BT=bt, BC=bc,
                                                num_warps=nw)
    return y


def totals_only(w, k, v, bt, bc, nw):
    B, T, C = k.shape
    nt = triton.cdiv(T, bt)
    agg = torch.empty((B, nt, 5, C), dtype=torch.float32, device=k.device)
    kt._bi_tile_totals_kernel[(B, triton.cdiv(C, bc), nt)](w, k, v, agg, T, C, nt, *k.stride(), *v.stride(),
                                                           BT=bt, BC=bc, num_warps=nw)
    return agg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/wkv_variants")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    bw = copy_bandwidth("cuda")
    print(f"{torch.cuda.get_device_name(0)}: copy {bw / 1e12:.2f} TB/s", flush=True)
    rows = []
    shapes = [(T, C, torch.float32) for T in (1024, 4096, 16384) for C in (288, 560, 960)]
    shapes += [(1024, 560, torch.bfloat16), (4096, 560, torch.bfloat16)]
    for T, C, dtype in shapes:
        B = 24
        g = torch.Generator(device="cpu").manual_seed(0)
        k = (torch.randn(B, T, C, generator=g) * 2).to("cuda", dtype)
        v = torch.randn(B, T, C, generator=g).to("cuda", dtype)
        w = (torch.rand(C, generator=g) / T * 5).cuda()            # spatial_decay ~ U(0, 5), over T
        u = (torch.randn(C, generator=g) / T).cuda()
        y = torch.empty_like(k)
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        ref = wkv_torch_forward(w.double(), u.double(), k[:2].double(), v[:2].double(), False)

        def record(variant, cfg, fn, err_fn=None):
            try:
                ms = statistics.median(time_fn(fn, reps=args.reps, flush=True))
                err = rel(err_fn(), ref) if err_fn else None
            except Exception as exc:  # a tile shape that does not compile (registers, shared memory)
                print(f"  {variant} {cfg}: failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                return
            row = {"T": T, "C": C, "B": B, "dtype": str(dtype).replace("torch.", ""), "variant": variant,
                   "config": cfg, "ms": ms, "pct_floor": 100 * floor / ms, "rel_err": err}
            rows.append(row)
            print(f"T={T:5d} C={C:4d} {row['dtype']:8s} {variant:22s} {str(cfg):16s} {ms:7.3f} ms "
                  f"{row['pct_floor']:5.1f}%  err {err if err is None else f'{err:.1e}'}", flush=True)

        record("add", None, lambda: torch.add(k, v, out=y))
        record("sequential(autotuned)", None, lambda: kt.wkv_forward(w, u, k, v, causal=False, variant="sequential"),
               lambda: kt.wkv_forward(w, u, k[:2], v[:2], causal=False, variant="sequential"))
        for cfg in SEQUENTIAL:
            if cfg[0] > T or (cfg[0] >= 512 and T > 4096):
                continue
            record("sequential", cfg, lambda cfg=cfg: sequential_forced(w, u, k, v, *cfg),
                   lambda cfg=cfg: sequential_forced(w, u, k[:2], v[:2], *cfg))
        for cfg in CHUNKED:
            if triton.cdiv(T, cfg[0]) > 256:
                continue
            for ts in (True, False):
                name = "chunked" + ("/total-prefix" if ts else "/reversed")
                record(name, cfg, lambda cfg=cfg, ts=ts: kt.wkv_forward(w, u, k, v, causal=False, variant="chunked",
                                                                          config=cfg, total_suffix=ts),
                       lambda cfg=cfg, ts=ts: kt.wkv_forward(w, u, k[:2], v[:2], causal=False, variant="chunked",
                                                             config=cfg, total_suffix=ts))
            record("totals (phase 1)", cfg, lambda cfg=cfg: totals_only(w, k, v, *cfg))
        del k, v, y
        torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wkv_variants.json").write_text(json.dumps({
        "command": "PYTHONPATH=. python " + " ".join(sys.argv), "commit": git_commit(),
        "device": torch.cuda.get_device_name(0),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "triton": triton.__version__, "copy_bandwidth_TBps": bw / 1e12,
        "timing": f"CUDA events, L2-flushed, median of {args.reps}", "rows": rows}, indent=1))
    best = {}
    for r in rows:
        key = (r["T"], r["C"], r["dtype"])
        if r["variant"] not in ("add", "totals (phase 1)") and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    print("\nbest forward per shape:")
    for key, r in best.items():
        print(f"  {key}: {r['variant']} {r['config']} {r['pct_floor']:.1f}% of the floor, err {r['rel_err']:.1e}")


if __name__ == "__main__":
    main()
