"""Session 9 A/B 39: channels marked contiguous in runs of 4 (_channels) against HEAD (wkv_old.py): bf16 (and fp32
as a control: its PTX is unchanged) Bi-WKV forward and forward + backward, the causal WKV, wide decays; CUDA graph,
L2-flushed, median of reps, alternated, two rounds; errors of both against the float64 torch path; registers."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg.wkv import wkv_torch_forward, wkv_torch_backward
mods = [("HEAD", load("wkv_old", ".carry/s9/wkv_old.py")), ("vec4", kt)]
out, reps = sys.argv[1], int(sys.argv[2])
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
res = {"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "torch": torch.__version__, "errors": [], "rows": []}

def rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()

# 1. errors against float64 (B = 2), both versions, bf16 and fp32, Bi-WKV (narrow and wide decays) and causal
for T, C in [(64, 96), (256, 288), (1024, 560), (4096, 288)]:
    for dtype in (torch.bfloat16, torch.float32):
        for case in ("bi", "bi_wide", "causal"):
            torch.manual_seed(T * 7 + C)
            k = (torch.randn(2, T, C, device="cuda") * 2).to(dtype); v = torch.randn(2, T, C, device="cuda").to(dtype)
            g = torch.randn(2, T, C, device="cuda").to(dtype)
            w = torch.rand(C, device="cuda") / T * (5 if case == "bi_wide" else 1); u = torch.randn(C, device="cuda") / T
            causal = case == "causal"
            d = [t.double() for t in (w, u, k, v, g)]
            y_r = wkv_torch_forward(*d[:4], causal); grads_r = wkv_torch_backward(*d, causal)
            for name, mod in mods:
                y = mod.wkv_forward(w, u, k, v, causal=causal); grads = mod.wkv_backward(w, u, k, v, g, causal=causal)
                e = {"y": rel(y, y_r), **{n: rel(a, b) for n, a, b in zip(("dw", "du", "dk", "dv"), grads, grads_r)}}
                res["errors"].append({"T": T, "C": C, "dtype": str(dtype)[6:], "case": case, "variant": name, **e})
                print(T, C, str(dtype)[6:], case, name, " ".join(f"{a} {b:.1e}" for a, b in e.items()), flush=True)

# 2. timings, B = 24
shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[3].split(","))]
extra = [(int(a), int(b)) for a, b in (s.split("x") for s in sys.argv[4].split(","))] if len(sys.argv) > 4 else []
for T, C in shapes + extra:
    cases = ["bi"] if (T, C) in shapes else []
    if (T, C) in extra:
        cases += ["causal", "bi_wide"]
    for dtype in (torch.bfloat16, torch.float32):
        if dtype == torch.float32 and T not in (1024,):
            continue                                             # fp32 control at T = 1024 only
        torch.manual_seed(T + C)
        k, v, g = torch.randn(3, 24, T, C, device="cuda").to(dtype).unbind(0)
        for case in cases:
            w = torch.rand(C, device="cuda") / T * (5 if case == "bi_wide" else 1); u = torch.randn(C, device="cuda") / T
            causal = case == "causal"
            es = k.element_size(); N = k.numel()
            for what, floor in (("fwd", 3 * N * es / bw * 1e3), ("fwdbwd", 8 * N * es / bw * 1e3)):
                for rnd in range(2):
                    for name, mod in mods:
                        if what == "fwd":
                            fn = lambda mod=mod: mod.wkv_forward(w, u, k, v, causal=causal)
                        else:
                            fn = lambda mod=mod: (mod.wkv_forward(w, u, k, v, causal=causal), mod.wkv_backward(w, u, k, v, g, causal=causal))
                        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                        res["rows"].append({"T": T, "C": C, "dtype": str(dtype)[6:], "case": case, "what": what, "variant": name,
                                            "round": rnd, "graph_us": ms * 1e3, "pct_floor": 100 * floor / ms})
                        print(f"T={T:5d} C={C:3d} {str(dtype)[6:]:8s} {case:7s} {what:6s} {name:5s} r{rnd} {ms * 1e3:9.1f} us ({100 * floor / ms:5.1f}%)", flush=True)
            json.dump(res, open(out, "w"), indent=1)
regs = []
for name, mod in mods:
    for kname in ("_wkv_fwd_sums_kernel", "_wkv_fwd_chunk_kernel", "_wkv_bwd_qsums_kernel", "_wkv_bwd_chunk_kernel", "_wkv_fwd_single_kernel"):
        for dev, cache in getattr(mod, kname).device_caches.items():
            for key, ck in cache[0].items():
                regs.append([name, kname, "bf16" if "bf16" in str(key) else "fp32", ck.n_regs, ck.n_spills])
res["registers"] = regs
for r in regs: print(r)
json.dump(res, open(out, "w"), indent=1)
