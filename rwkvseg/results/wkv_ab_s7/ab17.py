"""Session 7 A/B 17 and 18: variant F (fused.py: variant C's two loops in one persistent launch, the second read from
L2) against the package, tile by tile and by programs per SM. fp32, B = 24, L2-flushed, CUDA-graph replay, median of
reps; JSON lines. ab17 ran fused.py's first version (phase A then phase B of each item in one function: what LOOKAHEAD=False
is now; ab18 re-measured it, 84.9 against 85.6 us), ab18 this file (LOOKAHEAD: phase A of the next item first)."""
import importlib.util, json, statistics, sys, time, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
op = load("fused", ".carry/s7/fused.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
plan = json.loads(sys.argv[3])   # [[T, C, [[ct, bc, nw, opts...], ...]], ...]
bw = bench.copy_bandwidth("cuda")
f = open(out, "a")
def emit(d):
    f.write(json.dumps(d) + "\n"); f.flush(); print(d, flush=True)
emit({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "torch": torch.__version__})
for T, C, tiles in plan:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    variants = [("package", lambda: kt.wkv_forward(w, u, k, v, causal=False))]
    for t in tiles:
        tile, per_sm = tuple(t[:5]), t[5]
        opts = t[6] if len(t) > 6 else {}
        name = f"F {tile} per_sm {per_sm} {opts}"
        variants.append((name, lambda tile=tile, per_sm=per_sm, opts=opts: op.wkv_forward(w, u, k, v, tile, per_sm, **opts)))
    for name, fn in variants:
        t0 = time.time()
        try:
            y = fn(); torch.cuda.synchronize()
            err = bench.rel(y, ref)
            g = bench.cuda_graph(fn)
            ms = statistics.median(bench.time_fn(g, reps=reps, flush=True))
            y2 = fn(); torch.cuda.synchronize()
            err2 = bench.rel(y2, ref)
            emit({"T": T, "C": C, "variant": name, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "rel_diff": err, "rel_diff_after": err2, "wall_s": time.time() - t0})
        except Exception as ex:
            emit({"T": T, "C": C, "variant": name, "error": repr(ex)[:300]})
