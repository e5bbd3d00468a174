"""Where variant C's time goes (session 6): each launch alone, without its carry step, without its arithmetic."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
P = load("wkv_probe", ".carry/wkv_probe.py")
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    floor = 3 * k.numel() * 4 / bw * 1e3
    cases = {"torch.add k+v (3N)": lambda: torch.add(k, v, out=y), "k.sum(1) (2N read)": lambda: k.sum(1),
             "full (package)": lambda: P.wkv_forward(w, u, k, v, causal=False)}
    for which, p1, p2, name in (("12", 0, 0, "launch 1+2"), ("1", 0, 0, "launch 1"), ("1", 1, 0, "launch 1 no carries"),
                                ("1", 2, 0, "launch 1 loads only"), ("1", 3, 0, "launch 1 loads + carries"),
                                ("2", 0, 0, "launch 2"), ("2", 0, 2, "launch 2 loads+store only"),
                                ("12", 2, 2, "launch 1+2 loads only")):
        cases[name] = (lambda which=which, p1=p1, p2=p2: P.probe(w, u, k, v, y, which, p1, p2))
    P.probe(w, u, k, v, y, "12")
    for name, fn in cases.items():
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
        rows.append({"T": T, "C": C, "case": name, "graph_ms": ms, "pct_floor": 100 * floor / ms})
        print(f"T={T:5d} C={C:3d} {name:28s} {ms * 1e3:8.1f} us  ({100 * floor / ms:.0f}% of the 3N floor)", flush=True)
    for tile_name, tile in (("nch32", (max(64, T) // 32, 4, 128, 1, 3)), ("nch8", (max(64, T) // 8, 4, 128, 1, 3)),
                            ("R8 nch16", (max(64, T) // 16, 8, 128, 1, 3)), ("R2 nch16", (max(64, T) // 16, 2, 128, 1, 3)),
                            ("2 warps 256ch", (max(64, T) // 16, 4, 256, 2, 3))):
        for which, name in (("1", "launch 1"), ("2", "launch 2"), ("12", "launch 1+2")):
            fn = lambda which=which, tile=tile: P.probe(w, u, k, v, y, which, 0, 0, tile)
            fn()
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            rows.append({"T": T, "C": C, "case": f"{name} {tile_name}", "graph_ms": ms, "pct_floor": 100 * floor / ms})
            print(f"T={T:5d} C={C:3d} {name + ' ' + tile_name:28s} {ms * 1e3:8.1f} us  ({100 * floor / ms:.0f}%)", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
