"""Session 9 A/B 43: the package's forward (auto: the Gluon single-read kernel for 129 <= T <= 1024 on CUDA) against
variant C (single_impl="chunk") and the single pass, fp32 and bf16, B = 24, one-reference inputs; CUDA graph,
L2-flushed, median of reps, alternated, two rounds."""
import importlib.util, json, statistics, sys, torch
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt, wkv_gluon
out, reps = sys.argv[1], int(sys.argv[2])
bw = bench.copy_bandwidth("cuda")
res = {"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "torch": torch.__version__, "rows": []}
print(res["device"], f"copy {bw / 1e12:.3f} TB/s", flush=True)
for T in (129, 196, 256, 400, 784, 1024):
    for C in (288, 560, 960):
        for dt in (torch.float32, torch.bfloat16):
            torch.manual_seed(T + C)
            k, v = torch.randn(2, 24, T, C, device="cuda").to(dt).unbind(0)
            w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
            floor = 3 * k.numel() * k.element_size() / bw * 1e3
            variants = [("gluon", lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="gluon")),
                        ("chunk", lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="chunk"))]
            if T <= 256:
                variants.append(("scan", lambda: kt.wkv_forward(w, u, k, v, causal=False, single_impl="scan")))
            ref = variants[1][1]().float()
            for rnd in range(2):
                for name, fn in variants:
                    d = (fn().float() - ref).abs().max().item()
                    ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
                    res["rows"].append({"T": T, "C": C, "dtype": str(dt)[6:], "variant": name, "round": rnd,
                                        "graph_us": ms * 1e3, "pct_floor": 100 * floor / ms, "maxabs_vs_chunk": d})
                    print(f"T={T:5d} C={C:3d} {str(dt)[6:]:8s} {name:6s} r{rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:5.1f}%) diff {d:.1e}", flush=True)
            json.dump(res, open(out, "w"), indent=1)
res["gluon_failed"] = wkv_gluon._failed
json.dump(res, open(out, "w"), indent=1)
print("gluon failures:", wkv_gluon._failed)
