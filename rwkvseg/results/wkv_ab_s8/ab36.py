"""Session 8 A/B 36: the chunked Bi-WKV backward (variant C's chunks, three launches, then the tiled kernel's early
exit) against the tiled backward (autotuned, as before), each call alone: CUDA graph, L2-flushed (the spec's write
flush), median of reps, alternated, two rounds; % of the backward's 5N floor (read k, v, dy; write dk, dv).
Errors against the float64 torch path on the GPU (B = 2) with w = U(0, d) / T: d = 1 (every block chunked), 5
(mostly the tiled kernel). Registers of the new kernels."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
errs, rows = [], []
for T, C in shapes:
    for decay in (1.0, 5.0):
        for impl in ("chunk", "none"):
            orig = kt.wkv_backward
            kt_b = lambda *a, **kw: orig(*a, **kw, single_impl=impl)
            kt.wkv_backward = kt_b
            try:
                e = bench.errors(kt, T, C, False, torch.float32, "cuda", decay=decay)
            finally:
                kt.wkv_backward = orig
            e.update(T=T, C=C, decay=decay, impl=impl); errs.append(e)
            print(f"T={T} C={C} decay {decay} {impl:5s} errors " + " ".join(f"{k} {e[k]:.1e}" for k in ("dk", "dv", "dw", "du")), flush=True)
for T, C in shapes:
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v, gy = torch.randn(3, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 5 * k.numel() * k.element_size() / bw * 1e3
        ref = kt.wkv_backward(w, u, k, v, gy, causal=False, single_impl="none")
        for rnd in range(2):
            for impl in ("none", "chunk"):
                fn = lambda impl=impl: kt.wkv_backward(w, u, k, v, gy, causal=False, single_impl=impl)
                got = fn()
                diff = max(((a.float() - b.float()).norm() / b.float().norm()).item() for a, b in zip(got, ref))
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                row = {"T": T, "C": C, "dtype": str(dtype)[6:], "impl": "tiled" if impl == "none" else "chunked", "round": rnd,
                       "graph_us": ms * 1e3, "pct_5N": 100 * floor / ms, "rel_diff_vs_tiled": diff}
                rows.append(row)
                print(f"T={T:5d} C={C:3d} {row['dtype']:8s} {row['impl']:7s} round {rnd} bwd {ms * 1e3:8.1f} us ({row['pct_5N']:.1f}% of 5N) diff {diff:.1e}", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "errors": errs, "rows": rows}, open(out, "w"), indent=1)
regs = []
for kern in (kt._wkv_fwd_sums_kernel, kt._wkv_bwd_qsums_kernel, kt._wkv_bwd_chunk_kernel):
    for dev, cache in kern.device_caches.items():
        for key, ck in cache[0].items():
            regs.append([kern.fn.__name__, str(key)[-120:], ck.n_regs, ck.n_spills]); print(regs[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "errors": errs, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
