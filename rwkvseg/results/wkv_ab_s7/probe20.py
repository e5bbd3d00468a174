"""Session 7 probe 20: how variant C's time at T = 1024 scales with C: whole 128-channel blocks (C = 256, 384, 512, 640)
against partial ones (288, 320, 448, 560, 576). fp32, B = 24, L2-flushed, CUDA graph, median of reps: the package's forward
and variant C's two launches alone."""
import importlib.util, json, statistics, sys, torch, triton
def load(name, path):
    s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); s.loader.exec_module(m); return m
bench = load("bench", "benchmarks/wkv.py")
from rwkvseg.kernels import wkv_triton as kt
out, reps, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bw = bench.copy_bandwidth("cuda")
print(f"{torch.cuda.get_device_name(0)} copy {bw / 1e12:.3f} TB/s", flush=True)
rows = []
for C in map(int, sys.argv[4].split(",")):
    torch.manual_seed(C)
    k, v = torch.randn(2, 24, T, C, device="cuda").unbind(0)
    w, u = torch.rand(C, device="cuda") / T, torch.randn(C, device="cuda") / T
    y = torch.empty_like(k)
    floor = 3 * k.numel() * 4 / bw * 1e3
    tile = kt._chunk_tile(T, 24, C, kt._wave_slots(k.device))
    r = {"T": T, "C": C, "blocks": triton.cdiv(C, 128), "channels_per_block_used": C / (128 * triton.cdiv(C, 128)), "tile": tile}
    for name, fn in (("forward", lambda: kt.wkv_forward(w, u, k, v, causal=False)), ("variant C only", lambda: kt._chunk_forward(w, u, k, v, y))):
        ms = statistics.median(bench.time_fn(bench.cuda_graph(fn), reps=reps, flush=True))
        r[name + "_us"] = ms * 1e3
        r[name + "_pct"] = 100 * floor / ms
    r["us_per_block_x_batch"] = r["variant C only_us"] / r["blocks"]
    rows.append(r)
    print(r, flush=True)
json.dump({"device": torch.cuda.get_device_name(0), "copy_TBps": bw / 1e12, "rows": rows}, open(out, "w"), indent=1)
