"""One call each of variant C (package) and variant R3 (experiment) at B = 24, T = 1024, C = 288, for ncu."""
import importlib.util, torch
s = importlib.util.spec_from_file_location("wr", ".carry/wkv_resident.py"); wr = importlib.util.module_from_spec(s); s.loader.exec_module(wr)
from rwkvseg.kernels import wkv_triton as kt
torch.manual_seed(0)
B, T, C = 24, 1024, 288
k, v = torch.randn(2, B, T, C, device="cuda").unbind(0)
w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
y = torch.empty_like(k)
for _ in range(2):
    kt.wkv_forward(w, u, k, v, causal=False)
    wr._resident3_forward(w, u, k, v, y)
    wr._resident_forward(w, u, k, v, y)
torch.cuda.synchronize()
