"""Masks drawn over their images, as RGB arrays any plotting library can show."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# One colour per label; ISIC uses 1 (lesion), ACDC 1 RV, 2 Myo, 3 LV.
PALETTE = {1: (230, 57, 70), 2: (42, 157, 143), 3: (69, 123, 230)}


def overlay(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.4, outline: bool = True) -> np.ndarray:
    """(H, W, 3) uint8: `image` ((C, H, W) or (H, W), uint8 or float in [0, 1]) with each label of
    `mask` (H, W) tinted in its PALETTE colour, and its outline drawn opaque."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.ndim == 3:
        img = img.transpose(1, 2, 0)                                           # (C, H, W) -> (H, W, C)
    rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 or img.shape[-1] == 1 else img
    rgb = rgb.reshape(*mask.shape, 3).astype(np.float32)
    for value, colour in PALETTE.items():
        region = mask == value
        if not region.any():
            continue
        rgb[region] = (1 - alpha) * rgb[region] + alpha * np.array(colour, np.float32)
        if outline:
            rgb[region & ~ndimage.binary_erosion(region)] = colour
    return rgb.astype(np.uint8)
