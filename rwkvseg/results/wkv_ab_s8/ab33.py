"""Session 8 A/B 33: launch 1 of variant C with its own sub-tile rows R1 and pipeline depth NS1 (the package gives
both launches R = 4, NSTAGE = 3). Launch 1 only reads (1.8 TB/s at 1024 x 288 in session 6's probe8, launch 2 with
its writes 2.3 TB/s), so it may want more bytes in flight a warp than launch 2. Each variant: the whole forward
(CUDA graph, L2-flushed) and launch 1 alone; output checked against the package's. fp32 and bf16."""
import importlib.util, json, statistics, sys, torch, triton
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
VARIANTS = [(4, 3), (8, 2), (8, 3), (8, 4), (4, 5), (16, 2), (16, 3)]
package_chunk_forward = kt._chunk_forward
STATE = {"r1": 4, "ns1": 3, "only1": False}
def chunk_forward(w, u, k, v, y, tile=None):
    B, T, C = k.shape
    ct, r, bc, nw, ns = tile or kt._chunk_tile(T, B, C, kt._wave_slots(k.device))
    ncb, nch = triton.cdiv(C, bc), triton.cdiv(T, ct)
    nchp = triton.next_power_of_2(nch)
    sums, carry = torch.empty((2, B * ncb, nchp, 5, bc), dtype=torch.float32, device=k.device)
    counters = kt._counters(B * ncb, k.device)
    n_items = B * ncb * nch
    meta = dict(CT=ct, BC=bc, NCHP=nchp, MASK_T=T % ct != 0, MASK_C=C % bc != 0, num_warps=nw)
    kt._wkv_fwd_sums_kernel[(n_items,)](w, u, k, v, sums, carry, counters, T, C, ncb, nch, *k.stride(), *v.stride(),
                                        R=STATE["r1"], NSTAGE=STATE["ns1"], **meta)
    if not STATE["only1"]:
        kt._wkv_fwd_chunk_kernel[(n_items,)](w, u, k, v, y, carry, T, C, ncb, nch, *k.stride(), *v.stride(), *y.stride(),
                                             R=r, NSTAGE=ns, **meta)
    return bc
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        kt._chunk_forward = package_chunk_forward
        ref = kt.wkv_forward(w, u, k, v, causal=False)
        kt._chunk_forward = chunk_forward
        y1 = torch.empty_like(k)
        for rnd in range(2):
            for r1, ns1 in VARIANTS:
                STATE.update(r1=r1, ns1=ns1, only1=False)
                fn = lambda: kt.wkv_forward(w, u, k, v, causal=False)
                d = (fn().float() - ref.float()).abs().max().item()
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                STATE["only1"] = True
                g1 = bench.cuda_graph(lambda: chunk_forward(w.float(), u.float(), k, v, y1))
                ms1 = statistics.median(bench.time_fn(g1, reps=reps, flush=True))
                row = {"T": T, "C": C, "dtype": str(dtype)[6:], "R1": r1, "NS1": ns1, "round": rnd, "graph_us": ms * 1e3,
                       "pct": 100 * floor / ms, "launch1_us": ms1 * 1e3, "launch1_TBps": 2 * k.numel() * k.element_size() / ms1 / 1e9,
                       "maxabs_vs_package": d}
                rows.append(row)
                print(f"T={T:5d} C={C:3d} {row['dtype']:8s} R1={r1:2d} NS1={ns1} round {rnd} fwd {ms * 1e3:7.1f} us ({row['pct']:.1f}%) launch 1 {ms1 * 1e3:6.1f} us ({row['launch1_TBps']:.2f} TB/s) diff {d:.1e}", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
regs = []
for kern in (kt._wkv_fwd_sums_kernel, kt._wkv_fwd_chunk_kernel):
    for dev, cache in kern.device_caches.items():
        for key, ck in cache[0].items():
            regs.append([kern.fn.__name__, str(key)[-160:], ck.n_regs, ck.n_spills])
            print(regs[-1], flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows, "registers": regs}, open(out, "w"), indent=1)
