"""WKV forward: which kernel variant and tile shape, at which T? (spec kernels.md §3)

Side by side in one run, L2-flushed, median of --reps, B = 24, Bi-WKV and causal:

    add         torch.add(k, v, out=y): the same 3N bytes as the forward and no arithmetic (the
                practical ceiling of any forward)
    sequential  the v2 kernel: one program per (b, channel block) walks every tile (autotuned,
                and forced tile shapes)
    chunked     the v3 kernels: chunk totals, carries across chunks, then one program per chunk
                of NSUB sub-tiles of BT tokens, one channel per thread; config (BT, NSUB, warps)

Each variant's error against the float64 torch path is measured on the same shapes at B = 2.
The JSON is rewritten after every shape (a run cut short keeps what it measured).

    PYTHONPATH=. python benchmarks/wkv_variants.py --out results/wkv_variants     # CUDA machine
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rwkvseg.kernels import wkv_triton as kt  # noqa: E402
from rwkvseg.notebook import git_commit  # noqa: E402
from rwkvseg.wkv import wkv_torch_forward  # noqa: E402
from wkv import copy_bandwidth, rel, time_fn  # noqa: E402

CHUNKED = [(16, 4, 1), (8, 8, 1), (16, 8, 1), (16, 2, 1), (8, 4, 1), (16, 4, 2), (32, 2, 1), (8, 16, 1)]
SEQUENTIAL = [(64, 16, 4), (128, 16, 4)]


def sequential_forced(w, u, k, v, bt, bc, nw, causal=False):
    B, T, C = k.shape
    y = torch.empty_like(k)
    nt = triton.cdiv(T, bt)
    scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device=k.device)
    kt._wkv_fwd_kernel[(B, triton.cdiv(C, bc))](w, u, k, v, y, scratch, B, T, C, nt, *k.stride(), *v.stride(),
                                                *y.stride(), CAUSAL=causal, ALLOW_FAST=True, BT=bt, BC=bc,
                                                num_warps=nw)
    return y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/wkv_variants")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--budget-s", type=float, default=240, help="stop starting new shapes after this")
    args = ap.parse_args()
    bw = copy_bandwidth("cuda")
    print(f"{torch.cuda.get_device_name(0)}: copy {bw / 1e12:.2f} TB/s", flush=True)
    rows = []
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save():
        (out / "wkv_variants.json").write_text(json.dumps({
            "command": "PYTHONPATH=. python " + " ".join(sys.argv), "commit": git_commit(),
            "device": torch.cuda.get_device_name(0),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "triton": triton.__version__, "copy_bandwidth_TBps": bw / 1e12,
            "timing": f"CUDA events, L2-flushed, median of {args.reps}", "rows": rows}, indent=1))

    shapes = [(T, C, torch.float32) for T in (1024, 4096, 256, 16384) for C in (560, 288, 960)]
    shapes += [(1024, 560, torch.bfloat16), (4096, 560, torch.bfloat16), (256, 560, torch.bfloat16)]
    for T, C, dtype in shapes:
        B = 24
        g = torch.Generator(device="cpu").manual_seed(0)
        k = (torch.randn(B, T, C, generator=g) * 2).to("cuda", dtype)
        v = torch.randn(B, T, C, generator=g).to("cuda", dtype)
        w = (torch.rand(C, generator=g) / T * 5).cuda()            # spatial_decay ~ U(0, 5), over T
        u = (torch.randn(C, generator=g) / T).cuda()
        y = torch.empty_like(k)
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        refs = {c: wkv_torch_forward(w.double(), u.double(), k[:2].double(), v[:2].double(), c) for c in (False, True)}

        def record(variant, cfg, fn, err_fn=None, causal=False):
            try:
                ms = statistics.median(time_fn(fn, reps=args.reps, flush=True))
                err = rel(err_fn(), refs[causal]) if err_fn else None
            except Exception as exc:  # a tile shape that does not compile (registers, shared memory)
                print(f"  {variant} {cfg}: failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                return
            row = {"T": T, "C": C, "B": B, "dtype": str(dtype).replace("torch.", ""), "variant": variant,
                   "config": cfg, "ms": ms, "pct_floor": 100 * floor / ms, "rel_err": err}
            rows.append(row)
            print(f"T={T:5d} C={C:4d} {row['dtype']:8s} {variant:22s} {str(cfg):16s} {ms:7.3f} ms "
                  f"{row['pct_floor']:5.1f}%  err {err if err is None else f'{err:.1e}'}", flush=True)

        record("add", None, lambda: torch.add(k, v, out=y))
        for causal in (False, True):
            tag = "causal " if causal else ""
            record(tag + "sequential(autotuned)", None,
                   lambda c=causal: kt.wkv_forward(w, u, k, v, causal=c, variant="sequential"),
                   lambda c=causal: kt.wkv_forward(w, u, k[:2], v[:2], causal=c, variant="sequential"), causal)
            for cfg in CHUNKED if not causal else CHUNKED[:3]:
                record(tag + "chunked", cfg,
                       lambda cfg=cfg, c=causal: kt.wkv_forward(w, u, k, v, causal=c, variant="chunked", config=cfg),
                       lambda cfg=cfg, c=causal: kt.wkv_forward(w, u, k[:2], v[:2], causal=c, variant="chunked",
                                                               config=cfg), causal)
        if T <= 4096 and dtype == torch.float32:
            for cfg in SEQUENTIAL:
                record("sequential", cfg, lambda cfg=cfg: sequential_forced(w, u, k, v, *cfg),
                       lambda cfg=cfg: sequential_forced(w, u, k[:2], v[:2], *cfg))
        save()
        if time.time() - t_start > args.budget_s:
            print(f"time budget of {args.budget_s} s reached: stopping", flush=True)
            break
        del k, v, y
        torch.cuda.empty_cache()
    best = {}
    for r in rows:
        key = (r["T"], r["C"], r["dtype"], r["variant"].startswith("causal"))
        if r["variant"] != "add" and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    print("\nbest forward per shape:")
    for key, r in best.items():
        print(f"  {key}: {r['variant']} {r['config']} {r['pct_floor']:.1f}% of the floor, err {r['rel_err']:.1e}")


if __name__ == "__main__":
    main()
