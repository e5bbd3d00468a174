"""Session 7 A/B 21: variant C's chunk count at B = 24 (CT = T / nch) against the default (_chunk_tile's one-wave rule),
and the registers the device's Triton gives the two launches. fp32, L2-flushed, CUDA graph, median of reps."""
import importlib.util, json, statistics, sys, torch, triton
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    ref = kt.wkv_forward(w, u, k, v, causal=False, allow_single=False, tile=(128, 16, 4))
    default = kt._chunk_tile(T, 24, C, kt._wave_slots(k.device))
    variants = [("default", None)] + [(f"nch {n}", (T // n, 4, 128, 1, 3)) for n in (4, 8, 16, 32) if T // n >= 64 and T // n != default[0]]
    for rnd in range(2):
        for name, tile in variants:
            fn = lambda tile=tile: kt.wkv_forward(w, u, k, v, causal=False, single_impl="chunk", single_tile=tile)
            err = bench.rel(fn(), ref)
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            t = tile or default
            rows.append({"T": T, "C": C, "variant": name, "tile": t, "items": 24 * triton.cdiv(C, 128) * triton.cdiv(T, t[0]),
                         "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "rel_diff": err})
            print(f"T={T:5d} C={C:3d} {name:8s} CT={t[0]:4d} items {rows[-1]['items']:5d} round {rnd} {ms * 1e3:7.1f} us ({100 * floor / ms:.1f}%) diff {err:.1e}", flush=True)
regs = {}
for kern in (kt._wkv_fwd_sums_kernel, kt._wkv_fwd_chunk_kernel):
    try:
        for cache in kern.device_caches.values():
            for key, ck in cache[0].items():
                regs.setdefault(kern.fn.__name__, []).append([str(key)[-160:], ck.n_regs, ck.n_spills])
    except Exception as ex:
        regs[str(kern)] = repr(ex)[:200]
print("registers", json.dumps(regs)[:3000], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
