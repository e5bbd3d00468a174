"""Session 8 A/B 38: which of 5d1b6ff's changes to variant C's forward made bf16 launch 2 slower at C = 560 (the
complete benchmark at 5d1b6ff: 1024 x 560 bf16 94 -> 109 us, 16384 x 560 1163 -> 1400 us): 4e6d3b9 (wkv_old.py),
5d1b6ff (the package), and 5d1b6ff with one change undone: _chunk_y's formula inline again (wkv_y.py), _chunk_rows'
shared-mask loads (wkv_rows.py), the carries loaded inline (wkv_carry.py). Forward, CUDA graph, L2-flushed, median of
reps, alternated, two rounds; registers of launch 2."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
mods = [("4e6d3b9", load("wkv_old", ".carry/s8/wkv_old.py")), ("5d1b6ff", kt), ("y inline", load("wkv_y", ".carry/s8/wkv_y.py")),
        ("rows shared mask", load("wkv_rows", ".carry/s8/wkv_rows.py")), ("carries inline", load("wkv_carry", ".carry/s8/wkv_carry.py"))]
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
                d = (fn().float() - ref.float()).abs().max().item()
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                rows.append({"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "maxabs_vs_old": d})
                print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name:18s} round {rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:.1f}%) diff {d:.1e}", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
regs = []
for name, mod in mods:
    for dev, cache in mod._wkv_fwd_chunk_kernel.device_caches.items():
        for key, ck in cache[0].items():
            regs.append([name, str(key)[-110:], ck.n_regs, ck.n_spills]); print(regs[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
