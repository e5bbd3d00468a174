"""Session 6 A/B 5: the 3-D single pass (one read of k, v; (R, NCHK, BC) tiles) against variant C and the old single
pass, fp32, B = 24, L2-flushed, CUDA events, median; CUDA-graph replay and eager."""
import importlib.util, json, statistics, sys, time, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
TILES = {256: [(64, 4, 8, 4), (64, 4, 16, 8), (32, 8, 8, 2)], 512: [(128, 4, 8, 8), (128, 4, 4, 4), (64, 8, 8, 4)],
         1024: [(256, 4, 8, 16), (128, 8, 8, 8), (256, 4, 4, 8), (256, 4, 8, 8)],
         2048: [(512, 4, 4, 16), (256, 8, 4, 8), (512, 4, 8, 16)]}
def variants(T):
    v = {"C": dict(single_impl="chunk"), "S (old)": dict(single_impl="scan")} if T <= 1024 else {"C": dict(single_impl="chunk")}
    for t in TILES[T]:
        v["S3 " + "x".join(map(str, t))] = dict(single_impl="s3", single_tile=t)
    return v
x = torch.randn(1, 1024, 8, device="cuda")
bench.cuda_graph(lambda: kt.wkv_forward(x[0, 0], x[0, 0], x, x, causal=False))
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    for name, kw in variants(T).items():
        fn = lambda kw=kw: kt.wkv_forward(w, u, k, v, causal=False, **kw)
        row = {"T": T, "C": C, "variant": name}
        try:
            t0 = time.time(); yv = fn(); torch.cuda.synchronize(); row["first_s"] = time.time() - t0
            row["rel_diff_vs_tiled"] = ((yv.double() - ref.double()).norm() / ref.double().norm()).item()
            row["graph_ms"] = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            row["graph_pct"] = 100 * floor / row["graph_ms"]
            row["eager_ms"] = statistics.median(bench.time_fn(fn, reps=reps, flush=True))
            row["eager_pct"] = 100 * floor / row["eager_ms"]
        except Exception as exc:
            row["error"] = repr(exc)[:400]
        rows.append(row)
        print(f"T={T:5d} C={C:3d} {name:22s} graph {row.get('graph_ms', float('nan')):.4f} ms ({row.get('graph_pct', 0):.0f}%)"
              + (f" eager {row['eager_ms']:.4f} ({row['eager_pct']:.0f}%)" if "eager_ms" in row else "")
              + f" diff {row.get('rel_diff_vs_tiled', float('nan')):.1e}"
              + (f" ERR {row['error'][:200]}" if "error" in row else ""), flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "reps": reps, "rows": rows},
              open(out, "w"), indent=1)
