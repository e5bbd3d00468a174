"""From stored uint8 pixels to the network's float input: x = (pixel / 255 - mean) / std.

Training (rwkvseg.data.gpu) and evaluation must use the same Normalization; a result or a
checkpoint records `Normalization.to_dict()`.

[choose] ISIC: per-channel mean and std of the 1816 training images of the isic2018 7-3_seed0
split at 256 x 256, pooled over pixels (stats.channel_mean_std; a test recomputes them).
VM-UNet instead normalises with one scalar mean/std (157.561 / 26.706 on the 0-255 scale) and
then min-max rescales each image; U-KAN's code (RWKV-UNet binary tasks) uses ImageNet statistics.
ACDC: none beyond [0, 1]: the slices are already min-max normalised per volume, and RWKV-UNet
(TransUNet's pipeline) feeds them as they are.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std on the [0, 1] scale, and where they come from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) float in [0, 1] -> normalised float32 on the same device."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device)[:, None, None]
        return (x.float() - mean) / std

    def from_uint8(self, x: Tensor) -> Tensor:
        """(B, C, H, W) uint8 -> normalised float32: what evaluation feeds the network."""
        return self(x.float() / 255.0)

    def to_dict(self) -> dict:
        return asdict(self)


ISIC2018 = Normalization(
    mean=(0.708845, 0.572123, 0.520862),
    std=(0.149401, 0.166778, 0.180589),
    source="per-channel mean/std of isic2018 7-3_seed0 train (1816 images, 256x256)",
)
UNIT = Normalization(mean=(0.0,), std=(1.0,), source="none: [0, 1] as stored (ACDC, min-max per volume)")
NORMALIZATIONS = {"isic2018": ISIC2018, "acdc": UNIT}
