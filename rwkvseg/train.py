"""The training engine: one config dataclass, one loop, read top to bottom (like nanoGPT's train.py).

    cfg = TrainConfig(model="rwkv_unet_t", dataset="isic2018", epochs=200)
    results = train(cfg)              # writes cfg.out_dir/{last,best}.pt, metrics.csv, results.json

The same function runs on one CPU, one GPU, or several GPUs under torchrun (DistributedDataParallel;
gloo on the CPU, nccl on CUDA). What it does, in order:

1. set up the process group (if launched by torchrun), the device and the seeds;
2. load the data set once as uint8 tensors on the device (rwkvseg.data: its cache file, its
   committed split lists, whose sha256 every result records); ISIC selects on the split's
   validation part (10 % of train), ACDC on the split's validation patients; the test part is
   never looked at until the end; batches come from rwkvseg.data.GpuLoader (the papers'
   augmentations on the device, rwkvseg.data.NORMALIZATIONS);
3. build the model (rwkvseg.models.create_model), optionally channels_last and torch.compile,
   AdamW, and the per-iteration schedule (cosine to min_lr, optional linear warm-up; poly 0.9);
4. resume from out_dir/last.pt when asked (model, optimizer, step, epoch, history, RNG states);
5. loop over epochs: every epoch draws its permutation and augmentation from (seed, epoch), so a
   resumed run replays the same batches; every rank takes its slice of each global batch;
   bf16 autocast; after the epoch: validation, CSV/JSON logs, last.pt (and best.pt);
6. at the end, load the selected checkpoint (best on validation, or the last epoch), evaluate the
   test split once (with and without the flip TTA; rwkvseg.metrics), write results.json with
   provenance and export the selected weights to out_dir/model (rwkvseg.hub.save_pretrained).

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
import torch.nn.functional as F
from torch import Tensor

from rwkvseg import evaluate as ev
from rwkvseg.data import (NORMALIZATIONS, AcdcAugment, GpuLoader, IsicAugment, Normalization, SegCache,
                          acdc_cache, build_acdc_cache, cache_volumes, dataset_dir, isic2018_cache, isic_samples,
                          load_cache, load_isic, resize_label, split_ids, split_info, split_sha256, synthetic_acdc,
                          synthetic_acdc_volumes, volume_depths, volume_slice_ids)
from rwkvseg.data.acdc import LABELS as ACDC_LABELS
from rwkvseg.data.splits import DEFAULT_SPLIT
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
    data_dir: str | None = None              # data root, its isic2018/ or acdc/ folder, or a folder with the
                                             # cache file; None: $RWKVSEG_DATA or ../shared/data (rwkvseg.data.paths)
    split: str = "default"                   # committed split (rwkvseg/splits): ISIC "7-3_seed0" (default) |
                                             # "8-1-1_seedN"; ACDC "ssl4mis" (default) | "authors" [protocols §1]
    img_size: int = 256                      # [paper] binary 256, ACDC/Synapse 224
    augment: bool = True                     # the papers' flips/rotations on the device (IsicAugment / AcdcAugment)
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
    selection: str = "val"                   # "val": best validation score (ISIC: train-sub / val parts of the
                                             # split, 10 % held out) | "last": last epoch, trained on all of train
    eval_every: int = 1                      # validate every N epochs (and after the last)
    tta: bool = True                         # also report the test metrics with the flip TTA

    # system
    device: str | None = None                # None: cuda:LOCAL_RANK if available, else cpu
    bf16: bool = True                        # bf16 autocast (CUDA only; ignored on the CPU)
    channels_last: bool = True               # memory format of the convolutional parts (CUDA only)
    compile: bool = False                    # torch.compile the model (CUDA only; ignored on the CPU)
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
    """The seed of one epoch's dropout / drop-path draws (the loader's permutation and augmentation
    use the same formula, rwkvseg.data.gpu.epoch_generator): a resumed run replays it exactly."""
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
    """A split to evaluate. Binary (ISIC): images (N, C, H, W) uint8 and masks (N, H, W) uint8 {0, 1}
    at the training size. Volumes (ACDC): `volumes` is a list of rwkvseg.data.AcdcVolume (image
    (D, 1, S, S) uint8 as trained, native_label (D, H, W) uint8 that the metrics compare against).
    `ids` names the binary images in order (volumes carry their own names)."""

    name: str
    images: Tensor | None = None
    masks: Tensor | None = None
    volumes: list | None = None
    ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.volumes) if self.volumes is not None else int(self.images.shape[0])


@dataclass
class SegData:
    """What the loop needs: training tensors (uint8, on the device), the two evaluation splits,
    the normalisation shared by training and evaluation, and what the results record."""

    train_images: Tensor          # (N, C, H, W) uint8, on the device, already at img_size
    train_labels: Tensor          # (N, H, W) uint8 labels (binary: {0, 1})
    val: EvalSet | None           # None when selection == "last"
    test: EvalSet
    in_chans: int
    num_classes: int              # 1 for binary (one logit), 4 for ACDC
    normalization: Normalization  # uint8 -> network input, the same in training and evaluation
    classes: tuple[str, ...]      # class names, background first
    split_info: dict              # name, parts with their sizes and list sha256: recorded in every result


def cache_in(data_dir: str | Path | None, filename: str) -> Path | None:
    """`data_dir/filename` when that prebuilt cache file is there (a GPU run carries it), else None."""
    if data_dir is None:
        return None
    path = Path(data_dir) / filename
    return path if path.is_file() else None


def _split_record(dataset: str, split: str, parts: dict[str, str]) -> dict:
    """{"name", "dataset", "split", parts: split_info of each, "train_hash", "test_hash"}."""
    rec = {"name": f"{dataset}/{split}", "dataset": dataset, "split": split}
    for role, part in parts.items():
        rec[role] = split_info(dataset, split, part)
    rec["train_hash"], rec["test_hash"] = rec["train"]["sha256"], rec["test"]["sha256"]
    return rec


def _quick_subset(ids: list[str], n: int | None) -> list[str]:
    return list(ids[:n]) if n else list(ids)


def load_training_data(cfg: TrainConfig, *, device: torch.device) -> SegData:
    """Load cfg.dataset once through rwkvseg.data: the committed split, the uint8 cache, on the device.

    Full runs read the whole data set from its cache file (built on first use, or carried:
    `data_dir` may be the data root, a folder holding `isic2018/` or `acdc/`, that folder itself,
    or a folder holding the cache file `isic2018_SxS.npz` / `acdc_S.npz`). Quick runs
    (max_train_images / max_eval_items set) decode only the items they use, with no cache file.
    """
    if cfg.dataset == "isic2018":
        return _load_isic2018(cfg, device)
    if cfg.dataset == "isic2018_samples":
        return _load_isic_samples(cfg, device)
    if cfg.dataset == "acdc":
        return _load_acdc(cfg, device)
    return _load_synthetic_acdc(cfg, device)


def _binary_data(cfg, device, train, val, test, split_rec) -> SegData:
    """SegData from SegCaches of ISIC pairs (already at img_size)."""
    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return SegData(t(train.images), t(train.masks),
                   EvalSet("val", images=t(val.images), masks=t(val.masks), ids=list(val.ids)) if val is not None
                   else None,
                   EvalSet("test", images=t(test.images), masks=t(test.masks), ids=list(test.ids)),
                   in_chans=3, num_classes=1, normalization=NORMALIZATIONS["isic2018"],
                   classes=("background", "lesion"), split_info=split_rec)


def _load_isic2018(cfg: TrainConfig, device: torch.device) -> SegData:
    split = DEFAULT_SPLIT["isic2018"] if cfg.split == "default" else cfg.split
    parts = {"train": "train-sub", "val": "val", "test": "test"} if cfg.selection == "val" else \
        {"train": "train", "test": "test"}
    ids = {role: split_ids("isic2018", split, part) for role, part in parts.items()}
    ids["train"] = _quick_subset(ids["train"], cfg.max_train_images)
    for role in ("val", "test"):
        if role in ids:
            ids[role] = _quick_subset(ids[role], cfg.max_eval_items)
    size = (cfg.img_size, cfg.img_size)
    quick = cfg.max_train_images or cfg.max_eval_items
    carried = cache_in(cfg.data_dir, f"isic2018_{size[0]}x{size[1]}.npz")
    if carried is not None:
        cache = load_cache(carried)
    elif quick:                                   # decode only what is used: seconds, no file
        folder = dataset_dir("isic2018", cfg.data_dir)
        cache = load_isic(folder, ids=sorted({i for v in ids.values() for i in v}), size=size, dataset="isic2018")
    else:
        cache = isic2018_cache(cfg.data_dir, size=size)
    parts_data = {role: cache.take(v) for role, v in ids.items()}
    rec = _split_record("isic2018", split, parts)
    rec.update(cache_sha256=cache.meta.get("sha256"), n_used={k: len(v) for k, v in ids.items()})
    return _binary_data(cfg, device, parts_data["train"], parts_data.get("val"), parts_data["test"], rec)


def _load_isic_samples(cfg: TrainConfig, device: torch.device) -> SegData:
    """The 16 shipped ISIC 2018 pairs (no data needed): a seeded 10 / 3 / 3 split, for demos only."""
    from rwkvseg.data.splits import random_split

    cache = isic_samples()
    if cache.images.shape[-1] != cfg.img_size:
        x = F.interpolate(torch.from_numpy(cache.images).float(), size=cfg.img_size, mode="bilinear",
                          antialias=True).round().clamp(0, 255).byte().numpy()
        y = resize_label(cache.masks, (cfg.img_size, cfg.img_size)).numpy()
        cache = SegCache(images=x, masks=y, ids=cache.ids, meta=cache.meta)
    train, val, test = random_split(cache.ids, (0.625, 0.1875, 0.1875), seed=cfg.seed, salt="samples")
    if cfg.selection != "val":
        train, val = sorted(train + val), None
    rec = {"name": f"isic2018_samples/seed{cfg.seed}", "dataset": "isic2018_samples", "split": f"seed{cfg.seed}"}
    for role, v in (("train", train), ("val", val), ("test", test)):
        if v is not None:
            rec[role] = {"n": len(v), "sha256": split_sha256(v)}
    rec["train_hash"], rec["test_hash"] = rec["train"]["sha256"], rec["test"]["sha256"]
    train = _quick_subset(train, cfg.max_train_images)
    return _binary_data(cfg, device, cache.take(train), cache.take(val) if val else None, cache.take(test), rec)


def _acdc_data(cfg, device, train_images, train_masks, val_volumes, test_volumes, rec) -> SegData:
    return SegData(torch.from_numpy(np.ascontiguousarray(train_images)).to(device),
                   torch.from_numpy(np.ascontiguousarray(train_masks)).to(device),
                   EvalSet("val", volumes=val_volumes) if val_volumes is not None else None,
                   EvalSet("test", volumes=test_volumes), in_chans=1, num_classes=4,
                   normalization=NORMALIZATIONS["acdc"], classes=ACDC_LABELS, split_info=rec)


def _load_acdc(cfg: TrainConfig, device: torch.device) -> SegData:
    split = DEFAULT_SPLIT["acdc"] if cfg.split == "default" else cfg.split
    parts = {"train": "train", "val": "val", "test": "test"}
    names = {role: split_ids("acdc", split, part) for role, part in parts.items()}
    names["val"] = _quick_subset(names["val"], cfg.max_eval_items)
    names["test"] = _quick_subset(names["test"], cfg.max_eval_items)
    quick = cfg.max_train_images or cfg.max_eval_items
    carried = cache_in(cfg.data_dir, f"acdc_{cfg.img_size}.npz")
    if carried is not None:
        cache = load_cache(carried)
    elif quick:                                   # only the volumes used: seconds, no file
        folder = dataset_dir("acdc", cfg.data_dir)
        depths = volume_depths(folder)
        train, n = [], 0
        for name in names["train"]:
            if cfg.max_train_images and n >= cfg.max_train_images:
                break
            train.append(name)
            n += depths[name]
        names["train"] = train
        wanted = train + [v for v in names["val"] + names["test"] if v not in train]
        cache = build_acdc_cache(folder, volumes=wanted, size=cfg.img_size)
    else:
        cache = acdc_cache(cfg.data_dir, size=cfg.img_size)
    train_ids = _quick_subset(volume_slice_ids(cache, names["train"]), cfg.max_train_images)
    train = cache.take(train_ids)
    rec = _split_record("acdc", split, parts)
    rec.update(cache_sha256=cache.meta.get("sha256"), n_train_slices=len(train_ids),
               n_used={k: len(v) for k, v in names.items()})
    val = cache_volumes(cache, names["val"]) if cfg.selection == "val" else None
    return _acdc_data(cfg, device, train.images, train.masks, val, cache_volumes(cache, names["test"]), rec)


def _load_synthetic_acdc(cfg: TrainConfig, device: torch.device) -> SegData:
    """Synthetic cardiac-like slices and volumes (rwkvseg.data.synthetic): quick mode without ACDC."""
    train = synthetic_acdc(n_slices=cfg.max_train_images or 64, size=cfg.img_size, seed=cfg.seed)
    n_eval = cfg.max_eval_items or 4
    val = synthetic_acdc_volumes(n_eval, size=cfg.img_size, seed=cfg.seed + 1) if cfg.selection == "val" else None
    test = synthetic_acdc_volumes(n_eval, size=cfg.img_size, seed=cfg.seed + 2)
    rec = {"name": f"synthetic_acdc/seed{cfg.seed}", "dataset": "synthetic_acdc", "split": f"seed{cfg.seed}",
           "train": {"n": len(train)}, "test": {"n": len(test)}, "train_hash": None, "test_hash": None,
           "note": "generated from the seed: train seed, val seed + 1, test seed + 2"}
    return _acdc_data(cfg, device, train.images, train.masks, val, test, rec)


def make_loader(cfg: TrainConfig, data: SegData, *, rank: int = 0, world_size: int = 1) -> GpuLoader:
    """The device-resident loader: epoch e draws its permutation and augmentation from (seed, e)
    (the same on every rank; rank r keeps its slice of each global batch), so a resumed run replays
    exactly the batches it would have seen. The last incomplete batch is dropped (BatchNorm)."""
    augment = None
    if cfg.augment:
        augment = IsicAugment() if cfg.is_binary else AcdcAugment()
    return GpuLoader(images=data.train_images, masks=data.train_labels, batch_size=cfg.batch_size,
                     device=data.train_images.device, normalization=data.normalization, augment=augment,
                     shuffle=True, drop_last=True, seed=cfg.seed, rank=rank, world_size=world_size)


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
    """Restore get_rng_state()'s states. torch takes them only as CPU byte tensors: a checkpoint loaded
    with map_location=<a GPU> holds them on the GPU, hence .cpu()."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor, *,
               lr: float, cfg: TrainConfig, bf16: bool) -> torch.Tensor:
    """One optimizer step at learning rate lr on a batch x (b, C, H, W), y (labels): the forward
    under bf16 autocast (if bf16), the loss in float32, backward, optional gradient clipping, the
    optimizer step. Returns the loss, detached (no host sync)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if cfg.channels_last and x.is_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.detach()

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
    # Rank 0 loads first, so that a cache file missing on a fresh machine is built by one process
    # (the others would race on the same temporary file), then the others read it.
    if d.world_size > 1 and not d.is_main:
        dist.barrier()
    data = load_training_data(cfg, device=d.device)
    if d.world_size > 1 and d.is_main:
        dist.barrier()
    n_train = data.train_images.shape[0]
    loader = make_loader(cfg, data, rank=d.rank, world_size=d.world_size)
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
        t_start -= ckpt.get("wall_time_s", 0.0)               # the record's wall time spans every process
        if d.is_main:
            print(f"resumed from {out / 'last.pt'}: epoch {start_epoch}, step {step}")

    if d.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if on_cuda else None)
    if cfg.compile and on_cuda:                               # CPU runs (quick mode, tests) stay eager
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
        batches = loader.iter_epoch(epoch)                    # (seed, epoch): replayed on resume
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
            loss = train_step(model, optimizer, loss_fn, x, y, lr=lr, cfg=cfg, bf16=use_bf16)
            loss_sum += loss
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
                                           normalization=data.normalization, tta=False, hd95=False, bf16=use_bf16)
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
                                wall_time_s=time.time() - t_start,
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
        kw = dict(binary=cfg.is_binary, normalization=data.normalization, hd95=not cfg.is_binary, bf16=use_bf16)
        test = ev.evaluate_split(raw_model, data.test, tta=False, **kw)
        test_tta = ev.evaluate_split(raw_model, data.test, tta=True, **kw) if cfg.tta else None
        train_imgs = sum(r["img_per_s"] * r["epoch_time_s"] for r in history)
        train_time = sum(r["epoch_time_s"] for r in history)
        prov = provenance(cfg, d, wall_time_s=time.time() - t_start, img_per_s=train_imgs / max(train_time, 1e-9),
                          bf16=use_bf16, split=data.split_info, selection=selected,
                          epochs_run=len(history), steps_run=step)
        results = {
            "dataset": cfg.dataset, "model": cfg.model,
            "params": sum(p.numel() for p in raw_model.parameters()),
            "split": data.split_info, "selection": selected,
            "normalization": data.normalization.to_dict(), "classes": list(data.classes),
            "test": test, "test_tta": test_tta,
            "history": history, "config": cfg.to_dict(),
            "provenance": prov,
        }
        if cfg.save_checkpoints:
            results["export"] = str(export_model(raw_model, out / "model", cfg=cfg, data=data, test=test,
                                                 test_tta=test_tta, selection=selected, provenance=prov))
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


def provenance(cfg: TrainConfig, d: Dist, *, wall_time_s: float, img_per_s: float, bf16: bool,
               split: dict | None = None, selection: dict | None = None, epochs_run: int | None = None,
               steps_run: int | None = None) -> dict:
    """Who, what, where, when: the record every result carries (spec book.md §4)."""
    import platform

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
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "triton": triton_version, "numpy": np.__version__, "rwkvseg": rwkvseg.__version__,
        "mode": cfg.mode, "seed": cfg.seed, "bf16": bf16, "compile": cfg.compile and on_cuda,
        "channels_last": cfg.channels_last and on_cuda,
        "split": None if split is None else {k: split.get(k) for k in ("name", "train_hash", "test_hash")},
        "metric_conventions": ev.metric_conventions(binary=cfg.is_binary),
        "epochs": epochs_run, "epochs_planned": cfg.epochs if cfg.iterations is None else None,
        "steps": steps_run, "global_batch": cfg.batch_size,
        "selection_rule": None if selection is None else selection["rule"],
        "wall_time_s": wall_time_s, "train_img_per_s": img_per_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated(d.device) / 2**30 if on_cuda else None,
    }


def export_model(model: nn.Module, path: Path, *, cfg: TrainConfig, data: SegData, test: dict,
                 test_tta: dict | None, selection: dict, provenance: dict) -> Path:
    """The selected weights as a self-describing directory (rwkvseg.hub.save_pretrained): what a
    user loads with rwkvseg.hub.from_pretrained, beside the resumable last.pt / best.pt."""
    from rwkvseg.hub import save_pretrained

    def headline(r: dict | None) -> dict | None:
        if r is None:
            return None
        if cfg.is_binary:
            return {"pooled": r["pooled"], "per_image": r["per_image"], "n_images": r["n_images"]}
        return {"authors": {k: r[k] for k in ("dice", "hd95", "per_class", "n_volumes") if k in r},
                "strict": {k: r["strict"][k] for k in ("dice", "hd95", "per_class") if k in r["strict"]}}

    return save_pretrained(
        model, path, model_name=cfg.model,
        input_size=[data.in_chans, cfg.img_size, cfg.img_size],
        normalization=data.normalization.to_dict(),
        training_data={"dataset": cfg.dataset, "split": data.split_info.get("name"),
                       "train_sha256": data.split_info.get("train_hash"),
                       "test_sha256": data.split_info.get("test_hash"),
                       "cache_sha256": data.split_info.get("cache_sha256")},
        metrics={"test": headline(test), "test_tta": headline(test_tta),
                 "conventions": ev.metric_conventions(binary=cfg.is_binary)},
        classes=list(data.classes), selection=selection,
        provenance={k: provenance[k] for k in ("command", "git_commit", "device", "date", "torch", "rwkvseg")},
        train_config=cfg.to_dict(),
    )
