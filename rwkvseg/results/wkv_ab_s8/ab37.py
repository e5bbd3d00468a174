"""Session 8 A/B 37: the chunked backward's sub-tile rows for launch 2 (R2) and launch 3 (R3) (launch 3 spills at
R = 4: 255 registers, 38 spilled in fp32, 74 in bf16), and where the chunked backward starts to pay: tiled against
chunked at T = 64, 196, 256, 784 (RWKV-UNet's stage III and IV calls at 224 x 224 are 784 x 288 and 196 x 560).
CUDA graph, L2-flushed, median of reps, alternated, two rounds; the result checked against the tiled backward."""
import importlib.util, json, statistics, sys, torch, triton
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
STATE = {"r2": 4, "r3": 4}
def chunk_backward(w, u, k, v, gy, dk, dv, tile=None):
    B, T, C = k.shape
    ct, r, bc, nw, ns = tile or kt._chunk_tile(T, B, C, kt._wave_slots(k.device))
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums, carry, qsums, qcarry = torch.empty((4, B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    counters = kt._counters(B * ncb, k.device)
    n = B * ncb * nch
    dw_part, du_part = torch.empty((2, B, nch, ncb * bc), dtype=torch.float32, device=k.device)
    meta = dict(CT=ct, BC=bc, NCHP=nchp, NSTAGE=ns, MASK_T=T % ct != 0, MASK_C=C % bc != 0, num_warps=nw)
    kt._wkv_fwd_sums_kernel[(n,)](w, u, k, v, sums, carry, counters, T, C, ncb, nch, *k.stride(), *v.stride(), R=r, **meta)
    kt._wkv_bwd_qsums_kernel[(n,)](w, u, k, v, gy, carry, qsums, qcarry, counters, T, C, ncb, nch, *k.stride(),
                                   *v.stride(), *gy.stride(), R=STATE["r2"], **meta)
    kt._wkv_bwd_chunk_kernel[(n,)](w, u, k, v, gy, dk, dv, dw_part, du_part, carry, qcarry, T, C, ncb, nch,
                                   *k.stride(), *v.stride(), *gy.stride(), *dk.stride(), R=STATE["r3"], **meta)
    return bc, dw_part.sum((0, 1))[:C], du_part.sum((0, 1))[:C]
kt._chunk_backward = chunk_backward
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
def run(T, C, dtype, variants):
    torch.manual_seed(T + C)
    k, v, gy = torch.randn(3, 24, T, C, device="cuda").to(dtype).unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    floor = 5 * k.numel() * k.element_size() / bw * 1e3
    ref = kt.wkv_backward(w, u, k, v, gy, causal=False, single_impl="none")
    for rnd in range(2):
        for name, (impl, r2, r3) in variants.items():
            STATE.update(r2=r2, r3=r3)
            fn = lambda impl=impl: kt.wkv_backward(w, u, k, v, gy, causal=False, single_impl=impl)
            got = fn()
            diff = max(((a.float() - b.float()).norm() / b.float().norm()).item() for a, b in zip(got, ref))
            ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            row = {"T": T, "C": C, "dtype": str(dtype)[6:], "variant": name, "round": rnd, "graph_us": ms * 1e3,
                   "pct_5N": 100 * floor / ms, "rel_diff_vs_tiled": diff}
            rows.append(row)
            print(f"T={T:5d} C={C:3d} {row['dtype']:8s} {name:18s} round {rnd} bwd {ms * 1e3:8.1f} us ({row['pct_5N']:.1f}% of 5N) diff {diff:.1e}", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
rv = {"chunked R2=4 R3=4": ("chunk", 4, 4), "chunked R2=4 R3=2": ("chunk", 4, 2), "chunked R2=2 R3=2": ("chunk", 2, 2)}
for T, C in ((1024, 288), (1024, 560), (4096, 288), (16384, 560)):
    for dtype in (torch.float32, torch.bfloat16):
        run(T, C, dtype, rv)
tv = {"tiled": ("none", 4, 4), "chunked R2=4 R3=4": ("chunk", 4, 4), "chunked R2=4 R3=2": ("chunk", 4, 2)}
for T, C in ((64, 960), (196, 560), (256, 560), (784, 288)):
    for dtype in (torch.float32, torch.bfloat16):
        run(T, C, dtype, tv)
regs = []
for kern in (kt._wkv_bwd_qsums_kernel, kt._wkv_bwd_chunk_kernel):
    for dev, cache in kern.device_caches.items():
        for key, ck in cache[0].items():
            regs.append([kern.fn.__name__, str(key)[-150:], ck.n_regs, ck.n_spills]); print(regs[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
