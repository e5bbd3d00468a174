"""The training loop, read top to bottom (like nanoGPT's train.py), built from pieces.

    results = train(TrainConfig.from_yaml("isic2018_rwkv_unet_t"))

`train` is `prepare`, then per epoch `fit_epoch` and `end_epoch` (validation, logs, checkpoints),
then `finish` (the test split once, the record, the exported weights). Each piece is public, so a
benchmark can time `fit_epoch` or `train_step` on the engine's own data, model and optimizer.

The same code runs on one CPU, one GPU, or several GPUs under torchrun (DistributedDataParallel;
gloo on the CPU, nccl on CUDA):

1. set up the process group (if launched by torchrun), the device and the seeds;
2. load the data set once as uint8 tensors on the device (rwkvseg.data.load_dataset: its cache
   file, its committed split lists, whose sha256 every result records); without data, quick mode
   trains on the stand-in the data set names (the shipped ISIC samples, synthetic ACDC slices);
   batches come from rwkvseg.data.GpuLoader (the papers' augmentations on the device);
3. build the model (rwkvseg.models.create_model), optionally channels_last and torch.compile,
   AdamW, and the per-iteration learning-rate schedule;
4. resume from out_dir/last.pt when asked (model, optimizer, step, epoch, history, RNG states);
5. per epoch: the permutation and augmentation come from (seed, epoch), so a resumed run replays
   the same batches; every process takes its slice of each global batch; bf16 autocast; then
   validation, metrics.csv, history.json, last.pt (and best.pt);
6. at the end, load the selected weights (best on validation, or the last epoch), evaluate the test
   split once (with and without the flip TTA), write results.json with provenance and export the
   weights to out_dir/model.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm.auto import tqdm

from rwkvseg.data import AcdcAugment, GpuLoader, IsicAugment
from rwkvseg.data.errors import DataNotFoundError
from rwkvseg.data.paths import MISSING_DATA, find_data_root
from rwkvseg.data.sets import STAND_INS, SegData, dataset_info, load_dataset
from rwkvseg.engine.checkpoint import (RESUME_KEYS, CheckpointError, export_model, load_checkpoint, load_weights,
                                       rng_state, save_checkpoint, set_rng_state)
from rwkvseg.engine.config import TrainConfig
from rwkvseg.engine.distributed import Dist, convert_batchnorm_for_ddp, leave_process_group, setup_distributed
from rwkvseg.engine.evaluate import evaluate_split, metric_conventions
from rwkvseg.env import device_of, provenance
from rwkvseg.losses import build_loss
from rwkvseg.models import create_model

# --------------------------------------------------------------------------------------------
# Seeds, data, schedule
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; with `deterministic`, ask torch for deterministic kernels.

    cuDNN picks its convolution algorithms by its heuristics, without timing them (cudnn.benchmark
    off): on an H100 the timed search cost RWKV-UNet-T 10-12 s before the first step of every process
    and bought 0.7 % of step speed (book chapter 10, Table 13)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's dropout / drop-path draws (the loader's permutation and augmentation
    use the same formula, rwkvseg.data.gpu.epoch_generator): a resumed run replays it exactly."""
    return seed * 1_000_003 + epoch


def choose_dataset(cfg: TrainConfig) -> str:
    """The data set the run loads: cfg.dataset, or, in quick mode with no data anywhere, its stand-in
    (the shipped ISIC samples, synthetic ACDC slices). Full mode without data is an error that says
    what to download. A data_dir that is given but missing is always an error."""
    info = dataset_info(cfg.dataset)
    if not info.needs_data or cfg.data_dir is not None or find_data_root(required=False) is not None:
        return cfg.dataset
    if cfg.mode == "quick":
        return STAND_INS[cfg.dataset]
    raise DataNotFoundError(f"{info.name} data", "no data root given (data_dir, RWKVSEG_DATA or ~/rwkvseg-data)",
                            hint=MISSING_DATA)


def load_data(cfg: TrainConfig, device: torch.device) -> SegData:
    """cfg's data set through rwkvseg.data.load_dataset, on `device`."""
    return load_dataset(cfg.dataset, split=cfg.split, img_size=cfg.img_size, data_dir=cfg.data_dir,
                        with_val=cfg.selection == "val", max_train=cfg.max_train_images, max_eval=cfg.max_eval_items,
                        seed=cfg.seed, device=device)


def make_loader(cfg: TrainConfig, data: SegData, *, rank: int = 0, world_size: int = 1) -> GpuLoader:
    """The device-resident loader: epoch e draws its permutation and augmentation from (seed, e)
    (the same on every process; process r keeps its slice of each global batch), so a resumed run
    replays exactly the batches it would have seen. The last incomplete batch is dropped (BatchNorm)."""
    augment = None
    if cfg.augment:
        augment = IsicAugment() if data.info.binary else AcdcAugment()
    return GpuLoader(images=data.train_images, masks=data.train_labels, batch_size=cfg.batch_size,
                     device=data.train_images.device, normalization=data.normalization, augment=augment,
                     shuffle=True, drop_last=True, seed=cfg.seed, rank=rank, world_size=world_size)


def lr_at(step: int, *, total: int, lr: float, min_lr: float, warmup: int = 0,
          schedule: str = "cosine") -> float:
    """Learning rate of optimizer step `step` (0-based) out of `total`.

    cosine: min_lr + (lr - min_lr) (1 + cos(pi s)) / 2, s = progress after warm-up in [0, 1]
    (one half-period over the whole run: RWKV-UNet Sec. 4.1's cosine annealing, stepped per
    iteration); poly: min_lr + (lr - min_lr) (1 - s)^0.9 (the authors' Synapse code); constant: lr.
    Warm-up: linear from lr / warmup to lr over `warmup` steps.
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
# One step
# --------------------------------------------------------------------------------------------


def make_optimizer(model: nn.Module, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                   weight_decay: float = 0.0, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW over the model's parameters; on CUDA the fused implementation (one kernel per step
    for all parameters instead of a few per parameter group; the same update up to rounding).
    capturable: its step may be captured in a CUDA graph (GraphedStep)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                             fused=device_of(model).type == "cuda", capturable=capturable)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor, *,
               lr: float | torch.Tensor, bf16: bool, channels_last: bool = False,
               grad_clip: float = 0.0) -> torch.Tensor:
    """One optimizer step at learning rate lr on a batch x (b, C, H, W), y (labels): the forward
    under bf16 autocast (if bf16), the loss in float32, backward, optional gradient clipping, the
    optimizer step. Returns the loss, detached (no host sync). lr may be a device tensor (a
    capturable optimizer reads it on the GPU: GraphedStep)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if channels_last and x.is_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = loss_fn(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


class GraphedStep:
    """train_step replayed from one CUDA graph: the step's ~2000 kernel launches become one, so the
    GPU no longer waits for the host between kernels (RWKV-UNet-T at batch 32 on an H100: the eager
    step 1.12x faster; book chapter 10).

    The first `warmup` calls are ordinary eager steps on a side stream: Triton's builds, the scan
    routes and the optimizer's state come into being there. The next call captures one step into
    the graph and replays it; every later call copies its batch into the graph's input tensors,
    writes the learning rate into a device tensor the optimizer reads, and replays. The same
    arithmetic as train_step, in the same order.

    What a graph needs: the same shapes every step (the loader drops the last incomplete batch),
    no host synchronisation inside the step (none in rwkvseg's models), one process, and an
    optimizer made with make_optimizer(..., capturable=True). Dropout and drop-path draws are
    replayed from the CUDA generator's current seed and offset, so torch.manual_seed still rules them.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, *, bf16: bool,
                 channels_last: bool = False, grad_clip: float = 0.0, warmup: int = 3):
        self.model, self.optimizer, self.loss_fn, self.warmup = model, optimizer, loss_fn, warmup
        self.options = dict(bf16=bf16, channels_last=channels_last, grad_clip=grad_clip)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.lr = self.x = self.y = self.loss = None           # the graph's tensors

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, lr: float) -> torch.Tensor:
        if self.lr is None:
            self.lr = torch.zeros((), device=x.device)
        self.lr.fill_(lr)
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                loss = train_step(self.model, self.optimizer, self.loss_fn, x, y, lr=self.lr, **self.options)
            torch.cuda.current_stream(x.device).wait_stream(side)
            return loss
        if self.graph is None:
            self.x, self.y = x.clone(), y.clone()
            self.graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)         # the gradients come from the graph's memory
            with torch.cuda.graph(self.graph):
                self.loss = train_step(self.model, self.optimizer, self.loss_fn, self.x, self.y, lr=self.lr,
                                       **self.options)
        else:
            self.x.copy_(x)
            self.y.copy_(y)
        self.graph.replay()
        return self.loss.clone()                               # the next replay overwrites self.loss


def graph_replay(fn, warmup: int = 3):
    """fn captured in a CUDA graph after `warmup` calls on a side stream (Triton's builds and autotuning
    happen there); returns the graph's replay, which launches every kernel of fn at once.
    For a fixed computation on fixed tensors (benchmarks); a training step is GraphedStep."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


# --------------------------------------------------------------------------------------------
# The pieces of a run
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything a training run holds between its pieces."""

    cfg: TrainConfig
    dist: Dist
    data: SegData
    loader: GpuLoader
    model: nn.Module                  # the network itself: saved, evaluated, exported
    step_model: nn.Module             # what a step calls: the model under DDP and / or torch.compile
    step_fn: object                   # step_fn(x, y, lr=...) -> loss: train_step, or a GraphedStep of it
    optimizer: torch.optim.Optimizer
    loss_fn: object
    out: Path
    steps_per_epoch: int
    total_steps: int                  # the schedule's length
    stop_at: int                      # the step this process stops at (max_steps may cut the schedule)
    epochs: int
    bf16: bool
    t_start: float                    # prepare()'s start; moved back by the wall time of resumed runs
    t_process: float                  # prepare()'s start in this process
    step: int = 0
    first_step_s: float | None = None   # this process: prepare()'s start to the end of its first step
    setup_s: dict = field(default_factory=dict)   # prepare()'s parts: data (loaded onto the device), model
    start_epoch: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None


def prepare(cfg: TrainConfig, *, data: SegData | None = None) -> Run:
    """Process group, seeds, data (or the given `data`), model, optimizer, loss; resumed from
    out_dir/last.pt when cfg.resume and the file exists (a changed config is refused)."""
    t_start = time.time()
    d = setup_distributed(cfg.device)
    if data is None and (name := choose_dataset(cfg)) != cfg.dataset:
        if d.is_main:
            print(f"no {cfg.dataset} data found: quick mode trains on {name} instead\n"
                  "  (real data: --data_dir, a chapter's DATA_DIR, or RWKVSEG_DATA)")
        cfg = dataclasses.replace(cfg, dataset=name)
    seed_everything(cfg.seed, cfg.deterministic)
    on_cuda = d.device.type == "cuda"
    out = Path(cfg.out_dir)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % d.world_size:
        raise ValueError(f"TrainConfig.batch_size {cfg.batch_size} (global) must be divisible by the "
                         f"{d.world_size} processes; choose a multiple of {d.world_size}")

    # Rank 0 loads first: a cache file missing on a fresh machine is built by one process.
    t_data = time.time()
    if data is None:
        if d.world_size > 1 and not d.is_main:
            dist.barrier()
        data = load_data(cfg, d.device)
        if d.world_size > 1 and d.is_main:
            dist.barrier()
    n_train = data.train_images.shape[0]
    steps_per_epoch = n_train // cfg.batch_size               # drop_last: BatchNorm needs full batches
    if steps_per_epoch == 0:
        raise ValueError(f"only {n_train} training items for a global batch of {cfg.batch_size}: "
                         "lower TrainConfig.batch_size or raise max_train_images")
    total_steps = cfg.iterations or cfg.epochs * steps_per_epoch

    t_model = time.time()
    model = create_model(cfg.model, in_chans=data.info.in_chans, num_classes=data.info.num_classes,
                         **cfg.model_kwargs).to(d.device)
    if d.world_size > 1 and cfg.sync_bn:
        model = convert_batchnorm_for_ddp(model, d.device)
    if cfg.channels_last and on_cuda:
        model = model.to(memory_format=torch.channels_last)
    graphed = cfg.cuda_graph and on_cuda
    if graphed and d.world_size > 1:
        raise ValueError("TrainConfig.cuda_graph runs in one process; turn it off under torchrun")
    optimizer = make_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, capturable=graphed)
    run = Run(cfg=cfg, dist=d, data=data, loader=make_loader(cfg, data, rank=d.rank, world_size=d.world_size),
              model=model, step_model=model, step_fn=None, optimizer=optimizer,
              loss_fn=build_loss(cfg.loss_config()), out=out,
              steps_per_epoch=steps_per_epoch, total_steps=total_steps,
              stop_at=min(total_steps, cfg.max_steps or total_steps),
              epochs=math.ceil(total_steps / steps_per_epoch), bf16=cfg.bf16 and on_cuda, t_start=t_start,
              t_process=t_start, setup_s={"data": t_model - t_data, "model": time.time() - t_model})
    if cfg.resume:
        resume(run)
    if d.world_size > 1:
        run.step_model = nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if on_cuda else None)
    if cfg.compile and on_cuda:                                # CPU runs (quick mode, tests) stay eager
        run.step_model = torch.compile(run.step_model)
        run.loss_fn = torch.compile(run.loss_fn)               # its sigmoid, BCE and Dice sums: a few fused kernels
    options = dict(bf16=run.bf16, channels_last=cfg.channels_last, grad_clip=cfg.grad_clip)
    run.step_fn = (GraphedStep(run.step_model, optimizer, run.loss_fn, **options) if graphed
                   else partial(train_step, run.step_model, optimizer, run.loss_fn, **options))
    return run


RESUMABLE = ("out_dir", "resume", "resume_changed_config", "max_steps", "log_every", "progress", "command", "device",
             "eval_every", "tta", "mode", "cuda_graph")


def resume(run: Run) -> None:
    """Continue from out_dir/last.pt: model, optimizer, step, epoch, history, best, RNG states.
    A checkpoint of another config is refused (naming the fields that differ, except those in
    RESUMABLE); with no last.pt the run says so and starts fresh."""
    path = run.out / "last.pt"
    if not path.exists():
        if run.dist.is_main:
            print(f"resume: no {path} yet, starting from the first epoch")
        return
    ckpt = load_checkpoint(path, map_location=run.dist.device)
    now, then = run.cfg.to_dict(), ckpt["config"]
    changed = sorted(k for k in now if k not in RESUMABLE and _plain(now[k]) != _plain(then.get(k)))
    if changed and not run.cfg.resume_changed_config:
        raise CheckpointError(path, "was written by a different config: " + ", ".join(
            f"{k} {then.get(k)!r} -> {now[k]!r}" for k in changed),
            "resume with the config that wrote it, choose a new out_dir, or set resume_changed_config")
    if changed and run.dist.is_main:
        print(f"resume: continuing {path} with a changed config ({', '.join(changed)})")
    load_weights(run.model, ckpt["model"], path)
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(path, f"cannot be resumed: it lacks {missing} (best.pt holds only the weights)",
                              "resume from the last.pt a run writes after every epoch")
    capturable = [group["capturable"] for group in run.optimizer.param_groups]
    run.optimizer.load_state_dict(ckpt["optimizer"])
    for group, flag in zip(run.optimizer.param_groups, capturable):   # this run's cuda_graph, not the file's
        group["capturable"] = flag
    run.start_epoch, run.step, run.history, run.best = ckpt["epoch"] + 1, ckpt["step"], ckpt["history"], ckpt["best"]
    set_rng_state(ckpt["rng"])
    run.t_start -= ckpt.get("wall_time_s", 0.0)                # the record's wall time spans every process
    if run.dist.is_main:
        print(f"resumed from {path.name}: epoch {run.start_epoch}, step {run.step}")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def fit_epoch(run: Run, epoch: int, *, show: str = "none", on_step=None) -> dict:
    """Train one epoch (or up to run.stop_at); returns its record: mean loss, lr, time, img/s.
    `on_step(step, loss)` is called after every step with the detached loss (no host sync)."""
    cfg, d = run.cfg, run.dist
    torch.manual_seed(epoch_seed(cfg.seed, epoch))             # dropout / drop-path of this epoch
    run.step_model.train()
    bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{run.epochs}", leave=False) \
        if show == "tqdm" else None
    loss_sum = torch.zeros((), device=d.device)
    n_steps = 0
    if d.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    for x, y in run.loader.iter_epoch(epoch):                  # (seed, epoch): replayed on resume
        if run.step >= run.stop_at:
            break
        lr = lr_at(run.step, total=run.total_steps, lr=cfg.lr, min_lr=cfg.min_lr, warmup=cfg.warmup_iters,
                   schedule=cfg.schedule)
        loss = run.step_fn(x, y, lr=lr)
        loss_sum += loss
        n_steps += 1
        run.step += 1
        if run.first_step_s is None:                           # startup: imports excluded, compile included
            if d.device.type == "cuda":
                torch.cuda.synchronize()
            run.first_step_s = time.time() - run.t_process
        if on_step is not None:
            on_step(run.step, loss)
        if bar is not None:
            bar.update(1)
            if n_steps % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        if cfg.log_every and run.step % cfg.log_every == 0 and show != "none":
            print(f"  step {run.step}: loss {loss.item():.4f} lr {lr:.2e}")
    if d.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t0
    if bar is not None:
        bar.close()
    if d.world_size > 1:
        dist.all_reduce(loss_sum)
        loss_sum /= d.world_size
    return {"epoch": epoch, "step": run.step, "train_loss": (loss_sum / max(1, n_steps)).item(),
            "lr": float(run.optimizer.param_groups[0]["lr"]), "epoch_time_s": dt,     # a tensor under GraphedStep
            "img_per_s": n_steps * cfg.batch_size / max(dt, 1e-9), "val_metric": None, "val_score": None}


def validate(run: Run, rec: dict) -> None:
    """Score the validation split into `rec`; keep best.pt when the score is the best so far."""
    data = run.data
    scores = evaluate_split(run.model, data.val, binary=data.info.binary, normalization=data.normalization,
                            tta=False, hd95=False, bf16=run.bf16)
    rec["val_metric"], rec["val_score"] = scores["selection_metric"], scores["selection_score"]
    if run.best is None or rec["val_score"] > run.best["score"]:
        run.best = {"epoch": rec["epoch"], "step": run.step, "metric": rec["val_metric"], "score": rec["val_score"]}
        if run.cfg.save_checkpoints:
            save_checkpoint(run.out / "best.pt", model=run.model.state_dict(), epoch=rec["epoch"], step=run.step,
                            config=run.cfg.to_dict(), best=run.best, num_classes=data.info.num_classes,
                            in_chans=data.info.in_chans)


def end_epoch(run: Run, rec: dict, *, show: str = "none", on_epoch_end=None) -> None:
    """After an epoch, on the main process: validation (when due), history, metrics.csv, last.pt."""
    cfg = run.cfg
    last = rec["epoch"] == run.epochs - 1 or run.step >= run.stop_at
    if cfg.selection == "val" and ((rec["epoch"] + 1) % cfg.eval_every == 0 or last):
        validate(run, rec)
    run.history.append(rec)
    write_history(run.out, run.history)
    if cfg.save_checkpoints:
        save_checkpoint(run.out / "last.pt", model=run.model.state_dict(), optimizer=run.optimizer.state_dict(),
                        scheduler={"kind": cfg.schedule, "step": run.step, "total": run.total_steps},
                        epoch=rec["epoch"], step=run.step, history=run.history, best=run.best, rng=rng_state(),
                        wall_time_s=time.time() - run.t_start, config=cfg.to_dict(),
                        num_classes=run.data.info.num_classes, in_chans=run.data.info.in_chans)
    if show in ("line", "tqdm"):
        print(format_epoch_line(rec, run.epochs), flush=True)
    if on_epoch_end is not None:
        on_epoch_end(rec, run.history)


def finish(run: Run) -> dict:
    """The test split, once, with the selected weights; results.json; the exported weights."""
    cfg, data, out = run.cfg, run.data, run.out
    if cfg.selection == "val" and run.best is not None and cfg.save_checkpoints and (out / "best.pt").exists():
        best = out / "best.pt"
        load_weights(run.model, load_checkpoint(best, map_location=run.dist.device)["model"], best)
        selected = {"rule": "best validation " + run.best["metric"], **run.best}
    else:
        selected = {"rule": "last epoch", "epoch": run.history[-1]["epoch"] if run.history else None,
                    "step": run.step}
    binary = data.info.binary
    kw = dict(binary=binary, normalization=data.normalization, hd95=not binary, bf16=run.bf16)
    test = evaluate_split(run.model, data.test, tta=False, **kw)
    test_tta = evaluate_split(run.model, data.test, tta=True, **kw) if cfg.tta else None
    prov = run_provenance(run, selected)
    results = {
        "dataset": data.info.name, "model": cfg.model, "params": sum(p.numel() for p in run.model.parameters()),
        "split": data.split_info, "selection": selected, "normalization": data.normalization.to_dict(),
        "classes": list(data.info.classes), "test": test, "test_tta": test_tta,
        "history": run.history, "config": cfg.to_dict(), "provenance": prov,
    }
    if cfg.save_checkpoints:
        metrics = {"test": _headline(test, binary), "test_tta": _headline(test_tta, binary),
                   "conventions": metric_conventions(binary=binary)}
        results["export"] = str(export_model(
            run.model, out / "model", model_name=cfg.model, input_size=[data.info.in_chans, cfg.img_size, cfg.img_size],
            normalization=data.normalization.to_dict(), classes=list(data.info.classes),
            train_config=cfg.to_dict(), split_info=data.split_info, metrics=metrics,
            selection=selected, provenance=prov))
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def leave(run: Run) -> None:
    """The end of a run under torchrun: drop the DDP model (its reducer must go before the process group),
    then leave the process group (rwkvseg.engine.distributed.leave_process_group). One process: nothing."""
    if run.dist.world_size > 1:
        run.step_fn = run.step_model = None
        leave_process_group()


def train(cfg: TrainConfig, *, on_epoch_end=None) -> dict:
    """Train per `cfg`; return the results dict also written to out_dir/results.json (main process;
    other processes return None). on_epoch_end(record, history): called on the main process after
    each epoch (the book's live curve)."""
    run = prepare(cfg)
    d = run.dist
    show = progress_kind(cfg.progress) if d.is_main else "none"
    if d.is_main:
        print(f"{cfg.model} on {run.data.info.name}: {run.data.train_images.shape[0]} training items, "
              f"{run.steps_per_epoch} steps/epoch x {run.epochs} epochs = {run.total_steps} steps, global batch "
              f"{cfg.batch_size} on {d.world_size} process(es), {d.device}, bf16 {run.bf16}")
    for epoch in range(run.start_epoch, run.epochs):
        if run.step >= run.stop_at:
            break
        rec = fit_epoch(run, epoch, show=show)
        if d.is_main:
            end_epoch(run, rec, show=show, on_epoch_end=on_epoch_end)
        if d.world_size > 1:
            dist.barrier()
    results = finish(run) if d.is_main else None
    leave(run)
    return results


# --------------------------------------------------------------------------------------------
# Logs and records
# --------------------------------------------------------------------------------------------


def progress_kind(requested: str) -> str:
    """"auto": a tqdm bar in a terminal, one line per epoch elsewhere (notebooks, logs, the book)."""
    if requested != "auto":
        return requested
    return "tqdm" if sys.stderr.isatty() else "line"


def format_epoch_line(rec: dict, epochs: int) -> str:
    parts = [f"epoch {rec['epoch'] + 1:>3}/{epochs}", f"step {rec['step']}",
             f"loss {rec['train_loss']:.4f}", f"lr {rec['lr']:.2e}", f"{rec['img_per_s']:.0f} img/s"]
    if rec.get("val_score") is not None:
        parts.append(f"val {rec['val_metric']} {rec['val_score']:.4f}")
    return " | ".join(parts)


def write_history(out: Path, history: list[dict]) -> None:
    """metrics.csv (one row per epoch) and history.json, rewritten whole after each epoch."""
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0].keys()))
        w.writeheader()
        w.writerows(history)
    (out / "history.json").write_text(json.dumps(history, indent=1))


def run_provenance(run: Run, selected: dict) -> dict:
    """rwkvseg.env.provenance plus what a training run adds: split, schedule, speed, memory."""
    cfg, d, history = run.cfg, run.dist, run.history
    on_cuda = d.device.type == "cuda"
    images = sum(r["img_per_s"] * r["epoch_time_s"] for r in history)
    seconds = sum(r["epoch_time_s"] for r in history)
    split = run.data.split_info
    return provenance(
        mode=cfg.mode, seed=cfg.seed, device=d.device, command=cfg.command,
        world_size=d.world_size, bf16=run.bf16, compile=cfg.compile and on_cuda,
        cuda_graph=cfg.cuda_graph and on_cuda,
        channels_last=cfg.channels_last and on_cuda,
        split={k: split.get(k) for k in ("name", "train_hash", "test_hash")},
        metric_conventions=metric_conventions(binary=run.data.info.binary),
        epochs=len(history), epochs_planned=cfg.epochs if cfg.iterations is None else None,
        steps=run.step, global_batch=cfg.batch_size, selection_rule=selected["rule"],
        wall_time_s=time.time() - run.t_start, time_to_first_step_s=run.first_step_s, setup_s=run.setup_s,
        train_img_per_s=images / max(seconds, 1e-9),
        peak_memory_gib=torch.cuda.max_memory_allocated(d.device) / 2**30 if on_cuda else None,
    )


def _headline(r: dict | None, binary: bool) -> dict | None:
    """The few numbers a weights card carries."""
    if r is None:
        return None
    if binary:
        return {"pooled": r["pooled"], "per_image": r["per_image"], "n_images": r["n_images"]}
    return {"authors": {k: r[k] for k in ("dice", "hd95", "per_class", "n_volumes") if k in r},
            "strict": {k: r["strict"][k] for k in ("dice", "hd95", "per_class") if k in r["strict"]}}
