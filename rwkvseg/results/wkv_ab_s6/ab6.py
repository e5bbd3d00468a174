"""Session 6 A/B of variant C on the GPU: the committed kernels (.carry/wkv_old.py, 9e0a5ee) against the new
ones (fewer instructions a token, constexpr masks), with batch groups (L2 reuse), programmatic dependent
launches and L2 eviction hints. fp32, B = 24, L2-flushed, CUDA events, median; eager and CUDA-graph replay."""
import importlib.util, json, statistics, sys, time, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
old = load("wkv_old", ".carry/wkv_old.py")
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
VARIANTS = {"old": None, "new": {}, "new pdl": {"pdl": True}, "new evict": {"evict": True},
            "new pdl evict": {"pdl": True, "evict": True},
            "new g2 pdl": {"groups": 2, "pdl": True}, "new g3 pdl": {"groups": 3, "pdl": True},
            "new g4 pdl": {"groups": 4, "pdl": True}, "new g2 pdl evict": {"groups": 2, "pdl": True, "evict": True},
            "new g4 pdl evict": {"groups": 4, "pdl": True, "evict": True}}
EAGER = ("old", "new", "new pdl", "new g2 pdl")
x = torch.randn(1, 1024, 8, device="cuda")
for mod in (old, kt):
    bench.cuda_graph(lambda: mod.wkv_forward(x[0, 0], x[0, 0], x, x, causal=False))
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    y = torch.empty_like(k)
    add = statistics.median(bench.time_fn(bench.cuda_graph(lambda: torch.add(k, v, out=y)), reps=reps, flush=True))
    print(f"T={T} C={C} floor {floor:.4f} ms; torch.add (3N) graph {add:.4f} ms ({100 * floor / add:.0f}%)", flush=True)
    rows.append({"T": T, "C": C, "variant": "torch.add 3N", "graph_ms": add, "graph_pct": 100 * floor / add})
    for name, opts in VARIANTS.items():
        fn = (lambda: old.wkv_forward(w, u, k, v, causal=False)) if opts is None else \
             (lambda o=opts: kt.wkv_forward(w, u, k, v, causal=False, chunk_opts=o))
        row = {"T": T, "C": C, "variant": name}
        try:
            t0 = time.time(); yv = fn(); torch.cuda.synchronize(); row["first_s"] = time.time() - t0
            row["rel_diff_vs_tiled"] = ((yv.double() - ref.double()).norm() / ref.double().norm()).item()
            row["counters_zero"] = all(int(c.abs().sum()) == 0 for c in kt._COUNTERS.values())
            row["graph_ms"] = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            row["graph_pct"] = 100 * floor / row["graph_ms"]
            if name in EAGER:
                row["eager_ms"] = statistics.median(bench.time_fn(fn, reps=reps, flush=True))
                row["eager_pct"] = 100 * floor / row["eager_ms"]
        except Exception as exc:
            row["error"] = repr(exc)[:400]
        rows.append(row)
        print(f"T={T:5d} C={C:3d} {name:18s} graph {row.get('graph_ms', float('nan')):.4f} ms ({row.get('graph_pct', 0):.0f}%)"
              + (f" eager {row['eager_ms']:.4f} ({row['eager_pct']:.0f}%)" if "eager_ms" in row else "")
              + f" diff {row.get('rel_diff_vs_tiled', float('nan')):.1e} cnt0 {row.get('counters_zero')}"
              + (f" ERR {row['error'][:200]}" if "error" in row else ""), flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "reps": reps, "rows": rows},
              open(out, "w"), indent=1)
