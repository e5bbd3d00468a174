"""Session 8 probe 35: what the L2 flush costs the timed kernel. The benchmark flushes L2 between runs by writing
zeros to a 256 MB buffer (spec kernels.md §4; triton.testing.do_bench does the same): that leaves L2 full of dirty
lines, whose write-back to DRAM then happens during the timed kernel. Modes, each before every timed run:
  write       _FLUSH.zero_()                        (the benchmark's flush)
  read        a 256 MB buffer summed                 (L2 full of clean lines of an unrelated buffer)
  write+read  zero_(), then the sum of another 256 MB buffer (the zeros' write-back happens before the timing)
  hot         nothing
Kernels: the package's Bi-WKV forward, a loads-only kernel (2N read), torch.add(k, v) (2N read, N written),
y.copy_(k) (N + N); CUDA graphs, median of reps, modes alternated, two rounds."""
import importlib.util, json, statistics, sys, torch, triton, triton.language as tl
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt

@triton.jit
def flat_kernel(k_ptr, v_ptr, out_ptr, N, PIECE: tl.constexpr, SUB: tl.constexpr, NSTAGE: tl.constexpr):
    pid = tl.program_id(0)
    base = pid.to(tl.int64) * PIECE + tl.arange(0, SUB)
    acc = tl.zeros((SUB,), tl.float32)
    for s in tl.range(0, PIECE // SUB, num_stages=NSTAGE):
        off = base + s * SUB
        m = off < N
        acc += tl.load(k_ptr + off, mask=m, other=0.0) * tl.load(v_ptr + off, mask=m, other=0.0)
    tl.store(out_ptr + pid * SUB + tl.arange(0, SUB), acc)

A = torch.empty(64 * 2**20, dtype=torch.float32, device="cuda")
Bf = torch.ones(64 * 2**20, dtype=torch.float32, device="cuda")
acc = torch.empty((), device="cuda")
FLUSH = {"write": lambda: A.zero_(), "read": lambda: torch.sum(Bf, dim=0, out=acc),
         "write+read": lambda: (A.zero_(), torch.sum(Bf, dim=0, out=acc)), "hot": lambda: None}
def time_graph(g, flush, reps):
    for _ in range(3):
        g()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        flush()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); g(); e.record(); torch.cuda.synchronize()
        out.append(s.elapsed_time(e))
    return statistics.median(out)

out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for T, C in shapes:
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        N = k.numel(); es = k.element_size()
        y = torch.empty_like(k)
        o = torch.empty(triton.cdiv(N, 8192) * 512, device="cuda")
        kernels = {"bi_wkv forward": (lambda: kt.wkv_forward(w, u, k, v, causal=False), 3 * N * es),
                   "torch.add(k, v)": (lambda: torch.add(k, v), 3 * N * es),
                   "y.copy_(k)": (lambda: y.copy_(k), 2 * N * es)}
        if dtype == torch.float32:
            kernels["loads only (2N)"] = (lambda: flat_kernel[(triton.cdiv(N, 8192),)](k, v, o, N, PIECE=8192, SUB=512, NSTAGE=3, num_warps=1), 2 * N * es)
        graphs = {name: bench.cuda_graph(fn) for name, (fn, _) in kernels.items()}
        for rnd in range(2):
            for name, g in graphs.items():
                for mode, fl in FLUSH.items():
                    ms = time_graph(g, fl, reps)
                    nbytes = kernels[name][1]
                    row = {"T": T, "C": C, "dtype": str(dtype)[6:], "kernel": name, "flush": mode, "round": rnd, "us": ms * 1e3,
                           "TBps": nbytes / ms / 1e9, "pct_floor": 100 * nbytes / bw / (ms * 1e-3)}
                    rows.append(row)
                    print(f"T={T:5d} C={C:3d} {row['dtype']:8s} {name:16s} flush {mode:10s} round {rnd} {ms * 1e3:8.1f} us {row['TBps']:5.2f} TB/s ({row['pct_floor']:.1f}% of floor)", flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
