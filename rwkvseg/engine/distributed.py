"""Several processes, one run: the process group, each process's device, synchronised BatchNorm.

torchrun starts one process per GPU (or several on the CPU, over gloo); every process runs the
same training loop on its slice of each global batch (rwkvseg.engine.loop), under
DistributedDataParallel, with BatchNorm statistics summed over all processes.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor


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


def leave_process_group() -> None:
    """Wait for every process, then destroy the process group.

    Call it once the DistributedDataParallel model is dropped: gloo's worker thread frees its last
    collective's tensors under the GIL, and a process group that dies with DDP's reducer is destroyed by a
    C++ destructor that holds the GIL while it joins that thread (a deadlock at exit, PyTorch issue 56297).
    Destroyed here, the process group releases the GIL first.
    """
    dist.barrier()
    gc.collect()                        # the reducer of a dropped DDP model, if a reference cycle kept it
    dist.destroy_process_group()


class AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over all processes, differentiable: the gradient of each process's input is the sum
    of the output's gradients over all processes."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class AllReduceBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are summed over all ranks, on any device.

    torch's nn.SyncBatchNorm runs only on accelerators; this one sums with the differentiable
    AllReduceSum, so gloo on the CPU gets the same statistics as one process
    with the whole global batch (what the DDP test checks). Used on the CPU; CUDA uses
    nn.SyncBatchNorm.
    """

    def forward(self, x: Tensor) -> Tensor:                                   # (B, C, H, W)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        n = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n])    # (2C + 1,)
        stats = AllReduceSum.apply(stats)
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
