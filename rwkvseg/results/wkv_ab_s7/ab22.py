"""Session 7 A/B 22: the tiled kernel's early exit checking its one block of w, u once (the package) against a check per
channel ((16, 128) loads a program; wkv_1d10026.py), for the whole default forward; then variant C's sub-tile rows R and
pipeline depth NSTAGE at the default chunk count. fp32, B = 24, L2-flushed, CUDA graph, median of reps, two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
old = load("wkv_1d10026", ".carry/s7/wkv_1d10026.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
sweep = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[4].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    ct = kt._chunk_tile(T, 24, C, kt._wave_slots(k.device))
    variants = [("1d10026 (check per channel)", old, None), ("one check a program", kt, None)]
    if (T, C) in sweep:
        variants += [(f"R {r} NSTAGE {ns}", kt, (ct[0], r, ct[2], ct[3], ns)) for r, ns in ((4, 2), (4, 4), (4, 5), (8, 2), (8, 3), (2, 4), (2, 6))]
    for rnd in range(2):
        for name, mod, tile in variants:
            fn = lambda mod=mod, tile=tile: mod.wkv_forward(w, u, k, v, causal=False, single_tile=tile, single_impl="auto" if tile is None else "chunk")
            try:
                err = bench.rel(fn(), ref)
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            except Exception as ex:
                print(f"T={T} C={C} {name}: {ex!r}"[:300], flush=True)
                continue
            rows.append({"T": T, "C": C, "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "rel_diff": err})
            print(f"T={T:5d} C={C:3d} {name:28s} round {rnd} {ms * 1e3:7.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
