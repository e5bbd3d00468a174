"""Session 9 A/B 41 (ab40.py with only part 2 at shorter T): the forward's switch from the single pass to the chunked kernel at T = 49-144.
From A/B 40, now that bf16 has the fp32 layout (952b2d5): (1) _chunk_y through the shared _chunk_sums
(wkv_shared_y.py) against the written-out formula (the package); (2) the forward's switch from the single pass to
the chunked kernel (CHUNK_MIN_T = 512) at T = 196-400; (3) the backward's switch from the tiled to the chunked
kernel (CHUNK_BWD_MIN_T = 128) at T = 49-100. CUDA graph, L2-flushed, median of reps, alternated, two rounds,
B = 24, k, v ~ N(0, 1), w ~ U(0, 1) / T, u ~ N(0, 1) / T."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
bw = bench.copy_bandwidth("cuda")
res = {"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "torch": torch.__version__, "rows": []}
print(res["device"], f"copy {bw / 1e12:.3f} TB/s", flush=True)

def inputs(T, C, dtype):
    torch.manual_seed(T + C)
    k, v, g = torch.randn(3, 24, T, C, device="cuda").to(dtype).unbind(0)
    return torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T, k, v, g

def run(part, T, C, dtype, variants, floor_n):
    w, u, k, v, g = inputs(T, C, dtype)
    floor = floor_n * k.numel() * k.element_size() / bw * 1e3
    fns = {name: make(w, u, k, v, g) for name, make in variants}
    first = None
    for rnd in range(2):
        for name, fn in fns.items():
            o = fn()
            o = o if isinstance(o, torch.Tensor) else o[2]
            first = o.float() if first is None else first
            d = (o.float() - first).abs().max().item()
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            res["rows"].append({"part": part, "T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd,
                                "graph_us": ms * 1e3, "pct_floor": 100 * floor / ms, "maxabs_vs_first": d})
            print(f"{part} T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name:12s} r{rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:5.1f}%) diff {d:.1e}", flush=True)
    json.dump(res, open(out, "w"), indent=1)

dts = (torch.bfloat16, torch.float32)
for T in (49, 64, 100, 128, 144):
    for C in (288, 560, 960):
        for dt in dts:
            run("fwd_switch", T, C, dt, [("single", lambda w, u, k, v, g: lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="scan")),
                                         ("chunk", lambda w, u, k, v, g: lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="chunk"))], 3)
print("done", flush=True)
