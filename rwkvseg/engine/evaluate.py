"""Evaluation of a trained network: the numbers, and each case's score (no figures: rwkvseg.report draws them).

    evaluate_split(model, split, binary=True, normalization=...)   metrics of one split (ISIC or ACDC)
    evaluate_checkpoint("runs/x/best.pt", split="test")            the same from a checkpoint

Every number comes from rwkvseg.metrics; the network input from the data package's normalisation
(rwkvseg.data.NORMALIZATIONS, the same object as in training).

ISIC (binary): predict at the training size (the stored 256 x 256), sigmoid, threshold 0.5; report
the pooled confusion-matrix DSC / IoU / Acc (VM-UNet, MS-RWKV Table 1), the per-image means and
U-KAN's per-batch IoU beside them (rwkvseg.metrics.BinaryMetrics).
ACDC (multi-class volumes): every slice is fed as the cache stores it (resized to img_size with
torch's bicubic, uint8: [choose] the same kernel as training instead of the authors' order-3
spline), softmax and argmax, the label map resized back to the native (H, W) with nearest
neighbour (rwkvseg.data.resize_label), slices stacked into a 3-D prediction; 3-D Dice and HD95
(voxels, unit spacing) per class (rwkvseg.metrics.VolumeMetrics) under both empty-mask rules:
"authors" (the headline numbers, as the papers compute them) and "strict".
TTA: the mean of the logits of the image and of its horizontal flip (flipped back).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rwkvseg.data import Normalization, resize_label
from rwkvseg.data.acdc import LABELS
from rwkvseg.data.sets import EvalSet, load_dataset
from rwkvseg.engine.checkpoint import load_model
from rwkvseg.env import device_of
from rwkvseg.metrics import BinaryMetrics, VolumeMetrics, scores_from_counts


class Evaluated(NamedTuple):
    """What evaluate_checkpoint returns: the metrics, the loaded model, and the split it scored."""

    result: dict
    model: torch.nn.Module
    split: EvalSet
    binary: bool
    normalization: Normalization


def metric_conventions(*, binary: bool) -> dict:
    """The words every result carries about how its numbers were computed."""
    if binary:
        return {"source": "rwkvseg.metrics.BinaryMetrics", "threshold": 0.5,
                "pooled": "one confusion matrix over all test pixels (VM-UNet, MS-RWKV): the headline",
                "per_image": "mean over images; both empty -> 1, one empty -> 0",
                "per_batch": "U-KAN's batch IoU (smoothing 1e-5, batch 32), reference only",
                "iou": "foreground IoU (the tables' 'mIoU')", "resolution": "the training size (256x256 stored)"}
    return {"source": "rwkvseg.metrics.VolumeMetrics",
            "dice": "3-D per volume and class, mean over volumes, then over RV/Myo/LV",
            "hd95": "voxels (no spacing stored), face-connected surfaces, numpy percentile 95",
            "empty_rules": {"authors (headline: dice, hd95, per_class)":
                            "A,B non-empty -> (Dice, HD95); A non-empty, B empty -> (1, 0); A empty -> (0, 0)",
                            "strict (under 'strict')": "both empty -> Dice 1, HD95 excluded; one empty -> Dice 0, "
                                                       "HD95 excluded; exclusions counted"},
            "resize": "slice -> img_size bicubic (the cache), label map back to native size nearest-exact"}


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: Tensor, *, tta: bool = False, bf16: bool = False) -> Tensor:
    """Logits (B, K, H, W) in float32 for input x (B, C, H, W); with tta, the mean of the logits of
    x and of its horizontal flip (flipped back) [code: the authors' ACDC/Synapse inference]."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16 and x.device.type == "cuda"):
        logits = model(x).float()
        if tta:
            logits = 0.5 * (logits + model(x.flip(-1)).float().flip(-1))
    return logits


# --------------------------------------------------------------------------------------------
# Binary (ISIC)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_binary(model, images: Tensor, masks: Tensor, *, normalization: Normalization, tta: bool = False,
                    bf16: bool = False, batch_size: int = 32, per_case: bool = False) -> dict:
    """Pooled, per-image and per-batch DSC / IoU / Acc of uint8 images (N, C, H, W) against masks (N, H, W);
    with per_case, also `per_case_dsc`: each image's DSC in order (their mean is per_image.dsc)."""
    was_training = model.training
    model.eval()
    dev = device_of(model)
    metrics = BinaryMetrics(threshold=0.5)
    for i in range(0, images.shape[0], batch_size):
        x = normalization.from_uint8(images[i:i + batch_size].to(dev))
        prob = torch.sigmoid(predict_logits(model, x, tta=tta, bf16=bf16))[:, 0]          # (b, H, W)
        metrics.update(prob, masks[i:i + batch_size].to(dev))
    model.train(was_training)
    out = metrics.compute()
    out.update(tta=tta)
    if per_case:
        out["per_case_dsc"] = scores_from_counts(torch.cat(metrics.counts))["dsc"].tolist()
    return out


# --------------------------------------------------------------------------------------------
# Volumes (ACDC)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_volume(model, image, native_size: tuple[int, int], *, normalization: Normalization,
                   tta: bool = False, bf16: bool = False, batch_size: int = 32) -> Tensor:
    """Label volume (D, H, W) uint8 at the native size for an image volume (D, 1, S, S) uint8 as
    trained (the cache's rows of one volume)."""
    dev = device_of(model)
    image = torch.as_tensor(image)
    out = []
    for i in range(0, image.shape[0], batch_size):
        x = normalization.from_uint8(image[i:i + batch_size].to(dev))                  # (d, 1, S, S)
        out.append(predict_logits(model, x, tta=tta, bf16=bf16).argmax(1).to(torch.uint8))  # (d, S, S)
    return resize_label(torch.cat(out), native_size).cpu()                             # (D, H, W)


@torch.no_grad()
def evaluate_volumes(model, volumes: list, *, normalization: Normalization, tta: bool = False,
                     bf16: bool = False, hd95: bool = True, num_classes: int = 4, per_case: bool = False) -> dict:
    """Per-class 3-D Dice (and HD95) over rwkvseg.data.AcdcVolume items, under both empty-mask rules:
    the top level holds the authors' rules (the papers' numbers), `strict` the other. With per_case,
    also `per_case`: each volume's name, per-class Dice and their mean (authors' rules), in order."""
    was_training = model.training
    model.eval()
    names = LABELS[1:] if num_classes == len(LABELS) else tuple(f"class{c}" for c in range(1, num_classes))
    by_rule = {rule: VolumeMetrics(num_classes=num_classes, class_names=names, rules=rule, hd95=hd95)
               for rule in ("authors", "strict")}
    for vol in volumes:
        pred = predict_volume(model, vol.image, vol.native_label.shape[-2:], normalization=normalization,
                              tta=tta, bf16=bf16).numpy()
        for m in by_rule.values():
            m.update(pred, vol.native_label, name=vol.name)
    model.train(was_training)
    out = by_rule["authors"].compute()
    out["strict"] = by_rule["strict"].compute()
    out["tta"] = tta
    if per_case:
        m = by_rule["authors"]
        out["per_case"] = []
        for i, name in enumerate(m.names):
            dice = {c: m.cases[c][i].dice for c in names}
            out["per_case"].append({"id": name, "dice": float(np.mean(list(dice.values()))), "per_class": dice})
    return out


def evaluate_split(model, split, *, binary: bool, normalization: Normalization, tta: bool = False,
                   hd95: bool = True, bf16: bool = False, per_case: bool = False) -> dict:
    """Metrics of an EvalSet (rwkvseg.data.EvalSet), with the score used for model selection:
    pooled DSC for ISIC, mean 3-D Dice over RV/Myo/LV (authors' rules) for ACDC. With per_case,
    `per_case` lists {"id", "dice"} of every image (its DSC) or volume (mean over its classes)."""
    if binary:
        out = evaluate_binary(model, split.images, split.masks, normalization=normalization, tta=tta, bf16=bf16,
                              per_case=per_case)
        out.update(selection_metric="pooled_dsc", selection_score=out["pooled"]["dsc"])
        if per_case:
            ids = split.ids or [str(i) for i in range(len(split))]
            out["per_case"] = [{"id": i, "dice": d} for i, d in zip(ids, out.pop("per_case_dsc"))]
    else:
        out = evaluate_volumes(model, split.volumes, normalization=normalization, tta=tta, bf16=bf16, hd95=hd95,
                               per_case=per_case)
        out.update(selection_metric="mean_dice", selection_score=out["dice"])
    out["split"] = split.name
    return out


def evaluate_checkpoint(checkpoint: str | Path, *, data_dir: str | None = None, split: str = "test",
                        tta: bool = True, max_items: int | None = None, device: str | None = None,
                        per_case: bool = False, bf16: bool = False) -> Evaluated:
    """Evaluate a checkpoint on the `split` ("test" or "val") of the data set it was trained on.

    Returns the result, the model, the evaluated split (EvalSet), whether it is binary and its
    normalisation; the result holds the metrics without TTA ("no_tta") and,
    with `tta`, with the flip TTA ("tta"); with `per_case`, "no_tta" lists every case's Dice (what
    rwkvseg.report.cases ranks and draws). `data_dir` defaults to the training run's; with
    `max_items`, only that many images / volumes are decoded (no cache file). `bf16`: predict under
    bf16 autocast on CUDA, as the training engine evaluates (default: float32)."""
    model, cfg = load_model(checkpoint, device=device)
    data = load_dataset(cfg["dataset"], split=cfg.get("split", "default"), img_size=cfg["img_size"],
                        data_dir=data_dir or cfg.get("data_dir"), with_val=split == "val",
                        max_train=1 if max_items else None, max_eval=max_items, seed=cfg.get("seed", 0),
                        device=device_of(model))
    es = data.val if split == "val" else data.test
    kw = dict(binary=data.info.binary, normalization=data.normalization, bf16=bf16)
    out = {"checkpoint": str(checkpoint), "dataset": cfg["dataset"], "split_info": data.split_info,
           "metric_conventions": metric_conventions(binary=data.info.binary),
           "no_tta": evaluate_split(model, es, tta=False, per_case=per_case, **kw)}
    if tta:
        out["tta"] = evaluate_split(model, es, tta=True, **kw)
    return Evaluated(out, model, es, data.info.binary, data.normalization)


def format_table(result: dict) -> str:
    """A plain-text metric table of an evaluate_checkpoint result."""
    rows = []
    for key in ("no_tta", "tta"):
        r = result.get(key)
        if r is None:
            continue
        if "pooled" in r:
            for conv in ("pooled", "per_image"):
                m = r[conv]
                rows.append(f"{key:<7} {conv:<10} DSC {100 * m['dsc']:6.2f}  IoU {100 * m['iou']:6.2f}  "
                            f"Acc {100 * m['acc']:6.2f}")
        else:
            for rule, m in (("authors", r), ("strict", r.get("strict"))):
                if m is None:
                    continue
                cls = "  ".join(f"{n} {100 * v['dice']:6.2f}" for n, v in m["per_class"].items())
                hd = f"  HD95 {m['hd95']:.2f} vox" if "hd95" in m else ""
                rows.append(f"{key:<7} {rule:<8} Dice {100 * m['dice']:6.2f}  ({cls}){hd}")
    return "\n".join(rows)
