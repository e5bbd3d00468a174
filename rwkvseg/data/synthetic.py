"""Synthetic cardiac-like MRI slices, for quick mode without ACDC (whose terms forbid shipping it).

Each slice is a short-axis caricature with ACDC's four labels: a bright LV cavity (3, an ellipse),
the dark myocardium around it (2, a ring of varying thickness), a bright RV crescent beside it
(1: a larger ellipse minus the dilated LV and Myo), on a smooth textured background with a body
outline, blurred and with Gaussian noise; intensities min-max normalised to [0, 1] per volume
like the SSL4MIS preprocessing. A volume shrinks the heart from base to apex; the RV disappears near the apex.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from rwkvseg.data.acdc import LABELS, AcdcVolume
from rwkvseg.data.cache import SegCache


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    """Boolean (H, W) of the points inside an ellipse rotated by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def draw_heart(rng: np.random.Generator, size: int = 224) -> dict:
    """The random shape and tone parameters of one heart (shared by the slices of a volume)."""
    return {
        "cy": size * (0.5 + rng.uniform(-0.06, 0.06)), "cx": size * (0.52 + rng.uniform(-0.06, 0.06)),
        "angle": rng.uniform(0, np.pi),
        "r_lv": size * rng.uniform(0.07, 0.11),
        "aspect_y": rng.uniform(0.85, 1.15), "aspect_x": rng.uniform(0.85, 1.15),
        "wall": size * rng.uniform(0.025, 0.045), "wall_x": rng.uniform(0.9, 1.3),
        "rv_direction": np.pi + rng.uniform(-0.5, 0.5),          # the RV lies to the image's left
        "rv_dist": rng.uniform(0.6, 0.85), "rv_ry": rng.uniform(1.5, 1.9), "rv_rx": rng.uniform(0.9, 1.2),
        "body_ry": size * rng.uniform(0.38, 0.46), "body_rx": size * rng.uniform(0.42, 0.49),
        "body_angle": rng.uniform(-0.3, 0.3),
        "tone": {1: rng.uniform(0.7, 0.85), 2: rng.uniform(0.25, 0.35), 3: rng.uniform(0.8, 0.95)},
        "noise": rng.uniform(0.02, 0.05),
    }


def render_slice(heart: dict, rng: np.random.Generator, *, size: int = 224, scale: float = 1.0,
                 with_rv: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Image (size, size) float32 in [0, 1] and label (size, size) uint8 in {0, 1, 2, 3} of a heart.

    `scale` shrinks the heart (apical slices); `with_rv=False` leaves the RV out; `rng` draws
    only the texture and the noise."""
    h = heart
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r_lv = h["r_lv"] * scale
    ry, rx = r_lv * h["aspect_y"], r_lv * h["aspect_x"]
    wall = h["wall"] * max(scale, 0.6)
    label = np.zeros((size, size), np.uint8)
    label[_ellipse(yy, xx, h["cy"], h["cx"], ry + wall, rx + wall * h["wall_x"], h["angle"])] = 2
    label[_ellipse(yy, xx, h["cy"], h["cx"], ry, rx, h["angle"])] = 3
    if with_rv:
        d, direction = (r_lv + wall) * h["rv_dist"], h["rv_direction"]
        rv = _ellipse(yy, xx, h["cy"] + d * np.sin(direction), h["cx"] + d * np.cos(direction),
                      (r_lv + wall) * h["rv_ry"], (r_lv + wall) * h["rv_rx"], direction + np.pi / 2)
        septum = _ellipse(yy, xx, h["cy"], h["cx"], ry + wall * 1.6, rx + wall * 1.6, h["angle"])
        label[rv & ~septum] = 1

    body = _ellipse(yy, xx, size * 0.5, size * 0.5, h["body_ry"], h["body_rx"], h["body_angle"])
    texture = gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 20)
    image = np.where(body, 0.25 + 0.1 * texture / (np.abs(texture).max() + 1e-6), 0.02)
    for value, level in h["tone"].items():
        image = np.where(label == value, level, image)
    image = gaussian_filter(image, sigma=1.0) + rng.normal(0, h["noise"], image.shape)
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32), label


def synthetic_slice(rng: np.random.Generator, *, size: int = 224, scale: float = 1.0,
                    with_rv: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One slice of a new random heart: image (size, size) float32 in [0, 1], label uint8."""
    return render_slice(draw_heart(rng, size), rng, size=size, scale=scale, with_rv=with_rv)


def synthetic_volume(rng: np.random.Generator, *, depth: int = 8, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """One heart from base to apex: image (D, size, size) float32 in [0, 1] (min-max over the
    volume), label (D, size, size) uint8. The heart shrinks toward the apex, where the RV ends."""
    heart = draw_heart(rng, size)
    slices = [render_slice(heart, rng, size=size, scale=1.0 - 0.5 * (k / max(depth - 1, 1)) ** 1.5,
                           with_rv=k < depth - 1) for k in range(depth)]
    images = np.stack([image for image, _ in slices])
    images = (images - images.min()) / (images.max() - images.min())
    return images.astype(np.float32), np.stack([label for _, label in slices])


def synthetic_acdc(*, n_slices: int = 64, size: int = 224, seed: int = 0) -> SegCache:
    """A SegCache of synthetic slices shaped like the ACDC cache: images (N, 1, S, S) uint8, masks
    (N, S, S) uint8 in {0, 1, 2, 3}; ids "synthetic_K"."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_slices):
        image, label = synthetic_slice(rng, size=size, scale=rng.uniform(0.6, 1.0), with_rv=rng.random() > 0.1)
        images.append(np.round(image * 255).astype(np.uint8))
        labels.append(label)
    meta = {"dataset": "synthetic_acdc", "num_classes": 4, "classes": list(LABELS),
            "size": [size, size], "seed": seed}
    return SegCache(images=np.stack(images)[:, None], masks=np.stack(labels),
                    ids=tuple(f"synthetic_{k}" for k in range(n_slices)), meta=meta)


def synthetic_acdc_volumes(n_volumes: int = 4, *, depth: int = 8, size: int = 224, seed: int = 0) -> list[AcdcVolume]:
    """Synthetic evaluation volumes in the form cache_volumes gives: image (D, 1, S, S) uint8,
    label and native_label (D, S, S) uint8 (the same here: nothing was resized)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_volumes):
        image, label = synthetic_volume(rng, depth=depth, size=size)
        out.append(AcdcVolume(name=f"synthetic_volume_{k}", image=np.round(image * 255).astype(np.uint8)[:, None],
                              label=label, native_label=label))
    return out
