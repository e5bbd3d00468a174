"""Session 7 A/B 28: variant C's carry step, five ways, float32 and bfloat16: 5fafe17 ((16, 64)-tile scans; wkv_old.py),
one pass with the suffix as totals minus prefixes and launch 2 rescaling (083609c; wkv_083609c.py), three passes (M,
prefix, suffix; wkv_3pass.py), two passes (M, then prefix and suffix in one loop; the package), and the sequence max
from atomic maxima in launch 1 plus that one loop (wkv_c1.py). L2-flushed, CUDA graph, median of reps, alternating,
two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
mods = [("5fafe17", load("wkv_old", ".carry/s7/wkv_old.py"))]
from rwkvseg.kernels import wkv_triton as kt
mods += [("083609c one pass", load("wkv_083609c", ".carry/s7/wkv_083609c.py")), ("three passes", load("wkv_3pass", ".carry/s7/wkv_3pass.py")),
         ("two passes", kt), ("atomic max + one loop", load("wkv_c1", ".carry/s7/wkv_c1.py"))]
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    for dtype in (torch.bfloat16, torch.float32):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        ref = mods[0][1].wkv_forward(w, u, k, v, causal=False)
        for rnd in range(2):
            for name, mod in mods:
                fn = lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=False)
                err = bench.rel(fn(), ref)
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                rows.append({"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "rel_diff_vs_5fafe17": err})
                print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name:22s} round {rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
