"""Session 7 A/B 23: bfloat16 inputs, the package (083609c) against 5fafe17 (wkv_old.py), to check the complete benchmark's
16384 x 288 bf16 forward (1.007 ms at 083609c against 0.882 ms at 5fafe17, separate runs). L2-flushed, CUDA graph, median
of reps, alternating, two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
old = load("wkv_old", ".carry/s7/wkv_old.py")
from rwkvseg.kernels import wkv_triton as kt
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
        for rnd in range(2):
            for name, mod in (("5fafe17", old), ("083609c", kt)):
                fn = lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=False)
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                rows.append({"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms})
                print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name} round {rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:.1f}%)", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
