"""Samples per second that the device-resident loader (rwkvseg.data.GpuLoader) delivers.

    python benchmarks/pipeline.py --out pipeline.json                          # ISIC 2018, the device present
    python benchmarks/pipeline.py --quick                                      # CPU smoke test (seconds)

Each variant gathers batches from uint8 tensors on the device, converts, augments and normalises
them, and consumes nothing else: the rate the network could be fed. Timed over whole epochs
after one warm-up epoch (CUDA-synchronised at the end of each epoch); img/s = images / seconds.

Data: the ISIC 2018 pairs of --data (or $RWKVSEG_DATA) at 256 x 256; without
them, the shipped sample pairs repeated to 2594 images (the rate does not depend on the pixels;
the JSON says which). The ACDC row uses synthetic 224 x 224 slices repeated to 1312 (the number
of SSL4MIS training slices). The network consumes ~400-1000 img/s: the loader should be far above.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rwkvseg.data import (AcdcAugment, GpuLoader, IsicAugment, NORMALIZATIONS, find_data_root, isic_samples,
                          load_isic, synthetic_acdc)
from rwkvseg.env import default_device, provenance


def isic_images(data: str | None, n_quick: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, masks, where they come from): the real set, else the samples repeated."""
    root = None if n_quick else find_data_root(data, required=False)
    if root is not None and (root / "isic2018").is_dir():
        cache = load_isic(root / "isic2018")
        return cache.images, cache.masks, f"isic2018 ({len(cache)} pairs of the data root)"
    cache = isic_samples()
    n = n_quick or 2594
    reps = -(-n // len(cache))
    images = np.concatenate([cache.images] * reps)[:n]
    masks = np.concatenate([cache.masks] * reps)[:n]
    return images, masks, f"shipped samples ({len(cache)} pairs) repeated to {n} images"


def bench(name: str, images: np.ndarray, masks: np.ndarray, *, batch: int, augment, normalization,
          device: torch.device, epochs: int, max_batches: int | None) -> dict:
    loader = GpuLoader(images=images, masks=masks, batch_size=batch, device=device, normalization=normalization,
                       augment=augment, seed=0, drop_last=True)
    on_cuda = device.type == "cuda"

    def one_epoch(epoch: int) -> int:
        n = 0
        for k, (x, y) in enumerate(loader.iter_epoch(epoch)):
            n += x.shape[0]
            if max_batches is not None and k + 1 >= max_batches:
                break
        if on_cuda:
            torch.cuda.synchronize(device)
        return n

    one_epoch(0)                                                            # warm-up (kernels, allocator)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, counts = [], []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        counts.append(one_epoch(epoch))
        times.append(time.perf_counter() - t)
    img_per_s = sum(counts) / sum(times)
    return {"variant": name, "images": int(images.shape[0]), "shape": list(images.shape[1:]), "batch": batch,
            "augment": type(augment).__name__ if augment is not None else None, "epochs_timed": epochs,
            "batches_per_epoch": counts[0] // batch, "seconds": sum(times), "img_per_s": img_per_s,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="data root holding isic2018/ (default: $RWKVSEG_DATA)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up epoch)")
    ap.add_argument("--device", default=None, help="default: the first CUDA GPU, else the CPU")
    ap.add_argument("--quick", action="store_true", help="CPU smoke test: 128 images, 2 batches per epoch")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args(argv)
    device = torch.device(a.device) if a.device else default_device()
    max_batches = 2 if a.quick else None
    epochs = 1 if a.quick else a.epochs
    images, masks, source = isic_images(a.data, 128 if a.quick else None)
    acdc = synthetic_acdc(n_slices=8 if a.quick else 64, size=224, seed=0)
    reps = (128 if a.quick else 1312) // len(acdc)
    acdc_images, acdc_masks = np.concatenate([acdc.images] * reps), np.concatenate([acdc.masks] * reps)
    variants = [
        ("isic 256 gather+normalise", images, masks, a.batch, None, NORMALIZATIONS["isic2018"]),
        ("isic 256 + IsicAugment", images, masks, a.batch, IsicAugment(), NORMALIZATIONS["isic2018"]),
        ("acdc 224 + AcdcAugment", acdc_images, acdc_masks, 24, AcdcAugment(), NORMALIZATIONS["acdc"]),
    ]
    rows = []
    print(f"{'variant':<28} {'batch':>5} {'img/s':>10} {'epoch s':>8}  device: {device}")
    for name, x, y, batch, augment, norm in variants:
        r = bench(name, x, y, batch=batch, augment=augment, normalization=norm, device=device, epochs=epochs,
                  max_batches=max_batches)
        rows.append(r)
        print(f"{name:<28} {batch:>5} {r['img_per_s']:>10.0f} {r['seconds'] / epochs:>8.3f}", flush=True)
    out = {"results": rows, "provenance": provenance(mode="quick" if a.quick else "full", device=device, isic_source=source)}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
