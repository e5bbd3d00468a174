"""Host (CPU) cost of one Bi-WKV forward call on the GPU: per-call CPU time of its parts, and a cProfile."""
import cProfile, pstats, time, io, torch
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg import wkv
B, T, C = 24, 1024, 288
k, v = torch.randn(2, B, T, C, device="cuda").unbind(0)
w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
y = torch.empty_like(k)
def per_call(fn, n=400):
    for _ in range(20): fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(n):
        fn()
        if i % 50 == 49: torch.cuda.synchronize()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6
nt = triton_cdiv = (T + kt.MIN_BT - 1) // kt.MIN_BT
scratch = torch.empty((B, nt, 3, C), dtype=torch.float32, device="cuda")
cases = {
    "wkv_forward (kernels)": lambda: kt.wkv_forward(w, u, k, v, causal=False),
    "variant C launches only (_chunk_forward)": lambda: kt._chunk_forward(w, u, k, v, y),
    "tiled early-exit launch (autotuner)": lambda: kt._launch(kt._fwd, kt._wkv_fwd_kernel, None, B, C, w, u, k, v, y, scratch, B, T, C, nt,
                                                             *k.stride(), *v.stride(), *y.stride(), CAUSAL=False, ALLOW_FAST=True, ALLOW_TIGHT=True, SKIP_BC=128),
    "bi_wkv (custom op, no grad)": lambda: wkv.bi_wkv(w, u, k, v, backend="triton"),
    "torch.empty_like x1": lambda: torch.empty_like(k),
}
with torch.no_grad():
    for name, fn in cases.items():
        print(f"{name:45s} {per_call(fn):7.1f} us of CPU a call (GPU time of the forward ~77 us)", flush=True)
kw = dict(requires_grad=True)
wg, ug, kg, vg = (t.clone().requires_grad_() for t in (w, u, k, v))
print(f"{'bi_wkv forward with autograd':45s} {per_call(lambda: wkv.bi_wkv(wg, ug, kg, vg, backend='triton')):7.1f} us", flush=True)
pr = cProfile.Profile()
pr.enable()
for i in range(300):
    kt.wkv_forward(w, u, k, v, causal=False)
    if i % 50 == 49: torch.cuda.synchronize()
pr.disable()
s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(22); print(s.getvalue()[:6000])
