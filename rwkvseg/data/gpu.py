"""A batch loader whose whole data set already sits on the device.

The uint8 cache (ISIC 2018 at 256 x 256: 0.5 GB of images, 0.17 GB of masks) fits in GPU
memory, so an epoch needs no worker processes and no host-to-device copies: each batch is a
gather of rows, a conversion to float, the augmentation (rwkvseg.data.augment) on the whole batch,
and the normalisation.

    loader = GpuLoader(images=cache.images, masks=cache.masks, batch_size=32, device=device,
                       normalization=NORMALIZATIONS["isic2018"], augment=IsicAugment(), seed=0)
    for x, y in loader:          # x (B, C, H, W) float32, y (B, H, W) int64, on `device`
        ...

Epoch e draws its permutation and augmentation from a CPU generator seeded with (seed, e):
the batches are the same on every device, and a resumed run replays them. The epoch's draws go
to the device in one copy, and no step waits for the device, so the GPU runs ahead of Python.
With world_size > 1 every rank draws the same global batch and keeps rows
[rank b, (rank + 1) b), b = B / world_size (drop_last=True).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from rwkvseg.data.augment import AcdcAugment, AugmentParams, IsicAugment, apply_augment
from rwkvseg.data.normalize import Normalization


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch: permutation, then each batch's augmentation, in order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class GpuLoader:
    """Seeded, shuffled, augmented batches gathered from uint8 tensors held on `device`."""

    def __init__(self, *, images: Tensor | np.ndarray, masks: Tensor | np.ndarray, batch_size: int,
                 device: torch.device | str, normalization: Normalization,
                 augment: IsicAugment | AcdcAugment | None = None, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size or (world_size > 1 and not drop_last):
            raise ValueError(f"with world_size {world_size}, batch_size {batch_size} (the global batch) must divide "
                             "by it and drop_last must be True: every rank takes batch_size / world_size rows")
        self.images = torch.as_tensor(images).to(device)                     # (N, C, H, W) uint8
        self.masks = torch.as_tensor(masks).to(device)                       # (N, H, W) uint8
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.masks.shape != (self.images.shape[0], *self.images.shape[2:]):
            raise ValueError(f"masks must be (N, H, W) = {(self.images.shape[0], *self.images.shape[2:])}, "
                             f"got {tuple(self.masks.shape)}")
        self.device = self.images.device
        self.batch_size = batch_size
        self.normalization = normalization
        self.augment = augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        mean = torch.tensor(normalization.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(normalization.std, dtype=torch.float32)[:, None, None]
        self._mean_std = (mean.to(self.device), std.to(self.device))           # (C, 1, 1) each

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch; the next call gives the next epoch."""
        epoch = self.epoch
        self.epoch += 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch `epoch`: (x (b, C, H, W) float32, y (b, H, W) int64)."""
        n, bs = self.images.shape[0], self.batch_size
        g = epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        sizes = [min(bs, n - i * bs) for i in range(len(self))]
        params = None
        if self.augment is not None:                    # the epoch's draws, batch by batch, one copy
            params = AugmentParams.cat([self.augment.draw(b, g) for b in sizes]).to(self.device)
        order = order.to(self.device)
        mean, std = self._mean_std
        for i, B in enumerate(sizes):
            start = i * bs                                                        # this rank's rows:
            local = slice(start + self.rank * B // self.world_size, start + (self.rank + 1) * B // self.world_size)
            rows = order[local]
            x = self.images[rows].float().div_(255.0)                              # (b, C, H, W) in [0, 1]
            y = self.masks[rows]                                                   # (b, H, W) uint8
            if params is not None:
                x, y = apply_augment(x, y, params[local])
            yield (x - mean) / std, y.long()                                     # = self.normalization(x)
