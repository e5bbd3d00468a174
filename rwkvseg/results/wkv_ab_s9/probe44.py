"""Why the package's Gluon forward (ab43: 71 us at 1024 x 288) is slower than the experiment's (ab42: 48 us)."""
import importlib.util, statistics, sys, torch
sys.path.insert(0, ".carry/s9")
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt, wkv_gluon as wg
import gluon_wkv as g
for T, C in [(1024, 288), (1024, 960), (256, 560)]:
    torch.manual_seed(0)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    tile = kt.FALLBACK_TILE
    nt = (T + tile[0] - 1) // tile[0]
    scratch = torch.empty((24, nt, 3, C), device="cuda")
    def tiled_exit():
        kt._launch(kt._fwd, kt._wkv_fwd_kernel, tile, 24, C, w, u, k, v, y, scratch, 24, T, C, nt, *k.stride(), *v.stride(),
                   *y.stride(), CAUSAL=False, ALLOW_FAST=True, ALLOW_TIGHT=True, SKIP_BC=8)
    variants = {
        "experiment R8": lambda: g.forward(w, u, k, v, BC=8, R=8, NW=8),
        "experiment R4": lambda: g.forward(w, u, k, v, BC=8, R=4, NW=8),
        "package kernel": lambda: wg.forward(w, u, k, v, y),
        "package kernel + exit": lambda: (wg.forward(w, u, k, v, y), tiled_exit()),
        "tiled exit alone": tiled_exit,
        "package forward": lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="gluon"),
        "chunk forward": lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="chunk"),
    }
    for rnd in range(2):
        for name, fn in variants.items():
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=30, flush=True))
            print(f"T={T} C={C} {name:24s} r{rnd} {ms * 1e3:7.1f} us", flush=True)
for dev, cache in wg._wkv_fwd_gluon_kernel.device_caches.items():
    for key, ck in cache[0].items():
        print("package", ck.n_regs, ck.n_spills, ck.metadata.shared, str(key)[-80:])
for dev, cache in g.gluon_bi_wkv_fwd.device_caches.items():
    for key, ck in cache[0].items():
        print("experiment", ck.n_regs, ck.n_spills, ck.metadata.shared, str(key)[-80:])
