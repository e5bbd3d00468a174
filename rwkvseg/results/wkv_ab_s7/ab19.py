"""Session 7 A/B 19: variant C's carry step as one in-order pass over the chunk summaries, each thread summing its own
channels, the suffix carries as totals minus prefixes (the package, kernels/wkv_triton.py) against the (16, 64)-tile
scans of 5fafe17 (wkv_old.py). fp32, B = 24, L2-flushed, CUDA-graph replay, median of reps; the two alternate shape by
shape, two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
old = load("wkv_old", ".carry/s7/wkv_old.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    for rnd in range(2):
        for name, mod in (("5fafe17 (tile scans)", old), ("one pass", kt)):
            fn = lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=False)
            err = bench.rel(fn(), ref)
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            err2 = bench.rel(fn(), ref)
            rows.append({"T": T, "C": C, "variant": name, "round": rnd, "graph_ms": ms, "pct": 100 * floor / ms,
                         "rel_diff": err, "rel_diff_after": err2})
            print(f"T={T:5d} C={C:3d} {name:22s} round {rnd} graph {ms * 1e3:7.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e} {err2:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
