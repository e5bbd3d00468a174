"""Session 8 A/B 31: programmatic dependent launch (PDL) in the one-reference Bi-WKV forward. "serial": every
launch waits for the one before (kt.USE_PDL = False, as at 4e6d3b9); "pdl": launch 2 of variant C and the tiled
kernel's launch are dependents (griddepcontrol), scheduled while the launch before drains. Checks: PDL's outputs
equal serial's bit for bit, eager and in a CUDA graph, on the benchmark's inputs and on inputs whose wide decays
make the tiled kernel do real work (all blocks, or all but the first); NaN-poisoned outputs; error against the
torch path. Timing: CUDA graph, L2-flushed, median of reps, the two alternated, two rounds; eager once."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg import wkv as W
kt.POISON_OUTPUTS = True
out, reps = sys.argv[1], int(sys.argv[2])
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s triton {__import__('triton').__version__} torch {torch.__version__}", flush=True)
checks, rows = [], []
def outputs(pdl, w, u, k, v):
    """(graph output, eager output) of the forward with or without PDL; NaN-filled buffers before each."""
    kt.USE_PDL = pdl
    buf = torch.full_like(k, float("nan"))
    g = bench.cuda_graph(lambda: buf.copy_(kt.wkv_forward(w, u, k, v, causal=False)))
    buf.fill_(float("nan")); g(); torch.cuda.synchronize()
    return buf.clone(), kt.wkv_forward(w, u, k, v, causal=False)
def check(label, T, C, dtype, w, u, k, v):
    (gs, es), (gp, ep) = outputs(False, w, u, k, v), outputs(True, w, u, k, v)
    c = {"T": T, "C": C, "dtype": str(dtype)[6:], "inputs": label,
         "pdl_vs_serial_graph": (gp.float() - gs.float()).abs().max().item(), "pdl_vs_serial_eager": (ep.float() - es.float()).abs().max().item(),
         "graph_vs_eager": (gp.float() - ep.float()).abs().max().item(), "nan": bool(torch.isnan(gp).any() or torch.isnan(ep).any()),
         "rel_vs_torch": bench.rel(ep.float(), W.bi_wkv(w, u, k.float(), v.float(), backend="torch"))}
    checks.append(c); print(c, flush=True)
# correctness: wide decays (the tiled kernel does the work), mixed blocks, eager and graph
for T, C in [(256, 560), (1024, 288), (1024, 960), (4096, 560)]:
    for mode in ("all wide", "first block narrow"):
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(7 * T + C)
            k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
            w = torch.rand(C, device="cuda") * 5 / T
            if mode == "first block narrow":
                w[:128] = torch.rand(128, device="cuda") / T
            check(mode, T, C, dtype, w, torch.randn(C, device="cuda") / T, k, v)
# the benchmark's inputs: check, then time
for T, C in shapes:
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(T + C)
        k, v = torch.randn(2, 24, T, C, device="cuda").to(dtype).unbind(0)
        w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
        floor = 3 * k.numel() * k.element_size() / bw * 1e3
        check("benchmark", T, C, dtype, w, u, k, v)
        for rnd in range(2):
            for pdl in (False, True):
                kt.USE_PDL = pdl
                fn = lambda: kt.wkv_forward(w, u, k, v, causal=False)
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                row = {"T": T, "C": C, "dtype": str(dtype)[6:], "variant": "pdl" if pdl else "serial", "round": rnd, "graph_us": ms * 1e3, "pct": 100 * floor / ms}
                if rnd == 1:
                    row["eager_us"] = 1e3 * statistics.median(bench.time_fn(fn, reps=reps, flush=True))
                rows.append(row)
                print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {row['variant']:6s} round {rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:.1f}%)" + (f" eager {row['eager_us']:.1f} us" if rnd else ""), flush=True)
        json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "checks": checks, "rows": rows}, open(out, "w"), indent=1)
