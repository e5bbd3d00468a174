"""Is there a host sync in the WKV's autograd path, and where does the eager host time of bi_wkv go?"""
import json, statistics, sys, time, warnings
import torch
sys.path.insert(0, ".")
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg import wkv as W

def per_call(fn, n=300, rounds=5):
    res = []
    for _ in range(rounds):
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        res.append((time.perf_counter() - t) / n * 1e6)
    return round(statistics.median(res), 1), [round(r, 1) for r in res]

class F(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, u, k, v):
        ctx.save_for_backward(w, u, k, v)
        return kt.wkv_forward(w, u, k, v, causal=False)
    @staticmethod
    def backward(ctx, gy):
        w, u, k, v = ctx.saved_tensors
        return kt.wkv_backward(w, u, k, v, gy, causal=False)

out = {}
for (B, T, C) in [(1, 512, 128), (24, 1024, 288)]:
    k = torch.randn(B, T, C, device="cuda"); v = torch.randn_like(k); g = torch.randn_like(k)
    w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
    kg, vg, wg, ug = (x.clone().requires_grad_() for x in (k, v, w, u))
    fns = {
        "kt_fwd": lambda: kt.wkv_forward(w, u, k, v, causal=False),
        "kt_bwd": lambda: kt.wkv_backward(w, u, k, v, g, causal=False),
        "kt_fwd_then_bwd": lambda: (kt.wkv_forward(w, u, k, v, causal=False), kt.wkv_backward(w, u, k, v, g, causal=False)),
        "op_fwd": lambda: W._wkv_forward_op(w, u, k, v, False, "triton"),
        "op_bwd": lambda: W._wkv_backward_op(w, u, k, v, g, False, "triton"),
        "bi_wkv_fwd": lambda: W.bi_wkv(w, u, k, v),
        "bi_wkv_fwd_grad": lambda: W.bi_wkv(wg, ug, kg, vg),
        "bi_wkv_fwd_bwd": lambda: W.bi_wkv(wg, ug, kg, vg).backward(g),
        "bi_wkv_fwd_autograd_grad": lambda: torch.autograd.grad(W.bi_wkv(wg, ug, kg, vg), (wg, ug, kg, vg), g),
        "function_fwd_bwd": lambda: F.apply(wg, ug, kg, vg).backward(g),
        "function_autograd_grad": lambda: torch.autograd.grad(F.apply(wg, ug, kg, vg), (wg, ug, kg, vg), g),
    }
    for name, fn in fns.items():
        key = f"{B}x{T}x{C}_{name}"
        out[key] = per_call(fn, n=300 if B == 1 else 50)
        print(key, out[key], flush=True)
# sync check: any synchronizing call inside the WKV's forward + backward raises
torch.cuda.set_sync_debug_mode("error")
try:
    W.bi_wkv(wg, ug, kg, vg).backward(g)
    kt.wkv_forward(w, u, k, v, causal=True)
    out["sync_check"] = "no synchronizing call in bi_wkv forward + backward"
except Exception as e:
    out["sync_check"] = "SYNC: " + repr(e)[:500]
torch.cuda.set_sync_debug_mode(0)
print(out["sync_check"])
json.dump(out, open(sys.argv[1], "w"), indent=1)
