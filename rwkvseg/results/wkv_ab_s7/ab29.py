"""Session 7 A/B 29: variant C's launches with capped registers (maxnreg; more warps an SM, possible spills): launch 2
at 128 / 144, launch 1 at 96, both (wkv_nreg.py = the package with a MAXNREG switch) against the package. fp32 and
bf16, L2-flushed, CUDA graph, median of reps, alternating, two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
nr = load("wkv_nreg", ".carry/s7/wkv_nreg.py")
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
caps = [(None, 128), (None, 144), (96, None), (96, 128)]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        ref = kt.wkv_forward(w, u, k, v, causal=False)
        for rnd in range(2):
            for cap in [None] + caps:
                def fn(cap=cap):
                    if cap is None:
                        return kt.wkv_forward(w, u, k, v, causal=False)
                    nr.MAXNREG = cap
                    return nr.wkv_forward(w, u, k, v, causal=False)
                err = bench.rel(fn(), ref)
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                name = "package" if cap is None else f"maxnreg {cap}"
                rows.append({"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "rel_diff": err})
                print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name:22s} round {rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
regs = []
for kern in (nr._wkv_fwd_sums_kernel, nr._wkv_fwd_chunk_kernel):
    for cache in kern.device_caches.values():
        for key, ck in cache[0].items():
            regs.append([kern.fn.__name__, str(key)[-120:], ck.n_regs, ck.n_spills])
print(json.dumps(regs, indent=0)[:4000])
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
