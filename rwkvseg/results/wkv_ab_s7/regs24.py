"""Session 7 probe 24: registers and spills of variant C's two launches on the device's Triton, 5fafe17 (wkv_old.py)
against the package, for float32 and bfloat16 inputs at 16384 x 288 and 1024 x 288."""
import importlib.util, json, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
old = load("wkv_old", ".carry/s7/wkv_old.py")
from rwkvseg.kernels import wkv_triton as kt
out = {}
for T, C in ((16384, 288), (1024, 288)):
    for dtype in (torch.float32, torch.bfloat16):
        k, v = torch.randn(2, 2, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        for mod in (old, kt):
            mod.wkv_forward(w, u, k, v, causal=False)
torch.cuda.synchronize()
for name, mod in (("5fafe17", old), ("083609c", kt)):
    for kern in (mod._wkv_fwd_sums_kernel, mod._wkv_fwd_chunk_kernel):
        for cache in kern.device_caches.values():
            for key, ck in cache[0].items():
                line = f"{name} {kern.fn.__name__} {str(key)[:60]}...{str(key)[-90:]} regs {ck.n_regs} spills {ck.n_spills} shared {ck.metadata.shared}"
                print(line, flush=True)
