"""Session 8 A/B 32: variant C's chunk length beyond powers of two. The package picks 8, 16 or 32 chunks a sequence
(the most that still run in one wave); here every chunk length CT (a multiple of R = 4) whose programs still fit one
wave of launch 2 (12 one-warp programs an SM at 168 registers: 1584 on the H100) is tried near the top, T % CT != 0
allowed (masked rows in the last chunk). fp32 and bf16, CUDA graph, L2-flushed, median of reps, alternated, two rounds;
each output checked against the default's."""
import importlib.util, json, math, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
B, SLOTS = 24, 12 * torch.cuda.get_device_properties(0).multi_processor_count
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s, launch-2 slots {SLOTS}", flush=True)
def candidates(T, C):
    """The default chunk length, and those giving more chunks a sequence up to the most that fit one wave."""
    ncb = math.ceil(C / 128)
    default = kt._chunk_tile(T, B, C, kt._wave_slots(torch.device("cuda")))
    by_n = {}
    for ct in range(default[0], 31, -4):                    # shorter chunks, multiples of R = 4
        n = math.ceil(T / ct)
        if B * ncb * n <= SLOTS:
            by_n.setdefault(n, ct)                          # the longest CT giving n chunks
    ns = sorted(by_n)
    pick = {ns[0], ns[-1]} | set(ns[1:-1][len(ns[1:-1]) // 3::max(1, len(ns[1:-1]) // 3)][:2])
    return default, sorted(by_n[n] for n in pick)
rows = []
for T, C in shapes:
    default, cts = candidates(T, C)
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, B, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        ref = kt.wkv_forward(w, u, k, v, causal=False)
        for rnd in range(2):
            for ct in cts:
                tile = (ct,) + tuple(default[1:])
                fn = lambda tile=tile: kt.wkv_forward(w, u, k, v, causal=False, single_tile=tile)
                d = (fn().float() - ref.float()).abs().max().item()
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                nch = math.ceil(T / ct)
                row = {"T": T, "C": C, "dtype": str(dtype)[6:], "CT": ct, "chunks": nch, "items": B * math.ceil(C / 128) * nch,
                       "default": ct == default[0], "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms, "maxabs_vs_default": d}
                rows.append(row)
                print(f"T={T:5d} C={C:3d} {row['dtype']:8s} CT={ct:4d} chunks={nch:2d} items={row['items']:4d}{' (default)' if row['default'] else '          '} round {rnd} {ms * 1e3:8.1f} us ({row['pct']:.1f}%) diff {d:.1e}", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "slots": SLOTS, "rows": rows}, open(out, "w"), indent=1)
