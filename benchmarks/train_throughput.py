"""Training throughput of a model: images per second of full optimizer steps.

    python benchmarks/train_throughput.py --model rwkv_unet_t --size 256 --batch 32 --out results/bench/x.json
    python benchmarks/train_throughput.py --quick          # CPU smoke test (tiny model, 2 steps)
    python benchmarks/train_throughput.py --merge run1.json run2.json run3.json --out x.json

Steps of one process vary by 5-12 % between separate runs on the same GPU (results/train_throughput/ab_s8/), so a
committed record merges several: per setting, the run with the median img/s (one that happened, not an average),
with every run's img/s beside it.

One step = rwkvseg.train.train_step (the engine's step): forward under bf16 autocast (CUDA), the
0.5 BCE + 1.0 Dice loss, backward, AdamW step, on a batch that already sits on the device (the
engine's GPU-resident data; spec kernels.md §5).
Each variant (eager, torch.compile) runs --warmup steps, then --steps timed steps; reported: the
median step time (CUDA-synchronised), img/s = batch / median, peak memory.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from rwkvseg.losses import binary_bce_dice
from rwkvseg.models import create_model
from rwkvseg.notebook import provenance
from rwkvseg.train import TrainConfig, train_step


def bench(model_name: str, *, size: int, batch: int, steps: int, warmup: int, bf16: bool,
          channels_last: bool, compile: bool, device: torch.device, profile: str | None = None,
          profile_cpu: bool = True) -> dict:
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # as rwkvseg.train does (and the authors' code): cuDNN times its algorithms
    model = create_model(model_name, in_chans=3, num_classes=1).to(device)
    on_cuda = device.type == "cuda"
    if channels_last and on_cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    step_model = torch.compile(model) if compile else model
    x = torch.rand(batch, 3, size, size, device=device)
    if channels_last and on_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()

    cfg = TrainConfig(channels_last=channels_last)       # the fields train_step reads; no gradient clipping

    def one_step():                                      # the engine's own step, at a constant learning rate
        train_step(step_model, opt, binary_bce_dice, x, y, lr=1e-4, cfg=cfg, bf16=bf16 and on_cuda)

    t0 = time.perf_counter()
    for _ in range(warmup):
        one_step()
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        one_step()
        if on_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"{model_name} compile={compile}: warm-up {warm_s:.1f} s, median step {1e3 * med:.1f} ms, "
          f"{batch / med:.0f} img/s", flush=True)
    if profile and on_cuda:
        write_profile(one_step, profile, cpu=profile_cpu)
    return {"model": model_name, "size": size, "batch": batch, "bf16": bf16 and on_cuda,
            "channels_last": channels_last and on_cuda, "compile": compile, "steps": steps,
            "warmup": warmup, "warmup_s": warm_s, "median_step_ms": 1e3 * med,
            "img_per_s": batch / med, "min_step_ms": 1e3 * min(times),
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None,
            "params": sum(p.numel() for p in model.parameters())}


def write_profile(one_step, path: str, steps: int = 2, cpu: bool = True) -> None:
    """Kernel time per step by CUDA kernel (torch.profiler): where the step's time goes.
    cpu=False records CUDA kernels only (kernel names, no aten ops): much faster on large models."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if cpu else [])) as prof:
        for _ in range(steps):
            one_step()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f"torch.profiler, {steps} steps\n" + table)


def merge(records: list[dict], names: list[str]) -> dict:
    """One record from several runs of the same settings: per setting, the run with the median img/s (the lower
    middle one for an even count), plus every run's img/s and each run's provenance."""
    by_setting: dict = {}
    for rec in records:
        for r in rec["results"]:
            key = (r["model"], r["size"], r["batch"], r["bf16"], r["channels_last"], r["compile"])
            by_setting.setdefault(key, []).append(r)
    rows = []
    for runs in by_setting.values():
        speeds = sorted(r["img_per_s"] for r in runs)
        pick = next(r for r in runs if r["img_per_s"] == statistics.median_low(speeds))
        rows.append({**pick, "runs_img_per_s": speeds})
    return {"results": rows, "merged_from": [{"file": Path(n).name, **rec["provenance"]} for n, rec in zip(names, records)],
            "provenance": records[-1]["provenance"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rwkv_unet_t")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--compile", choices=("both", "on", "off"), default="both")
    ap.add_argument("--quick", action="store_true", help="CPU smoke test: tiny model, 64x64, 2 steps")
    ap.add_argument("--out", default=None, help="write the JSON here")
    ap.add_argument("--profile", default=None, help="also write a torch.profiler kernel table here (CUDA)")
    ap.add_argument("--profile-kernels-only", action="store_true", help="profile CUDA kernels only (no aten ops)")
    ap.add_argument("--merge", nargs="+", default=None, help="merge these records of separate runs into --out")
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
    for c in variants:
        r = bench(a.model, size=a.size, batch=a.batch, steps=a.steps, warmup=a.warmup,
                  bf16=not a.no_bf16, channels_last=not a.no_channels_last, compile=c, device=device,
                  profile=a.profile and f"{a.profile}_{'compiled' if c else 'eager'}.txt",
                  profile_cpu=not a.profile_kernels_only)
        print(f"{r['model']} {r['size']}^2 batch {r['batch']} compile={c}: median {r['median_step_ms']:.1f} ms"
              f" -> {r['img_per_s']:.0f} img/s, peak {r['peak_memory_gib'] or 0:.2f} GiB", flush=True)
        rows.append(r)
    out = {"results": rows, "provenance": provenance(mode="quick" if a.quick else "full", device=device)}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
