"""Split of variant C's carry step (session 6): launch 1 alone with no atomic and no carries (PROBE 1), with the
atomic counter but no carries (PROBE 4), with both (PROBE 0). CUDA graph, L2 flushed, median of 30."""
import importlib.util, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
P = load("wkv_probe", ".carry/wkv_probe.py")
for T, C in ((1024, 288), (1024, 560), (4096, 288), (16384, 288)):
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    P.probe(w, u, k, v, y, "12")
    for p1, name in ((1, "no atomic, no carries"), (4, "atomic, no carries"), (0, "atomic + carries")):
        fn = lambda p1=p1: P.probe(w, u, k, v, y, "1", p1, 0)
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=30, flush=True))
        print(f"T={T:5d} C={C:3d} launch 1 {name:24s} {ms * 1e3:7.1f} us", flush=True)
