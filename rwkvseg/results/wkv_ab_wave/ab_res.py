"""Variant R (.carry/wkv_resident.py: ba8a24e's kernel with the carries in runtime loops) against the package's
default (variant C) at one shape: correctness, compile, registers, eager and CUDA-graph forward time (% floor)."""
import importlib.util, json, statistics, sys, time, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
wr = load("wr", ".carry/wkv_resident.py")   # ba8a24e's kernels/wkv_triton.py + resident_experiments.patch
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
B, T, C = (int(x) for x in sys.argv[1:4])
torch.manual_seed(0)
k, v = torch.randn(2, B, T, C, device="cuda").unbind(0)
w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
bw = float(sys.argv[4]) * 1e12
floor = 3 * k.numel() * 4 / bw * 1e3
ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
y_c = kt.wkv_forward(w, u, k, v, causal=False)
impl = sys.argv[5] if len(sys.argv) > 5 else "r"
def res():
    y = torch.empty_like(k)
    (wr._resident3_forward if impl == "r3" else wr._resident_forward)(w, u, k, v, y)
    return y
t = time.time(); y_r = res(); torch.cuda.synchronize(); first = time.time() - t
row = {"B": B, "T": T, "C": C, "resident_first_call_s": first,
       "err_chunk": ((y_c.double() - ref.double()).norm() / ref.double().norm()).item(),
       "err_resident": ((y_r.double() - ref.double()).norm() / ref.double().norm()).item(),
       "counters_zero": bool(all(int(c.abs().sum()) == 0 for c in wr._COUNTERS.values()))}
print(row, flush=True)
for name, fn in (("chunk", lambda: kt.wkv_forward(w, u, k, v, causal=False)), ("resident", res)):
    eager = statistics.median(bench.time_fn(fn, reps=15, flush=True))
    graph = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=15, flush=True))
    row[name] = {"eager_ms": eager, "eager_pct": 100 * floor / eager, "graph_ms": graph, "graph_pct": 100 * floor / graph}
    print(f"{name:9s} T={T} C={C} eager {eager:.3f} ms ({100 * floor / eager:.0f}%) graph {graph:.3f} ms ({100 * floor / graph:.0f}%)", flush=True)
print("ROW", json.dumps(row))
