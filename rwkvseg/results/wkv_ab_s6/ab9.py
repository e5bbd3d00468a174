"""Session 6 A/B 3: the carry step as tile scans (package) against the serial carry step (.carry/wkv_old.py)."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
old = load("wkv_old", ".carry/wkv_old.py")
P = load("wkv_probe", ".carry/wkv_probe.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
x = torch.randn(1, 1024, 8, device="cuda")
for mod in (old, kt, P):
    bench.cuda_graph(lambda: mod.wkv_forward(x[0, 0], x[0, 0], x, x, causal=False))
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    cases = {"old": lambda: old.wkv_forward(w, u, k, v, causal=False),
             "new": lambda: kt.wkv_forward(w, u, k, v, causal=False),
             "new launch 1": lambda: P.probe(w, u, k, v, y, "1"),
             "new launch 1 no carries": lambda: P.probe(w, u, k, v, y, "1", 1, 0),
             "new launch 2": lambda: P.probe(w, u, k, v, y, "2")}
    for name, fn in cases.items():
        yv = fn()
        err = ((yv.double() - ref.double()).norm() / ref.double().norm()).item() if yv is not None else float("nan")
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
        row = {"T": T, "C": C, "case": name, "graph_ms": ms, "pct": 100 * floor / ms, "rel_diff": err}
        if name in ("old", "new"):
            row["eager_ms"] = statistics.median(bench.time_fn(fn, reps=reps, flush=True)); row["eager_pct"] = 100 * floor / row["eager_ms"]
        rows.append(row)
        print(f"T={T:5d} C={C:3d} {name:24s} graph {ms * 1e3:7.1f} us ({row['pct']:.0f}%)" + (f" eager {row['eager_ms'] * 1e3:.1f} us ({row['eager_pct']:.0f}%)" if "eager_ms" in row else "") + f" diff {err:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
