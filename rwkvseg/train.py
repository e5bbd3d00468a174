"""The training engine: one config dataclass, one loop, read top to bottom (like nanoGPT's train.py).

    cfg = TrainConfig(model="rwkv_unet_t", dataset="isic2018", epochs=200)
    results = train(cfg)              # writes cfg.out_dir/{last,best}.pt, metrics.csv, results.json

The same function runs on one CPU, one GPU, or several GPUs under torchrun (DistributedDataParallel;
gloo on the CPU, nccl on CUDA). What it does, in order:

1. set up the process group (if launched by torchrun), the device and the seeds;
2. load the whole data set once as uint8 tensors on the device (rwkvseg.data), carve the
   seeded validation split from the training part (the test part is never looked at until the end);
3. build the model (rwkvseg.models.create_model), optionally channels_last and torch.compile,
   AdamW, and the per-iteration schedule (cosine to min_lr, optional linear warm-up; poly 0.9);
4. resume from out_dir/last.pt when asked (model, optimizer, step, epoch, history, RNG states);
5. loop over epochs: every epoch draws its permutation and augmentation from (seed, epoch), so a
   resumed run replays the same batches; every rank takes its slice of each global batch;
   bf16 autocast; after the epoch: validation, CSV/JSON logs, last.pt (and best.pt);
6. at the end, load the selected checkpoint (best on validation, or the last epoch), evaluate the
   test split once (with and without the flip TTA), write results.json with provenance.

Recipes (spec rwkv-unet.md §13, ms-rwkv.md §2.6) live in configs/*.yaml, not in code.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from rwkvseg import evaluate as ev
from rwkvseg.losses import LossConfig, build_loss

DATASETS = ("isic2018", "isic2018_samples", "acdc", "synthetic_acdc")


# --------------------------------------------------------------------------------------------
# 1. The configuration: every field can be set from YAML, the command line or a notebook
# --------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the ISIC 2018 binary recipe.

    Sources: [paper] RWKV-UNet Sec. 4.1, [code] the authors' scripts, [choose] ours
    (spec rwkv-unet.md §13, ms-rwkv.md §2.6, protocols.md).
    """

    # what to train
    model: str = "rwkv_unet_t"               # any name of rwkvseg.models.list_models()
    model_kwargs: dict = field(default_factory=dict)  # config overrides for create_model
    dataset: str = "isic2018"                # "isic2018" | "isic2018_samples" | "acdc" | "synthetic_acdc"
    data_dir: str | None = None              # None: ../shared/data/<dataset> (or $RWKVSEG_DATA)
    split: str = "default"                   # ISIC: "default" = seeded 7:3 [protocols §1]; ACDC: "ssl4mis" | "authors"
    img_size: int = 256                      # [paper] binary 256, ACDC/Synapse 224
    augment: bool = True                     # flips/rotations on the GPU (rwkvseg.data)
    max_train_images: int | None = None      # quick mode: use only the first N training items
    max_eval_items: int | None = None        # quick mode: evaluate only N images/volumes

    # optimisation
    epochs: int = 300                        # [paper] binary 300, ACDC 150 (configs shorten them)
    iterations: int | None = None            # total optimizer steps; overrides epochs when set
    batch_size: int = 8                      # GLOBAL batch (all ranks together) [paper] binary 8, ACDC 24
    lr: float = 1e-4                         # [paper] binary 1e-4, ACDC 5e-4
    min_lr: float = 1e-5                     # [paper] binary 1e-5, ACDC 0
    weight_decay: float = 1e-4               # [code] ACDC 1e-4; binary not stated [choose] 1e-4
    betas: tuple[float, float] = (0.9, 0.999)  # [choose] AdamW defaults (the code uses them)
    warmup_iters: int = 0                    # [choose] linear warm-up from 0; the papers use none
    schedule: str = "cosine"                 # "cosine" (over all iterations) | "poly" (0.9, Synapse code) | "constant"
    grad_clip: float = 0.0                   # 0 = off [code: none]

    # loss [protocols §3]
    loss: str = "auto"                       # "auto": bce_dice for ISIC, ce_dice for ACDC
    ce_weight: float = 0.5                   # [paper] binary 0.5 (BCE), ACDC 0.3 (CE)
    dice_weight: float = 1.0                 # [paper] binary 1.0, ACDC 0.7
    dice_style: str = "ukan"                 # binary: "ukan" (smooth 1e-5) | "vmunet" (smooth 1)

    # model selection and evaluation [protocols §1, §5]
    selection: str = "val"                   # "val": best validation score | "last": last epoch
    val_fraction: float = 0.1                # ISIC: seeded share of the training part held out
    eval_every: int = 1                      # validate every N epochs (and after the last)
    tta: bool = True                         # also report the test metrics with the flip TTA

    # system
    device: str | None = None                # None: cuda:LOCAL_RANK if available, else cpu
    bf16: bool = True                        # bf16 autocast (CUDA only; ignored on the CPU)
    channels_last: bool = True               # memory format of the convolutional parts (CUDA only)
    compile: bool = False                    # torch.compile the model
    sync_bn: bool = True                     # synchronise BatchNorm statistics across ranks
    seed: int = 0
    deterministic: bool = False              # deterministic algorithms where the backend has them
    out_dir: str = "runs/isic2018_rwkv_unet_t"
    resume: bool = False                     # continue from out_dir/last.pt if it exists
    max_steps: int | None = None             # stop after this many steps (quick mode, tests)
    log_every: int = 0                       # also print every N steps (0: once per epoch)
    progress: str = "auto"                   # "auto" | "tqdm" | "line" | "none"
    save_checkpoints: bool = True
    mode: str = "full"                       # recorded in the results ("quick" | "full")
    command: str | None = None               # recorded; None: the process's argv

    def __post_init__(self):
        checks = {
            "dataset": (self.dataset, DATASETS),
            "selection": (self.selection, ("val", "last")),
            "schedule": (self.schedule, ("cosine", "poly", "constant")),
            "loss": (self.loss, ("auto", "bce_dice", "ce_dice")),
            "progress": (self.progress, ("auto", "tqdm", "line", "none")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {value!r}")
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)

    @property
    def is_binary(self) -> bool:
        return self.dataset.startswith("isic")

    def loss_config(self) -> LossConfig:
        kind = self.loss if self.loss != "auto" else ("bce_dice" if self.is_binary else "ce_dice")
        return LossConfig(kind=kind, ce_weight=self.ce_weight, dice_weight=self.dice_weight,
                          dice_style=self.dice_style)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# 2. Processes, devices, seeds
# --------------------------------------------------------------------------------------------

@dataclass
class Dist:
    """Where this process sits: rank among world_size processes, its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """Join the torchrun process group (if WORLD_SIZE > 1) and pick the device.

    gloo on the CPU, nccl on CUDA; no NCCL_* variable is set here (the launcher's are used).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world, device=dev)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; with `deterministic`, ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's permutation and augmentation: a resumed run replays it exactly."""
    return seed * 1_000_003 + epoch


class AllReduceBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are summed over all ranks, on any device.

    torch's nn.SyncBatchNorm runs only on accelerators; this one uses the differentiable
    torch.distributed.nn.all_reduce, so gloo on the CPU gets the same statistics as one process
    with the whole global batch (what the DDP test checks). Used on the CPU; CUDA uses
    nn.SyncBatchNorm.
    """

    def forward(self, x: Tensor) -> Tensor:                                   # (B, C, H, W)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn import all_reduce

        n = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n])    # (2C + 1,)
        stats = all_reduce(stats)
        C = x.shape[1]
        count = stats[-1]
        mean = stats[:C] / count
        var = stats[C:2 * C] / count - mean * mean                           # biased, for normalising
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1))
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def convert_batchnorm_for_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by a synchronised one (nn.SyncBatchNorm on CUDA, ours on the CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = AllReduceBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new.to(child.weight.device if child.affine else device))
        else:
            convert_batchnorm_for_ddp(child, device)
    return module


# --------------------------------------------------------------------------------------------
# 3. Data on the device: train / val / test, and one epoch of rank-sharded batches
# --------------------------------------------------------------------------------------------

@dataclass
class EvalSet:
    """A split to evaluate. Binary (ISIC): images (N, C, H, W) uint8 and masks (N, H, W) uint8 {0, 1}.
    Volumes (ACDC): `volumes` is a list of (name, image (D, H, W) float32 in [0, 1], label (D, H, W)
    uint8) at native size, predicted slice by slice (spec protocols.md §5)."""

    name: str
    images: Tensor | None = None
    masks: Tensor | None = None
    volumes: list | None = None

    def __len__(self) -> int:
        return len(self.volumes) if self.volumes is not None else int(self.images.shape[0])


@dataclass
class SegData:
    """What the loop needs: training tensors on the device and the two evaluation splits."""

    train_images: Tensor          # (N, C, H, W) uint8, on the device, already at img_size
    train_labels: Tensor          # (N, H, W) uint8 labels (binary: {0, 1})
    val: EvalSet | None           # None when selection == "last"
    test: EvalSet
    in_chans: int
    num_classes: int              # 1 for binary (one logit), 4 for ACDC
    split_info: dict              # name, list hashes, counts: recorded in every result


def load_training_data(cfg: TrainConfig, *, device: torch.device) -> SegData:
    """Load cfg.dataset once, split it, and move the training part to the device as uint8."""
    return _adapter_load(cfg, device)


def epoch_batches(data: SegData, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                  augment: bool = True):
    """Yield one epoch of (x, y): x (b, C, H, W) float network input, y labels, b = batch / world.

    The permutation and the augmentation come from `seed` alone and are the same on every rank;
    rank r takes rows [r b, (r + 1) b) of each global batch, so world_size processes together see
    exactly the batches one process would. The last incomplete batch is dropped.
    """
    n = data.train_images.shape[0]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).to(data.train_images.device)
    local = batch_size // world_size
    for i in range(n // batch_size):
        idx = perm[i * batch_size:(i + 1) * batch_size]          # the global batch
        x, y = data.train_images[idx], data.train_labels[idx]    # (B, C, H, W), (B, H, W) uint8
        if augment:
            x, y = _adapter_augment(x, y, seed=seed * 7919 + i)
        sl = slice(rank * local, (rank + 1) * local)
        yield ev.to_input(x[sl]), y[sl].long()


# --------------------------------------------------------------------------------------------
# 4. The learning-rate schedule, per iteration
# --------------------------------------------------------------------------------------------

def lr_at(step: int, *, total: int, lr: float, min_lr: float, warmup: int = 0,
          schedule: str = "cosine") -> float:
    """Learning rate of optimizer step `step` (0-based) out of `total`.

    cosine: min_lr + (lr - min_lr) (1 + cos(pi s)) / 2, s = progress after warm-up in [0, 1]
    (one half-period over the whole run; the paper's CosineAnnealingLR without the authors'
    periodic quirk, spec rwkv-unet.md §13); poly: min_lr + (lr - min_lr) (1 - s)^0.9, the
    authors' Synapse code; constant: lr. Warm-up: linear from lr/warmup to lr over `warmup` steps.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    s = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * s))
    if schedule == "poly":
        return min_lr + (lr - min_lr) * (1 - s) ** 0.9
    return lr


# --------------------------------------------------------------------------------------------
# 5. Checkpoints: everything needed to continue bit-for-bit where the backend allows
# --------------------------------------------------------------------------------------------

def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **payload) -> None:
    """Write atomically (tmp file + rename), so a kill during the write never leaves a torn file."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# 6. Progress: tqdm in a live terminal or notebook, otherwise one compact line per epoch
# --------------------------------------------------------------------------------------------

def progress_kind(requested: str) -> str:
    if requested != "auto":
        return requested
    from rwkvseg.notebook import in_book_build, live_kernel

    if in_book_build():
        return "line"
    return "tqdm" if (live_kernel() or sys.stderr.isatty()) else "line"


def format_epoch_line(rec: dict, epochs: int) -> str:
    parts = [f"epoch {rec['epoch'] + 1:>3}/{epochs}", f"step {rec['step']}",
             f"loss {rec['train_loss']:.4f}", f"lr {rec['lr']:.2e}", f"{rec['img_per_s']:.0f} img/s"]
    if rec.get("val_score") is not None:
        parts.append(f"val {rec['val_metric']} {rec['val_score']:.4f}")
    return " | ".join(parts)


# --------------------------------------------------------------------------------------------
# 7. The loop
# --------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, on_epoch_end=None) -> dict:
    """Train per `cfg`; return the results dict also written to out_dir/results.json.

    on_epoch_end(record, history): called on rank 0 after each epoch (the book's live curve).
    """
    from rwkvseg.models import create_model

    t_start = time.time()
    d = setup_distributed(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic)
    on_cuda = d.device.type == "cuda"
    use_bf16 = cfg.bf16 and on_cuda
    out = Path(cfg.out_dir)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % d.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} (global) must be divisible by the "
                         f"{d.world_size} processes; choose a multiple of {d.world_size}")
    local_bs = cfg.batch_size // d.world_size

    # --- data: uint8 tensors on the device, split into train / val / test --------------------
    data = load_training_data(cfg, device=d.device)
    n_train = data.train_images.shape[0]
    steps_per_epoch = n_train // cfg.batch_size              # drop_last: BatchNorm needs full batches
    if steps_per_epoch == 0:
        raise ValueError(f"only {n_train} training items for a global batch of {cfg.batch_size}: "
                         "lower batch_size or raise max_train_images")
    total_steps = cfg.iterations or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    if cfg.max_steps is not None:
        total_steps_run = min(total_steps, cfg.max_steps)
    else:
        total_steps_run = total_steps

    # --- model, optimizer, loss ---------------------------------------------------------------
    model = create_model(cfg.model, in_chans=data.in_chans, num_classes=data.num_classes,
                         **cfg.model_kwargs).to(d.device)
    if d.world_size > 1 and cfg.sync_bn:
        model = convert_batchnorm_for_ddp(model, d.device)
    if cfg.channels_last and on_cuda:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model                                         # what is saved and evaluated
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                  weight_decay=cfg.weight_decay)
    loss_fn = build_loss(cfg.loss_config())

    # --- resume -------------------------------------------------------------------------------
    start_epoch, step, history, best = 0, 0, [], None
    if cfg.resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location=d.device, weights_only=False)
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, step, history, best = ckpt["epoch"] + 1, ckpt["step"], ckpt["history"], ckpt["best"]
        set_rng_state(ckpt["rng"])
        if d.is_main:
            print(f"resumed from {out / 'last.pt'}: epoch {start_epoch}, step {step}")

    if d.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if on_cuda else None)
    if cfg.compile:
        model = torch.compile(model)

    # --- loop ---------------------------------------------------------------------------------
    show = progress_kind(cfg.progress) if d.is_main else "none"
    if d.is_main:
        print(f"{cfg.model} on {cfg.dataset}: {n_train} training items, {steps_per_epoch} steps/epoch "
              f"x {epochs} epochs = {total_steps} steps, global batch {cfg.batch_size} on "
              f"{d.world_size} process(es), {d.device}, bf16 {use_bf16}")
    images_seen_time = 0.0
    for epoch in range(start_epoch, epochs):
        if step >= total_steps_run:
            break
        torch.manual_seed(epoch_seed(cfg.seed, epoch))        # dropout / drop-path of this epoch
        batches = epoch_batches(data, seed=epoch_seed(cfg.seed, epoch), batch_size=cfg.batch_size,
                                rank=d.rank, world_size=d.world_size, augment=cfg.augment)
        model.train()
        bar = None
        if show == "tqdm":
            from tqdm.auto import tqdm
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        loss_sum = torch.zeros((), device=d.device)
        n_steps = 0
        if on_cuda:
            torch.cuda.synchronize()
        t0 = time.time()
        for x, y in batches:                                   # x (b, C, H, W) float, y labels
            if step >= total_steps_run:
                break
            lr = lr_at(step, total=total_steps, lr=cfg.lr, min_lr=cfg.min_lr,
                       warmup=cfg.warmup_iters, schedule=cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.channels_last and on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss_sum += loss.detach()
            n_steps += 1
            step += 1
            if bar is not None:
                bar.update(1)
                if n_steps % 10 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            if cfg.log_every and step % cfg.log_every == 0 and show != "none":
                print(f"  step {step}: loss {loss.item():.4f} lr {lr:.2e}")
        if on_cuda:
            torch.cuda.synchronize()
        dt = time.time() - t0
        images_seen_time += dt
        if bar is not None:
            bar.close()
        if d.world_size > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= d.world_size
        rec = {"epoch": epoch, "step": step, "train_loss": (loss_sum / max(1, n_steps)).item(),
               "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": dt,
               "img_per_s": n_steps * cfg.batch_size / max(dt, 1e-9),
               "val_metric": None, "val_score": None}

        # --- validation, logs, checkpoints (rank 0) -------------------------------------------
        last_epoch = epoch == epochs - 1 or step >= total_steps_run
        if d.is_main:
            if cfg.selection == "val" and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
                scores = ev.evaluate_split(raw_model, data.val, binary=cfg.is_binary,
                                           img_size=cfg.img_size, tta=False, hd95=False, bf16=use_bf16)
                rec["val_metric"], rec["val_score"] = scores["selection_metric"], scores["selection_score"]
                if best is None or rec["val_score"] > best["score"]:
                    best = {"epoch": epoch, "step": step, "metric": rec["val_metric"], "score": rec["val_score"]}
                    if cfg.save_checkpoints:
                        save_checkpoint(out / "best.pt", model=raw_model.state_dict(), epoch=epoch,
                                        step=step, config=cfg.to_dict(), best=best,
                                        num_classes=data.num_classes, in_chans=data.in_chans)
            history.append(rec)
            write_history(out, history)
            if cfg.save_checkpoints:
                save_checkpoint(out / "last.pt", model=raw_model.state_dict(),
                                optimizer=optimizer.state_dict(),
                                scheduler={"kind": cfg.schedule, "step": step, "total": total_steps},
                                epoch=epoch, step=step, history=history, best=best, rng=rng_state(),
                                config=cfg.to_dict(), num_classes=data.num_classes, in_chans=data.in_chans)
            if show in ("line", "tqdm"):
                print(format_epoch_line(rec, epochs), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(rec, history)
        if d.world_size > 1:
            dist.barrier()

    # --- the test split, once, with the selected weights ----------------------------------------
    results = None
    if d.is_main:
        if cfg.selection == "val" and best is not None and cfg.save_checkpoints and (out / "best.pt").exists():
            raw_model.load_state_dict(torch.load(out / "best.pt", map_location=d.device,
                                                 weights_only=False)["model"])
            selected = {"rule": "best validation " + best["metric"], **best}
        else:
            selected = {"rule": "last epoch", "epoch": history[-1]["epoch"] if history else None, "step": step}
        test = ev.evaluate_split(raw_model, data.test, binary=cfg.is_binary, img_size=cfg.img_size,
                                 tta=False, hd95=True, bf16=use_bf16)
        test_tta = (ev.evaluate_split(raw_model, data.test, binary=cfg.is_binary, img_size=cfg.img_size,
                                      tta=True, hd95=True, bf16=use_bf16) if cfg.tta else None)
        train_imgs = sum(r["img_per_s"] * r["epoch_time_s"] for r in history)
        train_time = sum(r["epoch_time_s"] for r in history)
        results = {
            "dataset": cfg.dataset, "model": cfg.model,
            "params": sum(p.numel() for p in raw_model.parameters()),
            "split": data.split_info, "selection": selected,
            "test": test, "test_tta": test_tta,
            "history": history, "config": cfg.to_dict(),
            "provenance": provenance(cfg, d, wall_time_s=time.time() - t_start,
                                     img_per_s=train_imgs / max(train_time, 1e-9), bf16=use_bf16),
        }
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if d.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


def write_history(out: Path, history: list[dict]) -> None:
    """metrics.csv (one row per epoch) and history.json, rewritten whole after each epoch."""
    keys = list(history[0].keys())
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    (out / "history.json").write_text(json.dumps(history, indent=1))


def provenance(cfg: TrainConfig, d: Dist, *, wall_time_s: float, img_per_s: float, bf16: bool) -> dict:
    """Who, what, where, when: the record every result carries (spec book.md §4)."""
    import rwkvseg
    from rwkvseg.notebook import git_commit

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    on_cuda = d.device.type == "cuda"
    return {
        "command": cfg.command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "device": torch.cuda.get_device_name(d.device) if on_cuda else f"cpu ({os.cpu_count()} cores)",
        "world_size": d.world_size,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "triton": triton_version, "rwkvseg": rwkvseg.__version__,
        "mode": cfg.mode, "seed": cfg.seed, "bf16": bf16, "compile": cfg.compile,
        "channels_last": cfg.channels_last and on_cuda,
        "metric_conventions": ev.metric_conventions(binary=cfg.is_binary),
        "wall_time_s": wall_time_s, "train_img_per_s": img_per_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated(d.device) / 2**30 if on_cuda else None,
    }


# --------------------------------------------------------------------------------------------
# ADAPTER (temporary): minimal data access until rwkvseg.data provides it. Remove this section
# and call rwkvseg.data's loader / GPU augmentation / normalisation once they exist.
# --------------------------------------------------------------------------------------------

def _default_data_dir(dataset: str) -> Path:
    root = Path(os.environ.get("RWKVSEG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root / ("isic2018" if dataset.startswith("isic") else "acdc")


def _list_hash(ids) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _adapter_load(cfg: TrainConfig, device: torch.device) -> SegData:
    import torch.nn.functional as F

    root = Path(cfg.data_dir) if cfg.data_dir else _default_data_dir(cfg.dataset)
    if cfg.dataset.startswith("isic"):
        from PIL import Image

        ids = sorted(p.stem for p in (root / "images").glob("ISIC_*.jpg"))
        if not ids:
            raise FileNotFoundError(f"expected {root}/images/ISIC_*.jpg and {root}/masks/ISIC_*_segmentation.png")
        perm = np.random.default_rng(0).permutation(len(ids))
        n_test = round(0.3 * len(ids))
        test_ids = sorted(ids[i] for i in perm[:n_test])
        train_ids = sorted(ids[i] for i in perm[n_test:])
        split_info = {"name": "isic2018_7to3_seed0 (ADAPTER)", "train_hash": _list_hash(train_ids),
                      "test_hash": _list_hash(test_ids)}
        if cfg.max_train_images:
            train_ids = train_ids[:cfg.max_train_images]
        if cfg.max_eval_items:
            test_ids = test_ids[:cfg.max_eval_items]

        def read(id_list):
            im = np.stack([np.asarray(Image.open(root / "images" / f"{i}.jpg").convert("RGB")) for i in id_list])
            mk = np.stack([np.asarray(Image.open(root / "masks" / f"{i}_segmentation.png")) for i in id_list])
            x = torch.from_numpy(im).permute(0, 3, 1, 2).contiguous()
            y = torch.from_numpy((mk >= 128).astype(np.uint8))
            if x.shape[-1] != cfg.img_size:
                x = F.interpolate(x.float(), size=cfg.img_size, mode="bilinear").round().clamp(0, 255).byte()
                y = F.interpolate(y[:, None].float(), size=cfg.img_size, mode="nearest")[:, 0].byte()
            return x.to(device), y.to(device)

        x, y = read(train_ids)
        val = None
        if cfg.selection == "val":
            n_val = max(1, round(cfg.val_fraction * x.shape[0]))
            p = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(x.shape[0])).to(device)
            val = EvalSet("val", images=x[p[:n_val]], masks=y[p[:n_val]])
            x, y = x[p[n_val:]], y[p[n_val:]]
        tx, ty = read(test_ids)
        return SegData(x, y, val, EvalSet("test", images=tx, masks=ty), 3, 1, split_info)
    return _adapter_load_acdc(cfg, root, device)


def _adapter_synthetic_volume(rng, D: int, H: int, W: int):
    """A cardiac-like label volume: LV disk (3), Myo ring (2), RV crescent (1); image = noisy shades."""
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = H * rng.uniform(0.4, 0.6), W * rng.uniform(0.4, 0.6)
    img = np.zeros((D, H, W), np.float32)
    lab = np.zeros((D, H, W), np.uint8)
    for z in range(D):
        r = min(H, W) * (0.12 - 0.06 * z / max(1, D - 1)) * rng.uniform(0.9, 1.1)
        d = np.hypot(yy - cy, xx - cx)
        drv = np.hypot(yy - cy, xx - (cx - 1.6 * r))
        lab[z][(drv < 1.5 * r) & (d > 1.4 * r)] = 1
        lab[z][(d < 1.4 * r)] = 2
        lab[z][(d < r)] = 3
        img[z] = np.choose(lab[z], [0.1, 0.6, 0.35, 0.8]) + rng.normal(0, 0.05, (H, W))
    return np.clip(img, 0, 1), lab


def _adapter_load_acdc(cfg: TrainConfig, root: Path, device: torch.device) -> SegData:
    import torch.nn.functional as F

    S = cfg.img_size
    if cfg.dataset == "synthetic_acdc":
        rng = np.random.default_rng(cfg.seed)
        vols = [("synthetic_%03d" % i, *_adapter_synthetic_volume(rng, 8, 120 + 8 * (i % 3), 112)) for i in range(14)]
        train_v, val_v, test_v = vols[:8], vols[8:10], vols[10:]
        slices = [(im[z], lb[z]) for _, im, lb in train_v for z in range(im.shape[0])]
        split_info = {"name": "synthetic_acdc (ADAPTER)", "train_hash": None, "test_hash": None}
    else:
        import h5py

        if not (root / "train_slices.list").is_file():
            raise FileNotFoundError(f"expected ACDC at {root}: train_slices.list, val.list, test.list and data/*.h5")
        names = (root / "train_slices.list").read_text().split()
        if cfg.max_train_images:
            names = names[:cfg.max_train_images]
        slices = []
        for n in names:
            with h5py.File(root / "data" / f"{n}.h5") as f:
                slices.append((f["image"][()], f["label"][()]))

        def vols_of(listname):
            ids = (root / listname).read_text().split()[:cfg.max_eval_items or None]
            out = []
            for n in ids:
                with h5py.File(root / "data" / f"{n}.h5") as f:
                    out.append((n, f["image"][()], f["label"][()]))
            return out

        val_v, test_v = vols_of("val.list"), vols_of("test.list")
        split_info = {"name": "acdc_ssl4mis (ADAPTER)",
                      "train_hash": _list_hash((root / "train.list").read_text().split()),
                      "test_hash": _list_hash((root / "test.list").read_text().split())}
    if cfg.max_train_images:
        slices = slices[:cfg.max_train_images]
    xs, ys = [], []
    for im, lb in slices:
        x = F.interpolate(torch.from_numpy(np.ascontiguousarray(im, np.float32))[None, None], size=(S, S),
                          mode="bicubic", align_corners=False)
        y = F.interpolate(torch.from_numpy(lb.astype(np.float32))[None, None], size=(S, S), mode="nearest")
        xs.append((x.clamp(0, 1) * 255).round().byte()[0])
        ys.append(y.byte()[0, 0])
    if cfg.max_eval_items:
        val_v, test_v = val_v[:cfg.max_eval_items], test_v[:cfg.max_eval_items]
    return SegData(torch.stack(xs).to(device), torch.stack(ys).to(device),
                   EvalSet("val", volumes=val_v) if cfg.selection == "val" else None,
                   EvalSet("test", volumes=test_v), 1, 4, split_info)


def _adapter_augment(x: Tensor, y: Tensor, *, seed: int):
    g = torch.Generator().manual_seed(seed)
    flip = (torch.rand(x.shape[0], generator=g) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None], y.flip(-1), y)
    return x, y
