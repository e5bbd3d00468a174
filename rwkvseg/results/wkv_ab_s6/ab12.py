"""Session 6 A/B 6: the carry step with the five summaries of a 32-channel group loaded together (package) against
one summary at a time in 64-channel groups (.carry/wkv_g64.py = the kernels at 9f7ec8d). fp32, B = 24, L2-flushed,
CUDA-graph replay, median; the two alternate shape by shape."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
g64 = load("wkv_g64", ".carry/wkv_g64.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
x = torch.randn(1, 1024, 8, device="cuda")
for mod in (g64, kt):
    bench.cuda_graph(lambda: mod.wkv_forward(x[0, 0], x[0, 0], x, x, causal=False))
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    for rnd in range(2):
        for name, mod in (("g64 one at a time", g64), ("g32 loads together", kt)):
            fn = lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=False)
            yv = fn()
            err = ((yv.double() - ref.double()).norm() / ref.double().norm()).item()
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            rows.append({"T": T, "C": C, "variant": name, "round": rnd, "graph_ms": ms, "pct": 100 * floor / ms, "rel_diff": err})
            print(f"T={T:5d} C={C:3d} {name:20s} round {rnd} graph {ms * 1e3:7.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
