"""The papers' training augmentations, applied to a whole batch on its device.

Two recipes; each draws one batch's parameters on the CPU from a seeded torch.Generator (so a
seed gives the same augmentation on any device), and `apply_augment` transforms images and masks
together:

- `IsicAugment` (VM-UNet / MS-RWKV Sec. 3.1, ISIC): horizontal flip p 0.5, vertical flip p 0.5,
  then with p 0.5 a rotation by an angle drawn per sample, uniform in [0, 360). [choose] VM-UNet's
  code draws its angle once, when the transform is built (a quirk); here every sample draws one.
- `AcdcAugment` (TransUNet's generator, used by RWKV-UNet's ACDC code): with p 0.5 "rot-flip"
  (np.rot90 by k in {0..3}, then np.flip along axis 0 or 1), otherwise with p 0.5 a rotation by
  an integer angle in [-20, 20) (np.random.randint(-20, 20)); otherwise nothing. A rot90 followed
  by a flip is always a reflection: rot-flip picks one of the 4 reflections of the square.

Flips, transposes and rot90 are exact index operations. Rotations by any angle use
affine_grid / grid_sample about the image centre (positive = counter-clockwise on screen),
bilinear for images and nearest for masks, zeros outside (black image, background label).
[choose] The authors' ACDC rotation interpolates images with nearest neighbour (scipy order 0);
here images use bilinear.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentParams:
    """Draws for B samples, every field (B,): first transpose, then h-flip, then v-flip, then
    rotate by `angle` degrees where `rotate` is set. Drawn on the CPU; `to(device)` moves them."""

    transpose: Tensor             # (B,) bool, swap H and W (square images only)
    hflip: Tensor                 # (B,) bool, mirror left-right
    vflip: Tensor                 # (B,) bool, mirror top-bottom
    rotate: Tensor                # (B,) bool
    angle: Tensor                 # (B,) float32 degrees, counter-clockwise on screen

    def __getitem__(self, rows: slice) -> "AugmentParams":
        """The draws of some rows (one batch of an epoch's draws, a rank's share of a batch)."""
        return AugmentParams(self.transpose[rows], self.hflip[rows], self.vflip[rows], self.rotate[rows],
                             self.angle[rows])

    def to(self, device: torch.device | str) -> "AugmentParams":
        return AugmentParams(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list["AugmentParams"]) -> "AugmentParams":
        """Several batches' draws as one (an epoch's, moved to the device in one go)."""
        return AugmentParams(*(torch.cat([getattr(p, f) for p in parts]) for f in AugmentParams.__dataclass_fields__))

    @staticmethod
    def identity(n: int) -> "AugmentParams":
        no = torch.zeros(n, dtype=torch.bool)
        return AugmentParams(no, no.clone(), no.clone(), no.clone(), torch.zeros(n))


@dataclass(frozen=True)
class IsicAugment:
    """VM-UNet / MS-RWKV ISIC augmentation: h-flip, v-flip, rotation in [0, 360) with p 0.5."""

    p_hflip: float = 0.5                  # [code] VM-UNet myRandomHorizontalFlip(p=0.5)
    p_vflip: float = 0.5                  # [code] myRandomVerticalFlip(p=0.5)
    p_rotate: float = 0.5                 # [code] myRandomRotation(p=0.5, degree=[0, 360])
    degrees: tuple[float, float] = (0.0, 360.0)

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        hflip = torch.rand(n, generator=generator) < self.p_hflip
        vflip = torch.rand(n, generator=generator) < self.p_vflip
        rotate = torch.rand(n, generator=generator) < self.p_rotate
        lo, hi = self.degrees
        angle = lo + (hi - lo) * torch.rand(n, generator=generator)
        return AugmentParams(torch.zeros(n, dtype=torch.bool), hflip, vflip, rotate, angle)


def _reflection_table() -> dict[tuple[int, int], tuple[bool, bool, bool]]:
    """(k, axis) of np.flip(np.rot90(x, k), axis) -> the same map as (transpose, hflip, vflip).

    Found by trying the 8 combinations on a probe array, so it agrees with numpy by construction."""
    probe = np.arange(9).reshape(3, 3)
    table = {}
    for k, axis in itertools.product(range(4), range(2)):
        target = np.flip(np.rot90(probe, k), axis)
        for t, h, v in itertools.product((False, True), repeat=3):
            x = probe.T if t else probe
            x = x[:, ::-1] if h else x
            x = x[::-1] if v else x
            if np.array_equal(x, target):
                table[(k, axis)] = (t, h, v)
    return table


REFLECTIONS = _reflection_table()


@dataclass(frozen=True)
class AcdcAugment:
    """TransUNet / RWKV-UNet ACDC augmentation: rot-flip with p 0.5, else rotation with p 0.5."""

    p_rot_flip: float = 0.5               # [code] `if random.random() > 0.5: random_rot_flip`
    p_rotate: float = 0.5                 # [code] `elif random.random() > 0.5: random_rotate`
    degrees: tuple[int, int] = (-20, 20)  # [code] np.random.randint(-20, 20): integers, 20 excluded

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        rot_flip = torch.rand(n, generator=generator) < self.p_rot_flip
        rotate = ~rot_flip & (torch.rand(n, generator=generator) < self.p_rotate)
        k = torch.randint(0, 4, (n,), generator=generator)
        axis = torch.randint(0, 2, (n,), generator=generator)
        angle = torch.randint(self.degrees[0], self.degrees[1], (n,), generator=generator).float()
        maps = torch.tensor([REFLECTIONS[(int(a), int(b))] for a, b in zip(k, axis)], dtype=torch.bool)
        maps = maps.reshape(n, 3) & rot_flip[:, None]                          # identity where no rot-flip
        return AugmentParams(maps[:, 0], maps[:, 1], maps[:, 2], rotate, angle)


def rotation_theta(angle: Tensor, height: int, width: int) -> Tensor:
    """(B,) degrees -> (B, 2, 3) float32 affine_grid matrices rotating about the centre in pixel space.

    affine_grid works in coordinates normalised by W/2 and H/2; the H/W factors keep the
    rotation rigid on non-square images."""
    a = torch.deg2rad(angle.double())
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin * height / width, zero], -1),
                         torch.stack([sin * width / height, cos, zero], -1)], -2)
    return theta.float()


def apply_augment(images: Tensor, masks: Tensor, params: AugmentParams) -> tuple[Tensor, Tensor]:
    """Images (B, C, H, W) float and masks (B, H, W) integer, augmented together on their device.

    Every step runs on the whole batch and selects per sample with torch.where (the rotation too:
    rotated copies of all rows, kept where `rotate` is set), so nothing waits for the device."""
    p = params.to(images.device)
    H, W = images.shape[-2:]
    if H == W:
        images = torch.where(p.transpose[:, None, None, None], images.transpose(-1, -2), images)
        masks = torch.where(p.transpose[:, None, None], masks.transpose(-1, -2), masks)
    elif bool(p.transpose.any()):
        raise ValueError(f"transposes (the ACDC rot-flip) need square images, got {H}x{W}: resize first")
    images = torch.where(p.hflip[:, None, None, None], images.flip(-1), images)
    masks = torch.where(p.hflip[:, None, None], masks.flip(-1), masks)
    images = torch.where(p.vflip[:, None, None, None], images.flip(-2), images)
    masks = torch.where(p.vflip[:, None, None], masks.flip(-2), masks)

    grid = F.affine_grid(rotation_theta(p.angle, H, W), [images.shape[0], 1, H, W], align_corners=False)
    turned = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    turned_masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                                 align_corners=False)[:, 0].to(masks.dtype)             # (B, H, W)
    images = torch.where(p.rotate[:, None, None, None], turned, images)
    masks = torch.where(p.rotate[:, None, None], turned_masks, masks)
    return images, masks
