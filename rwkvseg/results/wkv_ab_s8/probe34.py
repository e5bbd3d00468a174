"""Session 8 probe 34: how fast can a launch read k and v (2N fp32 values) at T = 1024? Launch 1 of variant C reads
them at 1.5-2.25 TB/s (ab33). Loads-only kernels (the loaded values summed per program, so nothing is dropped),
each a CUDA graph, L2 flushed, median of reps:
  chunk      launch 1's shape: one-warp programs (b, 128-channel block, chunk of CT rows), sub-tiles (R, 128),
             NSTAGE-deep pipeline; channel blocks fastest in the program order (the package), or chunks fastest
  chunk3d    W warps a program, each warp its own chunk: (R, W, 128) sub-tiles (rows in registers, warps on chunks)
  flat       contiguous pieces of the flat tensors (the same bytes a program as `chunk`), one warp, (R * 128,) sub-tiles
  torch      k.sum() + v.sum(); torch.add(k, v) (reads 2N, writes N)."""
import importlib.util, json, statistics, sys, torch, triton, triton.language as tl
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")

@triton.jit
def chunk_kernel(k_ptr, v_ptr, out_ptr, T, C, NCB, NCH, CT: tl.constexpr, R: tl.constexpr, BC: tl.constexpr,
                 NSTAGE: tl.constexpr, CB_FASTEST: tl.constexpr):
    pid = tl.program_id(0)
    if CB_FASTEST:
        cb = pid % NCB; chunk = (pid // NCB) % NCH; b = pid // (NCB * NCH)
    else:
        chunk = pid % NCH; cb = (pid // NCH) % NCB; b = pid // (NCB * NCH)
    cs = cb * BC + tl.arange(0, BC)
    cmask = cs < C
    rows = (chunk * CT + tl.arange(0, R)).to(tl.int64)[:, None]
    base = b.to(tl.int64) * T * C + rows * C + cs[None, :]
    acc = tl.zeros((BC,), tl.float32)
    for s in tl.range(0, CT // R, num_stages=NSTAGE):
        off = base + s * R * C
        kk = tl.load(k_ptr + off, mask=cmask[None, :], other=0.0)
        vv = tl.load(v_ptr + off, mask=cmask[None, :], other=0.0)
        acc += tl.sum(kk * vv, axis=0)
    tl.store(out_ptr + pid * BC + tl.arange(0, BC), acc)

@triton.jit
def chunk3d_kernel(k_ptr, v_ptr, out_ptr, T, C, NCB, NG, CT: tl.constexpr, R: tl.constexpr, W: tl.constexpr,
                   BC: tl.constexpr, NSTAGE: tl.constexpr):
    pid = tl.program_id(0)
    cb = pid % NCB; g = (pid // NCB) % NG; b = pid // (NCB * NG)
    cs = cb * BC + tl.arange(0, BC)
    cmask = cs < C
    r = tl.arange(0, R)[:, None, None]
    wv = tl.arange(0, W)[None, :, None]
    rows = ((g * W + wv) * CT + r).to(tl.int64)
    base = b.to(tl.int64) * T * C + rows * C + cs[None, None, :]
    acc = tl.zeros((W, BC), tl.float32)
    for s in tl.range(0, CT // R, num_stages=NSTAGE):
        off = base + s * R * C
        kk = tl.load(k_ptr + off, mask=cmask[None, None, :], other=0.0)
        vv = tl.load(v_ptr + off, mask=cmask[None, None, :], other=0.0)
        acc += tl.sum(kk * vv, axis=0)
    tl.store(out_ptr + pid * BC + tl.arange(0, BC), tl.sum(acc, axis=0))

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

out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
B = 24
for T, C in shapes:
    k, v = torch.randn(2, B, T, C, device="cuda").unbind(0)
    nbytes = 2 * k.numel() * 4
    ncb = triton.cdiv(C, 128)
    variants = {}
    for nch in (8, 16, 32):
        ct = T // nch
        for ns in (2, 3, 4, 6):
            for cbf in (True, False):
                n = B * ncb * nch
                o = torch.empty(n * 128, device="cuda")
                variants[f"chunk nch={nch} R=4 ns={ns} {'cb' if cbf else 'chunk'}-fastest"] = (lambda n=n, o=o, ct=ct, ns=ns, cbf=cbf, nch=nch:
                    chunk_kernel[(n,)](k, v, o, T, C, ncb, nch, CT=ct, R=4, BC=128, NSTAGE=ns, CB_FASTEST=cbf, num_warps=1))
        for W in (2, 4):
            if nch % W == 0:
                n = B * ncb * (nch // W)
                o = torch.empty(n * 128, device="cuda")
                variants[f"chunk3d nch={nch} W={W} R=4 ns=3"] = (lambda n=n, o=o, ct=ct, W=W, nch=nch:
                    chunk3d_kernel[(n,)](k, v, o, T, C, ncb, nch // W, CT=ct, R=4, W=W, BC=128, NSTAGE=3, num_warps=W))
    N = k.numel()
    for piece, sub, nw in ((8192, 512, 1), (16384, 512, 1), (32768, 2048, 4), (65536, 2048, 4), (8192, 1024, 2)):
        for ns in (3, 4):
            n = triton.cdiv(N, piece)
            o = torch.empty(n * sub, device="cuda")
            variants[f"flat piece={piece} sub={sub} warps={nw} ns={ns}"] = (lambda n=n, o=o, piece=piece, sub=sub, nw=nw, ns=ns:
                flat_kernel[(n,)](k, v, o, N, PIECE=piece, SUB=sub, NSTAGE=ns, num_warps=nw))
    variants["torch k.sum() + v.sum()"] = lambda: (k.sum(), v.sum())
    variants["torch.add(k, v) (3N)"] = lambda: torch.add(k, v)
    for name, fn in variants.items():
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
        by = nbytes * (1.5 if "3N" in name else 1)
        rows.append({"T": T, "C": C, "variant": name, "us": ms * 1e3, "TBps": by / ms / 1e9})
        print(f"T={T} C={C} {name:48s} {ms * 1e3:7.1f} us {by / ms / 1e9:5.2f} TB/s", flush=True)
    json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
