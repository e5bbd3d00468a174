"""Session 7 probe 26: variant C launch by launch (launch 1 alone, launch 2 alone, both, the whole forward), 5fafe17
(wkv_old.py) against the package, float32 and bfloat16, to find where bf16 16384 x 288 lost 14 % (ab23, ab25).
L2-flushed, CUDA graph, median of reps."""
import importlib.util, json, statistics, sys, torch, triton
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
old = load("wkv_old", ".carry/s7/wkv_old.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
rows = []
def launches(mod, w, u, k, v, y):
    B, T, C = k.shape
    ct, r, bc, nw, ns = mod._chunk_tile(T, B, C, mod._wave_slots(k.device))
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums = torch.empty((B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    carry = torch.empty((B * ncb, nchp + 1, 5, bc), dtype=torch.float32, device=k.device)
    counters = mod._counters(B * ncb, k.device)
    n = B * ncb * nch
    meta = dict(CT=ct, R=r, BC=bc, NCHP=nchp, NSTAGE=ns, MASK_T=T % ct != 0, MASK_C=C % bc != 0, num_warps=nw)
    l1 = lambda: mod._wkv_fwd_sums_kernel[(n,)](w, u, k, v, sums, carry, counters, T, C, ncb, nch, *k.stride(), *v.stride(), **meta)
    l2 = lambda: mod._wkv_fwd_chunk_kernel[(n,)](w, u, k, v, y, carry, T, C, ncb, nch, *k.stride(), *v.stride(), *y.stride(), **meta)
    return l1, l2
for T, C in shapes:
    for dtype in (torch.bfloat16, torch.float32):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        y = torch.empty_like(k)
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        for rnd in range(2):
            for name, mod in (("5fafe17", old), ("083609c", kt)):
                l1, l2 = launches(mod, w, u, k, v, y)
                l1(); l2(); torch.cuda.synchronize()
                for part, fn in (("launch 1", l1), ("launch 2", l2), ("both", lambda: (l1(), l2())), ("forward", lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=False))):
                    ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                    rows.append({"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "part": part, "round": rnd, "graph_us": ms * 1e3})
                    print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {name} {part:8s} round {rnd} {ms * 1e3:8.1f} us", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
