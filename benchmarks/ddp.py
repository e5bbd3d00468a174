"""Data-parallel scaling of RWKV-UNet-T training: 1 GPU against 2 GPUs of one machine.

    python benchmarks/ddp.py --data_dir CACHE_DIR --out rwkvseg/results/ddp/rwkv_unet_t_isic2018.json
    python benchmarks/ddp.py --quick --out /tmp/ddp_quick.json     # CPU smoke: gloo, 2 processes

The driver launches `torchrun --standalone --nproc_per_node=N` on this same file, N = 1 then 2
(--nprocs), and writes one JSON with both runs, the scaling efficiency and provenance.

What is measured. Each process runs the training engine's own pieces (rwkvseg.engine): `prepare`
(process group and device, the data: the committed split's train-sub part of ISIC 2018 as the uint8
cache on the device, the seeded GpuLoader with the papers' augmentation, every rank keeping its slice
of each global batch; the model with SyncBatchNorm, channels_last, DistributedDataParallel, optional
torch.compile; AdamW, the loss, the lr schedule), then `fit_epoch` until the run's steps are done,
with a callback after every step that keeps its loss and starts and stops the timer. Validation,
checkpoints and the test split (`end_epoch`, `finish`) are left out. The recipe is the shipped
isic2018_rwkv_unet_t with the batch and the step count replaced.

Per run (same seed, same per-GPU batch b, default 32, so the global batch is N b):
- img/s: --steps timed steps after --warmup steps, global images / wall time, between CUDA
  synchronisations and a barrier (the slowest rank's time);
- scaling efficiency: img/s(N GPUs) / (N x img/s(1 GPU));
- peak memory of every rank: torch.cuda.max_memory_allocated / max_memory_reserved over the whole
  run (the device-resident data set included; its size is recorded beside it);
- the loss after the same number of SAMPLES. With the same per-GPU batch, one step of N GPUs sees
  N times the images of one step of 1 GPU, so every run trains on the same number of samples,
  (warmup + steps) x b x max(nprocs): the run on n GPUs makes (warmup + steps) x max(nprocs) / n
  steps (1 GPU: twice as many as 2 GPUs), of which the same --steps are timed. The lr schedule (the recipe's cosine) runs over each run's own step
  count, so the lr at a given sample count is the same in both. Compared are (a) the training
  loss against samples seen, each run's per-step loss (mean over ranks) averaged over windows of
  --loss_window x b x max(nprocs) samples, so every window holds the same number of images in both
  runs (a single step's loss is too noisy), and (b) the loss of the final weights on the held-out
  validation part (eval mode, chunks of b images), the same images for both: the cleanest
  same-samples comparison. The runs need not agree exactly: N GPUs take half the optimizer steps
  at twice the batch and the same lr, and the augmentation draws differ with the batch size.

OMP_NUM_THREADS is set to 1 where unset (torchrun's own default for several processes), for both
runs alike. No NCCL_* variable is set or changed: the machine's NCCL_NVLS_ENABLE=0 (NVLink
multicast off) is inherited, and recorded in the provenance.

On a machine with two GPUs and the ISIC 2018 data (a data root, or a folder with the cache file
that `rwkvseg cache --dataset isic2018 --out DIR` writes; build it first, in one process):

    python benchmarks/ddp.py --data_dir DIR --out ddp.json

and the 1-GPU ISIC record (rwkvseg/results/train_isic2018/rwkv_unet_t_40ep: global batch 16, 40
epochs, eager) on two GPUs, with the same global batch (TrainConfig.batch_size is the global batch,
split over the ranks: 8 per GPU, the same 102 steps per epoch and lr schedule):

    torchrun --standalone --nproc_per_node=2 -m rwkvseg train --config isic2018_rwkv_unet_t \
        --data_dir DIR --epochs 40 --batch_size 16 --compile false --out_dir runs/isic_t_e40_2gpu
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                     # `python benchmarks/ddp.py` from a plain checkout
    sys.path.insert(0, str(ROOT))

from rwkvseg.data import DATASETS, EvalSet, SegData, isic2018_cache, isic2018_cache_name  # noqa: E402
from rwkvseg.data.cache import default_cache_dir  # noqa: E402
from rwkvseg.data.sets import cache_in  # noqa: E402
from rwkvseg.engine import TrainConfig, fit_epoch, leave, prepare  # noqa: E402
from rwkvseg.engine.distributed import setup_distributed  # noqa: E402
from rwkvseg.env import device_name, provenance  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="isic2018_rwkv_unet_t", help="a recipe: a YAML file or a shipped name")
    ap.add_argument("--data_dir", default=None, help="ISIC 2018 root (default: the engine's discovery)")
    ap.add_argument("--synthetic", action="store_true", help="random images and blob masks instead of ISIC")
    ap.add_argument("--model", default=None, help="default: the config's")
    ap.add_argument("--img_size", type=int, default=None, help="default: the config's (256)")
    ap.add_argument("--batch_per_gpu", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60, help="timed steps of every run")
    ap.add_argument("--loss_window", type=int, default=10,
                    help="loss windows of this many steps of the largest run")
    ap.add_argument("--nprocs", default="1,2", help="processes (GPUs) of each run")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    ap.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu: gloo on the CPU")
    ap.add_argument("--seed", type=int, default=None, help="default: the config's (0)")
    ap.add_argument("--quick", action="store_true",
                    help="CPU smoke test: gloo, 2 processes, rwkv_unet_test, 64x64 synthetic, a few steps")
    ap.add_argument("--out", default=None, help="write the JSON here")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)   # set by the driver
    a = ap.parse_args(argv)
    if a.quick:
        a.synthetic, a.device, a.model, a.img_size = True, "cpu", "rwkv_unet_test", 64
        a.batch_per_gpu, a.warmup, a.steps, a.loss_window = 2, 1, 3, 2
    a.nprocs = [int(n) for n in str(a.nprocs).split(",")]
    if any(max(a.nprocs) % n for n in a.nprocs) or a.steps < 1:
        ap.error("every --nprocs entry must divide the largest (equal samples per run), and --steps >= 1")
    return a


# --------------------------------------------------------------------------------------------
# The worker: one process of a torchrun job
# --------------------------------------------------------------------------------------------

def run_config(a, world_size: int) -> TrainConfig:
    """The recipe of --config with this benchmark's batch, model, size, data, seed and step count."""
    changes = {"batch_size": a.batch_per_gpu * world_size, "data_dir": a.data_dir, "compile": a.compile,
               "progress": "none", "save_checkpoints": False, "mode": "quick" if a.quick else "full",
               "iterations": (a.warmup + a.steps) * max(a.nprocs) // world_size}       # same samples in every run
    if a.device == "cpu":
        changes["device"] = "cpu"
    for name in ("model", "img_size", "seed"):
        if getattr(a, name) is not None:
            changes[name] = getattr(a, name)
    return TrainConfig.from_yaml(a.config, **changes)


def synthetic_data(cfg: TrainConfig, device: torch.device, n_train: int, n_val: int) -> SegData:
    """Smooth random RGB images; the mask is where the red channel is above 128 (learnable)."""
    g = torch.Generator().manual_seed(cfg.seed)
    s = cfg.img_size
    low = torch.rand(n_train + n_val, 3, max(2, s // 8), max(2, s // 8), generator=g)
    images = (F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False) * 255).round().byte()
    masks = (images[:, 0] > 128).byte()
    images, masks = images.to(device), masks.to(device)
    val = EvalSet("val", images=images[n_train:], masks=masks[n_train:])
    return SegData(DATASETS["isic2018"], images[:n_train], masks[:n_train], val, val,
                   split_info={"name": f"synthetic/seed{cfg.seed}", "train": {"n": n_train}, "val": {"n": n_val}})


def worker(a) -> None:
    """One process: the engine's prepare (process group, data, model, optimizer, loss), then its
    fit_epoch until the run's steps are done, timing --steps steps after --warmup."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = run_config(a, world_size)
    t_load = time.perf_counter()
    data = None
    if a.synthetic:
        d = setup_distributed(cfg.device)
        data = synthetic_data(cfg, d.device, n_train=64 if a.quick else 1634, n_val=16 if a.quick else 182)
    run = prepare(cfg, data=data)
    d, data = run.dist, run.data
    on_cuda = d.device.type == "cuda"
    b = a.batch_per_gpu
    if d.is_main:
        print(f"  {d.world_size} rank(s) on {d.device}: {data.train_images.shape[0]} training images loaded in "
              f"{time.perf_counter() - t_load:.1f} s; {run.total_steps} steps of global batch {b * d.world_size}",
              flush=True)
    heldout = data.val if data.val is not None else data.test
    resident = [data.train_images, data.train_labels]                      # train, val, test on the device
    for split in (data.val, data.test):
        if split is not None and all(split.images is not t for t in resident):
            resident += [split.images, split.masks]
    data_bytes = sum(t.numel() * t.element_size() for t in resident)

    def sync():
        if on_cuda:
            torch.cuda.synchronize(d.device)
        if d.world_size > 1:
            dist.barrier()

    losses = torch.zeros(run.total_steps, device=d.device)
    marks = {}

    def on_step(step, loss):                         # step: steps done so far (1-based)
        losses[step - 1] = loss
        if step == a.warmup:
            sync()
            marks["t0"] = time.perf_counter()
        if step == a.warmup + a.steps:
            sync()
            marks["t1"] = time.perf_counter()

    sync()
    t_start = marks["t0"] = time.perf_counter()
    epoch = 0
    while run.step < run.stop_at:                    # the engine's epochs, chained
        fit_epoch(run, epoch, on_step=on_step)
        epoch += 1
    sync()
    train_s = time.perf_counter() - t_start
    timed_s = marks["t1"] - marks["t0"]

    if d.world_size > 1:                             # per-step loss: mean over the ranks
        dist.all_reduce(losses)
        losses /= d.world_size
    held = heldout_loss(run.model, heldout, data.normalization, run.loss_fn, chunk=b, bf16=run.bf16,
                        channels_last=cfg.channels_last and on_cuda) if d.is_main else None
    me = {"rank": d.rank, "device": device_name(d.device), "timed_s": timed_s, "train_s": train_s,
          "peak_allocated_gib": torch.cuda.max_memory_allocated(d.device) / 2**30 if on_cuda else None,
          "peak_reserved_gib": torch.cuda.max_memory_reserved(d.device) / 2**30 if on_cuda else None}
    ranks = [me]
    if d.world_size > 1:
        ranks = [None] * d.world_size
        dist.all_gather_object(ranks, me)
    if d.is_main:
        wall = max(r["timed_s"] for r in ranks)      # the slowest rank's
        global_batch = b * d.world_size
        result = {
            "world_size": d.world_size, "backend": dist.get_backend() if d.world_size > 1 else None,
            "batch_per_gpu": b, "global_batch": global_batch, "warmup_steps": a.warmup,
            "timed_steps": a.steps, "total_steps": run.total_steps, "samples": run.total_steps * global_batch,
            "timed_s": wall, "img_per_s": a.steps * global_batch / wall,
            "ranks": ranks, "resident_data_gib": data_bytes / 2**30,
            "losses": losses.tolist(), "heldout": held,
            "model": cfg.model, "img_size": cfg.img_size, "dataset": "synthetic" if a.synthetic else cfg.dataset,
            "split": data.split_info, "n_train": int(data.train_images.shape[0]),
            "bf16": run.bf16, "channels_last": cfg.channels_last and on_cuda, "compile": cfg.compile and on_cuda,
            "lr": cfg.lr, "min_lr": cfg.min_lr, "schedule": cfg.schedule, "seed": cfg.seed,
            "nccl": nccl_version() if on_cuda else None,
        }
        Path(a._worker).write_text(json.dumps(result, indent=1, default=str))
    leave(run)


def nccl_version() -> str | None:
    try:
        v = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return None
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


@torch.no_grad()
def heldout_loss(model, split, normalization, loss_fn, *, chunk: int, bf16: bool, channels_last: bool) -> dict:
    """Mean loss of `model` (eval mode) on `split`, in chunks of `chunk` images, weighted by size."""
    model.eval()
    total, n = 0.0, 0
    for xs, ys in zip(split.images.split(chunk), split.masks.split(chunk)):
        x = normalization.from_uint8(xs)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        total += loss_fn(logits.float(), ys.long()).item() * xs.shape[0]
        n += xs.shape[0]
    model.train()
    return {"split": split.name, "n_images": n, "loss": total / max(n, 1)}


# --------------------------------------------------------------------------------------------
# The driver: one torchrun job per process count, then the comparison
# --------------------------------------------------------------------------------------------

def launch(nproc: int, argv: list[str], result: Path, quick: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), *argv, "--_worker", str(result)]
    print(f"--- {nproc} process(es): {' '.join(cmd[1:])}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, timeout=200 if quick else None)
    run = json.loads(result.read_text())
    run["launch_s"] = time.perf_counter() - t
    return run


def loss_vs_samples(runs: dict[int, dict], window_samples: int) -> dict:
    """Each run's per-step losses averaged over windows of `window_samples` images (every run's
    steps tile them exactly), at the window's end in samples seen."""
    out = {"window_samples": window_samples}
    for w, r in runs.items():
        per = window_samples // r["global_batch"]
        losses = r["losses"]
        out[f"{w}"] = [sum(losses[i:i + per]) / per for i in range(0, len(losses) - per + 1, per)]
    n = min(len(v) for k, v in out.items() if k != "window_samples")
    out["samples"] = [window_samples * (i + 1) for i in range(n)]
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    if a._worker:
        worker(a)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")   # for both runs (torchrun sets it only for several)
    if not a.synthetic:                              # one process builds the data cache (ranks would race)
        size = a.img_size or run_config(a, 1).img_size
        name = isic2018_cache_name((size, size))
        if cache_in(a.data_dir, name) is None and not (default_cache_dir() / name).is_file():
            isic2018_cache(a.data_dir, size=(size, size))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.nprocs:
            runs[n] = launch(n, argv, Path(tmp) / f"run{n}.json", a.quick)
            r = runs[n]
            mem = ", ".join(f"{x['peak_allocated_gib']:.2f}" if x["peak_allocated_gib"] is not None else "-"
                            for x in r["ranks"])
            print(f"{n} process(es), global batch {r['global_batch']}: {r['img_per_s']:.1f} img/s over "
                  f"{r['timed_steps']} steps, peak GiB per rank [{mem}], held-out loss after {r['samples']} "
                  f"samples {r['heldout']['loss']:.4f}", flush=True)
    base = runs.get(1)
    efficiency = {str(n): (r["img_per_s"] / (n * base["img_per_s"]) if base else None) for n, r in runs.items()}
    window = a.loss_window * a.batch_per_gpu * max(a.nprocs)
    curves = loss_vs_samples(runs, window)

    device = torch.device("cpu") if a.device == "cpu" or not torch.cuda.is_available() else torch.device("cuda")
    prov = provenance(mode="quick" if a.quick else "full", seed=runs[a.nprocs[0]]["seed"], device=device,
                      world_sizes=a.nprocs, devices=sorted({x["device"] for r in runs.values() for x in r["ranks"]}),
                      nccl=next((r["nccl"] for r in runs.values() if r["nccl"]), None),
                      cuda=torch.version.cuda, python=sys.version.split()[0],
                      env={k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                                         "NVSHMEM_DISABLE_NVLS", "OMP_NUM_THREADS")})
    out = {
        "runs": {str(n): r for n, r in runs.items()},
        "scaling_efficiency": efficiency,
        "loss_vs_samples": curves,
        "final_window_loss": {k: curves[k][-1] for k in map(str, runs)},
        "heldout_loss": {str(n): r["heldout"]["loss"] for n, r in runs.items()},
        "samples_per_run": runs[a.nprocs[0]]["samples"],
        "provenance": prov,
    }
    for n in a.nprocs:
        if n != 1 and base:
            print(f"scaling efficiency {n} vs 1: {efficiency[str(n)]:.3f}; training loss over the last "
                  f"{window} samples: 1 -> {out['final_window_loss']['1']:.4f}, {n} -> "
                  f"{out['final_window_loss'][str(n)]:.4f}", flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
