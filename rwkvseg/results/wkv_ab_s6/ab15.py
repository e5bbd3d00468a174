"""Session 6 A/B 8: the tiled kernel autotuned (tuned on real work: wide decays first) against the fixed tile
(BT 128, BC 16, 4 warps): wide-decay forward (the tiled kernel does the work) and the default forward (variant C,
the tiled kernel only exits), CUDA graph and eager, fp32, B = 24, L2-flushed, median of 15."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T in (256, 1024, 4096, 16384):
    for C in (288, 560, 960):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        ww = w * 5
        floor = 3 * k.numel() * 4 / bw * 1e3
        cases = {"wide, autotuned": lambda: kt.wkv_forward(ww, u, k, v, causal=False),
                 "wide, fixed 128x16x4": lambda: kt.wkv_forward(ww, u, k, v, causal=False, tile=(128, 16, 4)),
                 "default, autotuned exit": lambda: kt.wkv_forward(w, u, k, v, causal=False),
                 "default, fixed exit": lambda: kt.wkv_forward(w, u, k, v, causal=False, tile=(128, 16, 4))}
        ref = cases["wide, fixed 128x16x4"]()
        for name, fn in cases.items():
            y = fn()
            row = {"T": T, "C": C, "case": name}
            if name.startswith("wide"):
                row["rel_diff"] = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
            row["graph_ms"] = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            row["eager_ms"] = statistics.median(bench.time_fn(fn, reps=reps, flush=True))
            row["graph_pct"], row["eager_pct"] = 100 * floor / row["graph_ms"], 100 * floor / row["eager_ms"]
            rows.append(row)
            print(f"T={T:5d} C={C:3d} {name:24s} graph {row['graph_ms']:.4f} ms ({row['graph_pct']:.0f}%) eager {row['eager_ms']:.4f} ({row['eager_pct']:.0f}%)", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
