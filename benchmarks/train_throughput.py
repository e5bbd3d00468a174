"""Speed of a model's training step and forward pass, and where the step's GPU time goes.

    python benchmarks/train_throughput.py --model rwkv_unet_t --out rwkvseg/results/train_throughput/rwkv_unet_t.json
    python benchmarks/train_throughput.py --quick          # CPU smoke test (tiny model, 64x64, 2 steps)
    python benchmarks/train_throughput.py --merge run1.json run2.json run3.json --out x.json

For one model at --size x --size, batch --batch, bf16 autocast and channels_last (CUDA), eager and
torch.compile (default mode), each in a fresh process with empty Triton and Inductor caches
(--caches warm keeps the machine's caches), the record gives per variant:

- img_per_s: training images per second, batch / median step time over --steps CUDA-synchronised
  steps after --warmup steps. One step = rwkvseg.engine.train_step, the engine's step: forward
  under bf16 autocast, the 0.5 BCE + 1.0 Dice loss in float32 (compiled with the model in the
  compiled variant), backward, AdamW (rwkvseg.engine.make_optimizer: fused on CUDA), on a
  batch that already sits on the device (the engine keeps the data on the GPU);
- with --cuda-graph, the training step runs as rwkvseg.engine.GraphedStep (eager steps, then one
  captured step replayed; the same arithmetic) and the forward pass replays a graph too;
- inference: forward only (eval mode, no grad, bf16 autocast), the same batch: img/s over the
  median call, the first call's seconds (the compiled variant compiles its inference graph there)
  and the peak memory;
- time_to_first_step_s: wall time from building the model to the end of the first optimizer
  step (synchronised): the model's construction, cuDNN's choice of algorithms (by heuristics, as
  the engine; --cudnn benchmark times them at each new shape instead, to weigh that search's seconds
  against the algorithms it finds), Triton's compilation of the WKV kernels
  and, compiled, Dynamo + Inductor (compile_times: Dynamo's own account); cuda_init_s (the CUDA
  context) comes before it;
- peak_memory_gib: torch.cuda.max_memory_allocated over the timed training steps (with --cuda-graph, since
  the model's construction: the graph's memory is allocated when it is captured);
- kernels: --profile-steps steps under torch.profiler (CUDA kernels only), each kernel's time
  summed by kind, in ms per step and in % of the total kernel time, with launches per step;
  gpu_busy_pct = kernel time / median step time (far under 100 %: the host, not the GPU, sets
  the pace); the largest kernels with their kind.

Kernel kinds (KERNEL_KINDS): the first pattern that matches a kernel's name (regular expression,
case-insensitive) gives its kind.

    | kind                | matches                                                          |
    |---------------------|------------------------------------------------------------------|
    | wkv                 | our WKV kernels (rwkvseg.kernels: ``*_kernel`` by name), ``wkv``  |
    | optimizer           | AdamW: multi_tensor_apply (foreach), fused Adam kernels          |
    | normalisation       | batch_norm, layer_norm, group_norm, GammaBeta, welford, cuDNN bn_ |
    | resampling          | upsample / bilinear / ``_unsafe_index`` (Inductor's bilinear), pooling |
    | scan_gathers_index  | gather, scatter, index_select, index_put, indexFunc (index_add)   |
    | depthwise_conv      | cuDNN grouped_direct and c1_k1 kernels, PyTorch's conv_depthwise  |
    | copies_layout       | copies and casts (copy_, _to_copy, clone, cat), layout transforms (nchwToNhwc, tensorTransform), Memcpy / Memset |
    | dense_conv_gemm     | cuDNN / cuBLAS / CUTLASS convolution and matrix kernels (xmma, gemm, nvjet, implicit, wgrad, dgrad), Inductor's templates (triton_tem) |
    | elementwise         | the rest of ATen's element-wise and reduction kernels; Inductor's fused pointwise / reduction kernels (triton_poi / triton_red / triton_per) |
    | other               | anything else (listed in kernels.other_top)                       |

A kernel that Inductor fused from several ops carries their names (``triton_red_fused__native_
batch_norm_legit_functional_relu_...``) and counts for the first kind in the table whose pattern
it matches: compiled shares are "kernels that contain a norm", not the norm's own cost.
Inductor's pointwise / reduction kernels never count as convolutions even when their name holds
``convolution_backward`` (the bias gradient's sum).

Steps of one process vary by 5-12 % between separate runs on the same GPU, so a
committed record merges several: per setting, the run with the median img/s (one that happened, not an average),
with every run's img/s, inference img/s and time to first step beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch._inductor.runtime.cache_dir_utils import cache_dir

from rwkvseg.losses import binary_bce_dice
from rwkvseg.models import create_model
from rwkvseg.engine import GraphedStep, graph_replay, make_optimizer, train_step
from rwkvseg.env import provenance

KERNEL_KINDS: tuple[tuple[str, str], ...] = (
    ("wkv", r"wkv|^(?:gluon_forward|chunk_(?:summaries|forward|q_summaries|backward)|single_pass_forward|"
            r"tiled_(?:forward|backward))_kernel"),
    ("optimizer", r"multi_tensor_apply|fused_adam|fusedadam|adamw?_|_foreach_"),
    ("normalisation", r"batch_norm|layer_norm|group_norm|batchnorm|layernorm|gammabeta|welford|bn_fw_|bn_bw_"
                      r"|rowwisemoments"),
    ("resampling", r"upsample|interpolat|bilinear|_unsafe_index|grid_sampler|pool"),
    ("scan_gathers_index", r"gather|scatter|index_select|indexselect|index_put|indexfunc|index_add|_index_|"
                           r"triton_\w*_index"),
    ("depthwise_conv", r"grouped_direct|c1_k1|depthwise"),
    ("copies_layout", r"copy|clone|cat_|catarray|_cat|transpose|permute|nchwtonhwc|nhwctonchw|tensortransform|"
                      r"memcpy|memset|contiguous"),
    ("dense_conv_gemm", r"^(?!triton_(?:poi|red|per)_)(?:.*(?:conv|gemm|xmma|cutlass|cublas|nvjet|sm\d\d_|wgrad|"
                        r"dgrad|fprop|implicit|splitk|gemv|triton_tem))"),
    ("elementwise", r"elementwise|vectorized|unrolled|reduce|triton_|fill|softmax|sigmoid|silu|gelu|relu|"
                    r"bernoulli|distribution|dropout|where|sum|mean"),
)
KINDS = tuple(k for k, _ in KERNEL_KINDS) + ("other",)
_KIND_RES = tuple((kind, re.compile(pat, re.IGNORECASE)) for kind, pat in KERNEL_KINDS)


def kernel_kind(name: str) -> str:
    """The kind of a CUDA kernel by its name: the first matching pattern of KERNEL_KINDS, else 'other'."""
    for kind, pattern in _KIND_RES:
        if pattern.search(name):
            return kind
    return "other"


def kernel_breakdown(kernels: list[tuple[str, float]], steps: int, step_ms: float | None, top: int = 25) -> dict:
    """Kernel time by kind from (name, microseconds) pairs recorded over `steps` steps: ms per step,
    % of the total kernel time, launches per step; the `top` largest kernels and the largest 'other' ones."""
    per_name: dict[str, list[float]] = {}
    for name, us in kernels:
        acc = per_name.setdefault(name, [0.0, 0])
        acc[0] += us
        acc[1] += 1
    total_us = sum(us for us, _ in per_name.values()) or 1.0
    by_kind = {k: {"ms_per_step": 0.0, "share_pct": 0.0, "launches_per_step": 0.0} for k in KINDS}
    rows = []
    for name, (us, n) in per_name.items():
        kind = kernel_kind(name)
        by_kind[kind]["ms_per_step"] += us / 1e3 / steps
        by_kind[kind]["launches_per_step"] += n / steps
        rows.append({"name": name, "kind": kind, "ms_per_step": us / 1e3 / steps, "launches_per_step": n / steps,
                     "share_pct": 100 * us / total_us})
    for k in KINDS:
        by_kind[k]["share_pct"] = 100 * by_kind[k]["ms_per_step"] * 1e3 * steps / total_us
    rows.sort(key=lambda r: -r["ms_per_step"])
    total_ms = total_us / 1e3 / steps
    return {"steps_profiled": steps, "total_ms_per_step": total_ms,
            "launches_per_step": sum(n for _, n in per_name.values()) / steps,
            "gpu_busy_pct": 100 * total_ms / step_ms if step_ms else None,
            "by_kind": by_kind, "top": rows[:top], "other_top": [r for r in rows if r["kind"] == "other"][:10]}


def resort_kinds(breakdown: dict) -> dict:
    """A kernel breakdown with its listed kernels (top, other_top) sorted again by today's KERNEL_KINDS,
    for a record written before a pattern changed: exact for the kernels the lists hold, and so for the
    kind 'other' as long as other_top lists all of its kernels (check the result)."""
    b = json.loads(json.dumps(breakdown))
    moved = set()
    for r in b["top"] + b["other_top"]:
        new = kernel_kind(r["name"])
        if new != r["kind"] and r["name"] not in moved:
            for kind, sign in ((r["kind"], -1), (new, 1)):
                for field in ("ms_per_step", "launches_per_step", "share_pct"):
                    b["by_kind"][kind][field] += sign * r[field]
            moved.add(r["name"])
        r["kind"] = new
    b["other_top"] = [r for r in b["other_top"] if r["kind"] == "other"]
    return b


def profile_kernels(fn, steps: int) -> list[tuple[str, float]]:
    """(kernel name, microseconds) of every CUDA kernel, copy and memset that `steps` calls of fn launch
    (not the GPU-side spans of annotations such as ``Optimizer.step#AdamW.step``, which cover kernels)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return [(e.name, e.time_range.elapsed_us()) for e in prof.events()
            if e.device_type == DeviceType.CUDA and not e.is_user_annotation]  # annotations span kernels


def kernel_table(breakdown: dict, title: str) -> str:
    """A plain-text table of a kernel breakdown: by kind, then the largest kernels."""
    lines = [title, f"{breakdown['total_ms_per_step']:.2f} ms of kernels a step, "
             f"{breakdown['launches_per_step']:.0f} launches a step, GPU busy "
             f"{breakdown['gpu_busy_pct'] or 0:.0f} % of the median step", "",
             f"{'kind':<20} {'ms/step':>9} {'%':>6} {'launches':>9}"]
    for k, v in sorted(breakdown["by_kind"].items(), key=lambda kv: -kv[1]["ms_per_step"]):
        lines.append(f"{k:<20} {v['ms_per_step']:9.2f} {v['share_pct']:6.1f} {v['launches_per_step']:9.0f}")
    lines += ["", f"{'ms/step':>9} {'%':>6} {'calls':>6}  {'kind':<19} kernel"]
    for r in breakdown["top"]:
        lines.append(f"{r['ms_per_step']:9.3f} {r['share_pct']:6.2f} {r['launches_per_step']:6.0f}  {r['kind']:<19} "
                     f"{r['name'][:160]}")
    return "\n".join(lines) + "\n"


def cache_entries() -> dict:
    """How many entries the Triton and Inductor caches hold (0 and 0: a cold start)."""
    triton_dir = Path(os.environ.get("TRITON_CACHE_DIR", Path.home() / ".triton" / "cache"))
    count = lambda p: len(list(p.iterdir())) if p.is_dir() else 0  # noqa: E731
    return {"triton": count(triton_dir), "inductor": count(Path(cache_dir()))}


def timed(fn, n: int, sync: bool) -> list[float]:
    """Seconds of each of n calls of fn, synchronised on CUDA."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def bench(model_name: str, *, size: int, batch: int, steps: int, warmup: int, bf16: bool, channels_last: bool,
          compile: bool, device: torch.device, profile_steps: int = 3, profile: str | None = None,
          cuda_graph: bool = False, cudnn_benchmark: bool = False) -> dict:
    """One variant (eager or compiled, each optionally replayed from CUDA graphs) of one model: training
    and inference speed, time to first step, peak memory, kernel time by kind."""
    on_cuda = device.type == "cuda"
    caches = cache_entries() if on_cuda else None
    t = time.perf_counter()
    if on_cuda:
        torch.zeros(1, device=device)                   # the CUDA context, before the clock starts
    cuda_init_s = time.perf_counter() - t
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = cudnn_benchmark   # False, as rwkvseg.engine: cuDNN's heuristics
    x = torch.rand(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    bf16 = bf16 and on_cuda
    channels_last = channels_last and on_cuda

    t_build = time.perf_counter()
    model = create_model(model_name, in_chans=3, num_classes=1).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cuda_graph = cuda_graph and on_cuda
    opt = make_optimizer(model, lr=1e-4, weight_decay=1e-4, capturable=cuda_graph)
    step_model = torch.compile(model) if compile else model
    loss_fn = torch.compile(binary_bce_dice) if compile else binary_bce_dice   # as rwkvseg.engine.prepare

    step = (GraphedStep(step_model, opt, loss_fn, bf16=bf16, channels_last=channels_last) if cuda_graph
            else partial(train_step, step_model, opt, loss_fn, bf16=bf16, channels_last=channels_last))

    def one_step():                                      # the engine's own step, at a constant learning rate
        return step(x, y, lr=1e-4)

    one_step()
    if on_cuda:
        torch.cuda.synchronize()
    first_step_s = time.perf_counter() - t_build
    compile_times = ({k: float(v) for k, v in zip(*torch._dynamo.utils.compile_times(repr="csv", aggregate=True))}
                     if compile else None)

    t = time.perf_counter()
    for _ in range(warmup - 1):
        one_step()
    if on_cuda:
        torch.cuda.synchronize()
        if not cuda_graph:                               # a graph's memory was allocated at its capture, in the warm-up
            torch.cuda.reset_peak_memory_stats(device)
    warm_s = first_step_s + time.perf_counter() - t
    times = timed(one_step, steps, on_cuda)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None
    print(f"{model_name} compile={compile} cuda_graph={cuda_graph}: first step {first_step_s:.1f} s, "
          f"median step {1e3 * med:.1f} ms, {batch / med:.0f} img/s, peak {peak or 0:.2f} GiB", flush=True)

    kernels = None
    if on_cuda and profile_steps > 0:
        kernels = kernel_breakdown(profile_kernels(one_step, profile_steps), profile_steps, 1e3 * med)
        shares = ", ".join(f"{k} {v['share_pct']:.0f}%" for k, v in
                           sorted(kernels["by_kind"].items(), key=lambda kv: -kv[1]["share_pct"]) if v["share_pct"] >= 1)
        print(f"  kernels {kernels['total_ms_per_step']:.1f} ms/step ({kernels['gpu_busy_pct']:.0f} % busy, "
              f"{kernels['launches_per_step']:.0f} launches): {shares}", flush=True)
        if profile:
            Path(profile).parent.mkdir(parents=True, exist_ok=True)
            Path(profile).write_text(kernel_table(kernels, f"{model_name} {size}^2 batch {batch} "
                                                  f"{'compiled' if compile else 'eager'}, {profile_steps} profiled steps"))

    model.eval()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x

    @torch.no_grad()
    def infer():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            step_model(xi)

    first_infer_s = timed(infer, 1, on_cuda)[0]
    timed(infer, max(warmup - 1, 0), on_cuda)
    if cuda_graph:
        infer = graph_replay(infer)
        timed(infer, 3, on_cuda)
    infer_times = timed(infer, steps, on_cuda)
    infer_med = statistics.median(infer_times)
    inference = {"img_per_s": batch / infer_med, "median_ms": 1e3 * infer_med, "first_call_s": first_infer_s,
                 "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None}
    print(f"  inference {batch / infer_med:.0f} img/s ({1e3 * infer_med:.1f} ms), first call {first_infer_s:.1f} s",
          flush=True)
    return {"model": model_name, "size": size, "batch": batch, "bf16": bf16, "channels_last": channels_last,
            "compile": compile, "cuda_graph": cuda_graph, "cudnn_benchmark": cudnn_benchmark, "steps": steps,
            "warmup": warmup, "warmup_s": warm_s,
            "median_step_ms": 1e3 * med,
            "img_per_s": batch / med, "min_step_ms": 1e3 * min(times), "peak_memory_gib": peak,
            "time_to_first_step_s": first_step_s, "cuda_init_s": cuda_init_s,
            "caches_at_start": caches, "compile_times": compile_times,
            "inference": inference, "kernels": kernels, "params": sum(p.numel() for p in model.parameters())}


def merge(records: list[dict], names: list[str]) -> dict:
    """One record from several runs of the same settings: per setting, the run with the median img/s (the lower
    middle one for an even count), plus every run's img/s, inference img/s and time to first step, and each
    run's provenance."""
    by_setting: dict = {}
    for rec in records:
        for r in rec["results"]:
            key = (r["model"], r["size"], r["batch"], r["bf16"], r["channels_last"], r["compile"],
                   r.get("cuda_graph"), r.get("cudnn_benchmark", True))
            by_setting.setdefault(key, []).append(r)
    rows = []
    for runs in by_setting.values():
        speeds = sorted(r["img_per_s"] for r in runs)
        pick = next(r for r in runs if r["img_per_s"] == statistics.median_low(speeds))
        extra = {"runs_img_per_s": speeds}
        if all(r.get("inference") for r in runs):
            extra["runs_inference_img_per_s"] = sorted(r["inference"]["img_per_s"] for r in runs)
        if all(r.get("time_to_first_step_s") is not None for r in runs):
            extra["runs_time_to_first_step_s"] = sorted(r["time_to_first_step_s"] for r in runs)
        rows.append({**pick, **extra})
    return {"results": rows, "merged_from": [{"file": Path(n).name, **rec["provenance"]} for n, rec in zip(names, records)],
            "provenance": records[-1]["provenance"]}


def run_variant_in_child(a, compiled: bool, out: Path) -> dict:
    """One variant in a fresh Python process (cold cuDNN, Dynamo and, with --caches cold, Triton / Inductor
    caches), so that its time to first step is what a new training run pays."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--model", a.model, "--size", str(a.size),
           "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--profile-steps", str(a.profile_steps), "--compile", "on" if compiled else "off", "--out", str(out),
           "--in-process", "--cudnn", a.cudnn]
    cmd += (["--no-bf16"] * a.no_bf16 + ["--no-channels-last"] * a.no_channels_last
            + ["--cuda-graph"] * a.cuda_graph)
    if a.profile:
        cmd += ["--profile", a.profile]
    env = dict(os.environ)
    if a.caches == "cold":
        env["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton_")
        env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_")
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())["results"][0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rwkv_unet_t")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--profile-steps", type=int, default=3, help="steps under torch.profiler (0: none)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--compile", choices=("both", "on", "off"), default="both",
                    help="both: eager and compiled, each in its own process (CUDA)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="replay each training step and forward pass from a CUDA graph (rwkvseg.engine.GraphedStep)")
    ap.add_argument("--cudnn", choices=("benchmark", "heuristics"), default="heuristics",
                    help="heuristics: cuDNN picks its algorithms without timing them (as the engine); "
                         "benchmark: it times them at each new shape")
    ap.add_argument("--caches", choices=("cold", "warm"), default="cold",
                    help="cold: each variant's process starts with empty Triton and Inductor caches")
    ap.add_argument("--quick", action="store_true", help="CPU smoke test: tiny model, 64x64, 2 steps")
    ap.add_argument("--out", default=None, help="write the JSON here")
    ap.add_argument("--profile", default=None,
                    help="also write the kernel table as text to PREFIX_{eager,compiled}.txt (CUDA)")
    ap.add_argument("--merge", nargs="+", default=None, help="merge these records of separate runs into --out")
    ap.add_argument("--in-process", action="store_true", help="run the variants in this process (CPU: always)")
    a = ap.parse_args(argv)
    if a.merge:
        records = [json.loads(Path(f).read_text()) for f in a.merge]
        Path(a.out).write_text(json.dumps(merge(records, a.merge), indent=1))
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.quick:
        a.model, a.size, a.batch, a.steps, a.warmup, a.compile = "rwkv_unet_test", 64, 2, 2, 1, "off"
    variants = {"both": (False, True), "on": (True,), "off": (False,)}[a.compile]
    rows = []
    if device.type == "cuda" and not a.in_process:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [run_variant_in_child(a, c, Path(tmp) / f"{int(c)}.json") for c in variants]
    else:
        for c in variants:
            rows.append(bench(a.model, size=a.size, batch=a.batch, steps=a.steps, warmup=a.warmup,
                              bf16=not a.no_bf16, channels_last=not a.no_channels_last, compile=c, device=device,
                              profile_steps=a.profile_steps, cuda_graph=a.cuda_graph,
                              cudnn_benchmark=a.cudnn == "benchmark",
                              profile=a.profile and f"{a.profile}_{'compiled' if c else 'eager'}.txt"))
    for r in rows:
        print(f"{r['model']} {r['size']}^2 batch {r['batch']} compile={r['compile']}: median {r['median_step_ms']:.1f} ms"
              f" -> {r['img_per_s']:.0f} img/s train, {r['inference']['img_per_s']:.0f} img/s inference, "
              f"first step {r['time_to_first_step_s']:.1f} s, peak {r['peak_memory_gib'] or 0:.2f} GiB", flush=True)
    out = {"results": rows, "provenance": provenance(mode="quick" if a.quick else "full", device=device,
                                                     caches=a.caches)}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
