"""Bi-WKV on the GPU: the kernels against the float64 oracle, and their speed beside the plain-PyTorch
O(T) path, the authors' CUDA kernel and the memory floor.

    python benchmarks/wkv.py --out rwkvseg/results/wkv_benchmark      # on a CUDA machine
    python benchmarks/wkv.py --quick                            # CPU smoke run (interpreter)

Timing: CUDA events, median of --reps runs after warm-up, each run preceded by a write of a
256 MB buffer (L2-flushed, "cold") and, separately, back to back ("hot"); also as CUDA-graph
replays (cold), which leave out the host's launch time. The floor is the bytes
that must move (forward: read k, v, write y; forward+backward: also read k, v, g and write dk,
dv) over the device-to-device copy bandwidth measured in the same run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

if "--quick" in sys.argv or not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton's kernels
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rwkvseg.kernels import wkv_backward, wkv_forward  # noqa: E402
from rwkvseg.kernels.dispatch import backward_variant, forward_variant  # noqa: E402
from rwkvseg.engine import graph_replay  # noqa: E402
from rwkvseg.env import git_commit  # noqa: E402
from rwkvseg.wkv import wkv_torch_backward, wkv_torch_forward  # noqa: E402

# The authors' kernel (Vision-RWKV's chunked CUDA kernel, fp32, B = 24, the same tensors again and again:
# hot, eager), measured on an H100 on 2026-11-23. It cannot run here (no licence to ship it); quoted for the
# comparison.
ANCHOR = {  # (T, C): (fwd ms, fwd % floor, fwd+bwd ms, fwd+bwd % floor)
    (256, 560): (0.119, 12, 0.467, 8),
    (256, 960): (0.173, 14, 0.706, 9),
    (1024, 288): (0.135, 21, 0.730, 11),
    (1024, 560): (0.236, 24, 1.339, 11),
    (4096, 288): (0.461, 25, 2.611, 12),
    (4096, 560): (0.919, 24, 5.124, 11),
    (16384, 288): (1.709, 27, 10.003, 12),
}


def copy_bandwidth(device) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted), median of 20."""
    x = torch.empty(256 * 2**20, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    times = time_fn(lambda: y.copy_(x), reps=20, flush=False)
    return 2 * x.numel() * 4 / (statistics.median(times) * 1e-3)


_FLUSH = None


def time_fn(fn, *, reps: int, flush: bool, warmup: int = 5) -> list[float]:
    """Milliseconds of each of `reps` runs of fn (CUDA events)."""
    global _FLUSH
    if flush and _FLUSH is None:
        _FLUSH = torch.empty(64 * 2**20, dtype=torch.float32, device="cuda")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        if flush:
            _FLUSH.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(end))
    return out


def rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def errors(T, C, causal, dtype, device, B=2, seed=0, decay=5.0):
    """Relative errors of the Triton forward and gradients against the float64 torch path
    (w = spatial_decay / T with spatial_decay ~ U(0, decay))."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    k = (torch.randn(B, T, C, generator=g) * 2).to(device)
    v = torch.randn(B, T, C, generator=g).to(device)
    w = (torch.rand(C, generator=g) / T * decay).to(device)
    u = (torch.randn(C, generator=g) / T).to(device)
    gy = torch.randn(B, T, C, generator=g).to(device)
    kk, vv, gg = k.to(dtype), v.to(dtype), gy.to(dtype)
    d = [t.double() for t in (w, u, kk, vv, gg)]        # the oracle sees the same (rounded) inputs
    y_ref = wkv_torch_forward(*d[:4], causal)
    dw_r, du_r, dk_r, dv_r = wkv_torch_backward(*d, causal)
    y = wkv_forward(w, u, kk, vv, causal=causal)
    dw, du, dk, dv = wkv_backward(w, u, kk, vv, gg, causal=causal)
    return {"y": rel(y, y_ref), "dk": rel(dk, dk_r), "dv": rel(dv, dv_r), "dw": rel(dw, dw_r), "du": rel(du, du_r)}


def bench_shape(B, T, C, dtype, bw, reps, with_torch):
    device = "cuda"
    k = torch.randn(B, T, C, device=device).to(dtype)
    v = torch.randn(B, T, C, device=device).to(dtype)
    gy = torch.randn(B, T, C, device=device).to(dtype)
    w = torch.rand(C, device=device) / T                 # as the authors' kernel was measured
    u = torch.randn(C, device=device) / T
    w_wide = torch.rand(C, device=device) / T * 5        # decays the single-pass forward declines (tiled kernel)
    esize = k.element_size()
    N = B * T * C
    floor_f = 3 * N * esize / bw * 1e3
    floor_fb = 8 * N * esize / bw * 1e3
    row = {"B": B, "T": T, "C": C, "dtype": str(dtype).replace("torch.", ""),
           "floor_fwd_ms": floor_f, "floor_fwdbwd_ms": floor_fb}

    def fwd():
        wkv_forward(w, u, k, v, causal=False)

    def fwdbwd():
        wkv_forward(w, u, k, v, causal=False)
        wkv_backward(w, u, k, v, gy, causal=False)

    for name, fn, floor in (("fwd", fwd, floor_f), ("fwdbwd", fwdbwd, floor_fb)):
        for mode, flush in (("cold", True), ("hot", False)):
            ms = statistics.median(time_fn(fn, reps=reps, flush=flush))
            row[f"ours_{name}_{mode}_ms"] = ms
            row[f"ours_{name}_{mode}_pct_floor"] = 100 * floor / ms
    # the same calls replayed from a CUDA graph (cold): the GPU's time without the host's launch cost, which at
    # T <= 1024 is of the order of the kernels' own time (three launches from Python a forward)
    for name, fn, floor in (("fwd", fwd, floor_f), ("fwdbwd", fwdbwd, floor_fb)):
        try:
            ms = statistics.median(time_fn(graph_replay(fn), reps=reps, flush=True))
            row[f"ours_{name}_graph_ms"] = ms
            row[f"ours_{name}_graph_pct_floor"] = 100 * floor / ms
        except Exception as exc:                       # recorded, not fatal: the other timings stand
            row[f"ours_{name}_graph_error"] = repr(exc)[:300]
    ms = statistics.median(time_fn(lambda: wkv_forward(w_wide, u, k, v, causal=False), reps=reps, flush=True))
    row["ours_fwd_cold_ms_wide_decay"] = ms
    row["ours_fwd_cold_pct_floor_wide_decay"] = 100 * floor_f / ms
    if with_torch:
        kf, vf, gf = k.float(), v.float(), gy.float()

        def tfwd():
            wkv_torch_forward(w, u, kf, vf, False)

        def tfwdbwd():
            wkv_torch_forward(w, u, kf, vf, False)
            wkv_torch_backward(w, u, kf, vf, gf, False)

        row["torch_fwd_ms"] = statistics.median(time_fn(tfwd, reps=max(5, reps // 3), flush=True))
        row["torch_fwdbwd_ms"] = statistics.median(time_fn(tfwdbwd, reps=max(5, reps // 3), flush=True))
    if dtype == torch.float32 and (T, C) in ((1024, 560), (4096, 288)):
        # the same kernels with the segment scan everywhere: what the separable fast path buys
        def sfwd():
            forward_variant(w, u, k, v, causal=False, allow_fast=False)

        def sfwdbwd():
            forward_variant(w, u, k, v, causal=False, allow_fast=False)
            backward_variant(w, u, k, v, gy, causal=False, allow_fast=False)

        row["scan_only_fwd_ms"] = statistics.median(time_fn(sfwd, reps=reps, flush=True))
        row["scan_only_fwdbwd_ms"] = statistics.median(time_fn(sfwdbwd, reps=reps, flush=True))
    anchor = ANCHOR.get((T, C))
    if anchor and dtype == torch.float32:
        row["authors_fwd_ms"], row["authors_fwd_pct_floor"], row["authors_fwdbwd_ms"], row["authors_fwdbwd_pct_floor"] = anchor
    return row


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, name in zip(axes, ("fwd", "fwdbwd")):
        for dtype, marker in (("float32", "o"), ("bfloat16", "s")):
            for C in sorted({r["C"] for r in rows}):
                rr = [r for r in rows if r["dtype"] == dtype and r["C"] == C]
                # the CUDA-graph replay (the kernels' own time) where it was timed, else the eager call
                ax.plot([r["T"] for r in rr], [r.get(f"ours_{name}_graph_pct_floor", r[f"ours_{name}_cold_pct_floor"])
                                              for r in rr], marker=marker, label=f"rwkvseg {dtype}, C={C}")
        an = [r for r in rows if "authors_fwd_ms" in r and r["dtype"] == "float32"]
        ax.scatter([r["T"] for r in an], [r[f"authors_{name}_pct_floor"] for r in an], marker="x", color="k",
                   label="authors' CUDA kernel (fp32, hot, eager)", zorder=5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens T")
        ax.set_title({"fwd": "forward", "fwdbwd": "forward + backward"}[name] + ", B = 24, L2-flushed, CUDA graph")
        ax.axhline(100, color="gray", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of the memory floor (higher is better)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="rwkvseg/results/wkv_benchmark", help="folder for wkv_benchmark.json and .png")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: correctness only, small shapes")
    ap.add_argument("--commit", default=None, help="git commit to record (when .git is not present)")
    ap.add_argument("--skip-errors", action="store_true", help="time only (the accuracy check is a separate run)")
    args = ap.parse_args()

    if args.quick or not torch.cuda.is_available():
        err = errors(24, 6, False, torch.float32, "cpu")
        print("quick (interpreter) errors vs float64:", {k: f"{v:.1e}" for k, v in err.items()})
        assert max(err.values()) < 1e-5
        return

    t0 = time.time()
    bw = copy_bandwidth("cuda")
    print(f"device {torch.cuda.get_device_name(0)}; copy bandwidth {bw / 1e12:.2f} TB/s")
    shapes = [(T, C) for T in (256, 1024, 4096, 16384) for C in (288, 560, 960)]
    result = {
        "command": " ".join(["python"] + sys.argv),
        "commit": args.commit or git_commit(),
        "device": torch.cuda.get_device_name(0),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "copy_bandwidth_TBps": bw / 1e12,
        "batch": 24,
        "timing": f"CUDA events, median of {args.reps} after 5 warm-ups; cold = 256 MB written before each run",
        "inputs": "k, v, g ~ N(0, 1); w ~ U(0, 1) / T (as the authors' kernel was measured), u ~ N(0, 1) / T; "
                  "*_wide_decay: w ~ U(0, 5) / T",
        "errors": [],
        "rows": [],
    }
    # accuracy at every T for one width (each new (B, T, C) autotunes the kernels: time)
    for T, C in [(T, C) for T, C in shapes if C == 560] if not args.skip_errors else []:
        for causal in (False, True):
            for dtype in (torch.float32, torch.bfloat16):
                if causal and (dtype == torch.bfloat16 or T > 1024):
                    continue
                for decay in (1.0, 5.0):
                    err = errors(T, C, causal, dtype, "cuda", decay=decay)
                    result["errors"].append({"T": T, "C": C, "causal": causal, "dtype": str(dtype)[6:],
                                             "spatial_decay_max": decay, **err})
                    print(f"check T={T:5d} C={C:3d} {'causal' if causal else 'bi':6s} {str(dtype)[6:]:8s} decay<{decay:g} "
                          + " ".join(f"{k} {v:.1e}" for k, v in err.items()), flush=True)
    for T, C in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            with_torch = dtype == torch.float32 and 24 * T * C <= 30_000_000
            row = bench_shape(24, T, C, dtype, bw, args.reps, with_torch)
            result["rows"].append(row)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "wkv_benchmark.json").write_text(json.dumps(result, indent=1))  # partial
            print(f"T={T:5d} C={C:3d} {row['dtype']:8s} fwd {row['ours_fwd_cold_ms']:.3f} ms "
                  f"({row['ours_fwd_cold_pct_floor']:.0f}% floor, hot {row['ours_fwd_hot_pct_floor']:.0f}%)  "
                  f"fwd+bwd {row['ours_fwdbwd_cold_ms']:.3f} ms ({row['ours_fwdbwd_cold_pct_floor']:.0f}%)  "
                  f"wide-decay fwd {row['ours_fwd_cold_pct_floor_wide_decay']:.0f}%"
                  + (f"  torch {row['torch_fwd_ms']:.3f}/{row['torch_fwdbwd_ms']:.3f} ms" if with_torch else ""),
                  flush=True)
    result["wall_s"] = time.time() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wkv_benchmark.json").write_text(json.dumps(result, indent=1))
    plot(result["rows"], out / "wkv_benchmark.png")
    print(f"wrote {out}/wkv_benchmark.json and .png in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
