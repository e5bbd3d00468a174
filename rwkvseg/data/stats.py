"""Descriptive statistics of a data set: class balance, lesion sizes, channel mean and std."""
from __future__ import annotations

import numpy as np


def foreground_fraction(masks: np.ndarray) -> np.ndarray:
    """Share of non-background pixels per image: masks (N, H, W) -> (N,) float64."""
    return (masks.reshape(masks.shape[0], -1) > 0).mean(axis=1)


def class_fractions(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of all pixels in each class, pooled over the masks (N, H, W) -> (num_classes,)."""
    counts = np.bincount(masks.ravel(), minlength=num_classes)
    if counts.size > num_classes:
        raise ValueError(f"mask values up to {counts.size - 1} but num_classes={num_classes}")
    return counts / counts.sum()


def channel_mean_std(images: np.ndarray, *, chunk: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale of uint8 images (N, C, H, W), pooled over all
    pixels (float64 sums, in chunks to bound memory)."""
    n_channels = images.shape[1]
    total = np.zeros(n_channels)
    total_sq = np.zeros(n_channels)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].astype(np.float64) / 255.0         # (n, C, H, W)
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(total_sq / count - mean * mean)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
