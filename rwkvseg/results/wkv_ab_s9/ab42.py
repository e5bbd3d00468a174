"""Session 9 A/B 42 (experiment): the single-read Gluon forward (gluon_wkv.py) against the package's forward, fp32,
one-reference inputs (w ~ U(0,1)/T, u ~ N(0,1)/T). Errors against float64; CUDA graph, L2-flushed, median of reps,
alternated, two rounds, B = 24."""
import importlib.util, json, statistics, sys, traceback, torch
sys.path.insert(0, ".carry/s9")
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
from rwkvseg.wkv import wkv_torch_forward
import gluon_wkv as g
out, reps = sys.argv[1], int(sys.argv[2])
bw = bench.copy_bandwidth("cuda")
res = {"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "torch": torch.__version__, "errors": [], "rows": []}
print(res["device"], f"copy {bw / 1e12:.3f} TB/s", flush=True)
cfgs = [(8, 4, 8), (8, 4, 4), (8, 2, 8), (8, 8, 8)]
for T, C in [(1024, 288), (1024, 560), (784, 288), (1000, 100), (256, 560), (512, 960), (2048, 288)]:
    torch.manual_seed(T + C)
    k = torch.randn(2, T, C, device="cuda") * 2; v = torch.randn(2, T, C, device="cuda")
    w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
    ref = wkv_torch_forward(w.double(), u.double(), k.double(), v.double(), False)
    for bc, r, nw in cfgs[:1] + ([cfgs[1]] if T <= 1024 else []):
        try:
            y = g.forward(w, u, k, v, BC=bc, R=r, NW=nw)
            err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
        except Exception as e:
            err = repr(e)[:300]; traceback.print_exc()
        res["errors"].append({"T": T, "C": C, "cfg": [bc, r, nw], "rel_err": err})
        print("check", T, C, (bc, r, nw), err, flush=True)
json.dump(res, open(out, "w"), indent=1)
for T, C in [(1024, 288), (1024, 560), (1024, 960), (784, 288), (2048, 288)]:
    torch.manual_seed(T + C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w = torch.rand(C, device="cuda") / T; u = torch.randn(C, device="cuda") / T
    floor = 3 * k.numel() * 4 / bw * 1e3
    variants = [("package", lambda: kt.wkv_forward(w, u, k, v, causal=False))]
    variants += [(f"gluon {c}", (lambda c=c: g.forward(w, u, k, v, BC=c[0], R=c[1], NW=c[2]))) for c in cfgs
                 if T <= 1024 or c == cfgs[0]]
    ref = variants[0][1]()
    for rnd in range(2):
        for name, fn in variants:
            try:
                d = (fn() - ref).abs().max().item()
                ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
            except Exception as e:
                print(name, "failed", repr(e)[:300], flush=True); continue
            res["rows"].append({"T": T, "C": C, "variant": name, "round": rnd, "graph_us": ms * 1e3, "pct_floor": 100 * floor / ms,
                                "maxabs_vs_package": d})
            print(f"T={T:5d} C={C:3d} {name:18s} r{rnd} {ms * 1e3:8.1f} us ({100 * floor / ms:5.1f}%) diff {d:.1e}", flush=True)
    json.dump(res, open(out, "w"), indent=1)
print("done")
