"""Host (CPU) cost of one WKV call on the GPU machine: wall per call in a loop where the GPU work is tiny,
so the host is the bottleneck; cProfile of the same loops. Usage: python3 .carry/s9/host9.py OUT.json"""
import cProfile, io, json, pstats, sys, time
import torch, triton, triton.language as tl
sys.path.insert(0, ".")
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg import bi_wkv

@triton.jit
def _empty(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
           X: tl.constexpr, Y: tl.constexpr):
    pass

def per_call(fn, n=400):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e6

out = {}
x = torch.zeros(16, device="cuda")
out["empty_kernel_18args_us"] = per_call(lambda: _empty[(1,)](x, x, x, x, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, X=4, Y=8))
out["torch_empty_us"] = per_call(lambda: torch.empty((24, 512, 128), device="cuda"))
out["torch_add_us"] = per_call(lambda: torch.add(x, x))
out["current_stream_us"] = per_call(lambda: torch.cuda.current_stream(x.device))
profiles = {}
for (B, T, C) in [(1, 512, 128), (1, 128, 128), (1, 64, 128)]:
    k = torch.randn(B, T, C, device="cuda"); v = torch.randn_like(k); g = torch.randn_like(k)
    w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
    kg, vg = k.clone().requires_grad_(), v.clone().requires_grad_()
    wg, ug = w.clone().requires_grad_(), u.clone().requires_grad_()
    fns = {
        "kt_fwd": lambda: kt.wkv_forward(w, u, k, v, causal=False),
        "kt_bwd": lambda: kt.wkv_backward(w, u, k, v, g, causal=False),
        "bi_wkv_fwd": lambda: bi_wkv(w, u, k, v),
        "bi_wkv_fwd_bwd": lambda: bi_wkv(wg, ug, kg, vg).backward(g),
        "kt_fwd_causal": lambda: kt.wkv_forward(w, u, k, v, causal=True),
    }
    for name, fn in fns.items():
        key = f"{T}x{C}_{name}"
        out[key + "_us"] = per_call(fn)
        pr = cProfile.Profile(); pr.enable()
        for _ in range(200):
            fn()
        torch.cuda.synchronize(); pr.disable()
        s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18)
        profiles[key] = s.getvalue()
        print(key, round(out[key + "_us"], 1), flush=True)
print(json.dumps({k: round(v, 1) for k, v in out.items()}, indent=1))
json.dump({"us": out, "profiles": profiles, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "triton": triton.__version__}, open(sys.argv[1], "w"), indent=1)
for k in ("512x128_kt_fwd", "512x128_kt_bwd", "512x128_bi_wkv_fwd_bwd"):
    print("=====", k); print(profiles[k][:6000])
