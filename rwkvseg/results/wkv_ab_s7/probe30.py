"""Session 7 probe 30: what the tiled kernel's early-exit launch costs after variant C (CUDA graph, L2 flushed, median of
reps): the whole forward, variant C alone, the early-exit launch alone (its grid: B x C/16 programs of 4 warps), and an
empty Triton kernel with the same grid and with B x C/128 programs, for scale."""
import importlib.util, json, statistics, sys, torch, triton, triton.language as tl
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt

@triton.jit
def _empty(x_ptr):
    pass

out, reps = sys.argv[1], int(sys.argv[2])
rows = []
for T, C in ((1024, 288), (1024, 560), (1024, 960), (4096, 288)):
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    bt, bc, nw = kt.FALLBACK_TILE
    nt = triton.cdiv(T, bt)
    scratch = torch.empty((24, nt, 3, C), dtype=torch.float32, device="cuda")
    skip = kt._chunk_forward(w, u, k, v, y)
    parts = {
        "forward": lambda: kt.wkv_forward(w, u, k, v, causal=False),
        "variant C alone": lambda: kt._chunk_forward(w, u, k, v, y),
        "early exit alone": lambda: kt._launch(kt._fwd, kt._wkv_fwd_kernel, kt.FALLBACK_TILE, 24, C, w, u, k, v, y, scratch, 24, T, C, nt,
                                               *k.stride(), *v.stride(), *y.stride(), CAUSAL=False, ALLOW_FAST=True, ALLOW_TIGHT=True, SKIP_BC=skip),
        "empty kernel, B x C/16 programs": lambda: _empty[(24, triton.cdiv(C, 16))](y, num_warps=4),
        "empty kernel, B x C/128 programs": lambda: _empty[(24, triton.cdiv(C, 128))](y, num_warps=4),
    }
    for name, fn in parts.items():
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
        rows.append({"T": T, "C": C, "part": name, "graph_us": ms * 1e3})
        print(f"T={T:5d} C={C:3d} {name:34s} {ms * 1e3:7.1f} us", flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "rows": rows}, open(out, "w"), indent=1)
