"""Segmentation metrics as the papers compute them (RWKV-UNet Sec. 4.1, MS-RWKV-UNet Sec. 3.1).

Binary (ISIC), from the confusion counts TP, FP, FN, TN (torch, on the tensors' device):

- pooled: one confusion matrix over all pixels of all images, then DSC = 2TP / (2TP + FP + FN),
  IoU = TP / (TP + FP + FN) (the tables' "mIoU" is this foreground IoU), Acc = (TP + TN) / all
  (VM-UNet, MS-RWKV Table 1);
- per-image mean: the same formulas per image, averaged; an image where prediction and
  ground truth are both empty scores 1 (exactly one empty gives 0 by the formulas);
- per-batch (reference only, U-KAN's code): IoU over a batch's pixels with smoothing 1e-5,
  Dice = 2 IoU / (1 + IoU), averaged over batches weighted by their size (depends on the batch size).

Per volume and class (ACDC), on binarised masks A = (pred == c), B = (label == c): Dice = 2|A∩B| /
(|A| + |B|); HD95 = the 95th percentile (numpy, linear) of the pooled distances from each surface
voxel of A to the nearest of B and vice versa, where surface = mask XOR its erosion with a
face-connected element. Unit spacing: the unit is pixels / voxels, not mm. HD95 runs on the CPU
(scipy's exact Euclidean distance transform, cropped to the masks' bounding box).

Empty masks, rules="authors" (the authors' evaluation, default): A and B non-empty -> (Dice, HD95);
A non-empty, B empty -> (1, 0); A empty -> (0, 0). rules="strict": both empty -> Dice 1, HD95
excluded; exactly one empty -> Dice 0, HD95 excluded; the exclusions are counted.

This module imports no model and no data set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

RULES = ("authors", "strict")
UKAN_SMOOTH = 1e-5


# --------------------------------------------------------------------------------------------
# Binary masks (ISIC)
# --------------------------------------------------------------------------------------------

def binary_confusion(pred: Tensor, target: Tensor) -> Tensor:
    """(B, 4) int64 counts [TP, FP, FN, TN] per image of boolean or {0, 1} masks (B, H, W)."""
    p = torch.as_tensor(pred).bool().flatten(1)
    t = torch.as_tensor(target).bool().flatten(1)
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    tn = p.shape[1] - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], 1)


def scores_from_counts(counts: Tensor) -> dict[str, Tensor]:
    """DSC, IoU, Acc from counts (..., 4) [TP, FP, FN, TN]; DSC = IoU = 1 where TP + FP + FN = 0."""
    tp, fp, fn, tn = counts.double().unbind(-1)
    empty = (tp + fp + fn) == 0
    dsc = torch.where(empty, 1.0, 2 * tp / (2 * tp + fp + fn).clamp_min(1))
    iou = torch.where(empty, 1.0, tp / (tp + fp + fn).clamp_min(1))
    acc = (tp + tn) / (tp + fp + fn + tn)
    return {"dsc": dsc, "iou": iou, "acc": acc}


def binary_metrics(pred: Tensor, target: Tensor) -> dict:
    """Pooled and per-image DSC / IoU / Acc of boolean masks (N, H, W), in one call."""
    m = BinaryMetrics()
    m.update(pred, target)
    return m.compute()


class BinaryMetrics:
    """Accumulates binary predictions over an evaluation loop; compute() gives every convention.

    update() takes probabilities (float: thresholded at `threshold`, >= counts as lesion) or masks
    (bool or integer: non-zero is lesion), and targets as bool or {0, 1} masks (B, H, W).
    With hd95=True it also keeps each image's HD95 (pixels) under `rules`.
    """

    def __init__(self, *, threshold: float = 0.5, hd95: bool = False, rules: str = "authors"):
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
        self.threshold = threshold
        self.hd95 = hd95
        self.rules = rules
        self.counts: list[Tensor] = []           # (b, 4) per batch, on the CPU
        self.cases: list[CaseScore] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(f"pred and target must both be (B, H, W), "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        pred = pred >= self.threshold if pred.is_floating_point() else pred != 0
        target = target != 0
        self.counts.append(binary_confusion(pred, target).cpu())
        if self.hd95:
            for p, t in zip(pred.cpu().numpy(), target.cpu().numpy()):
                self.cases.append(case_scores(p, t, rules=self.rules))

    def compute(self) -> dict:
        if not self.counts:
            raise ValueError("no batch was added: call update() first")
        counts = torch.cat(self.counts)                                           # (N, 4)
        pooled = scores_from_counts(counts.sum(0))
        per_image = scores_from_counts(counts)
        tp, fp, fn, _ = counts.double().unbind(-1)
        batch_iou, weights = [], []
        for c in self.counts:                                                    # U-KAN: per batch
            inter, union = c[:, 0].sum().double(), c[:, :3].sum().double()
            batch_iou.append((inter + UKAN_SMOOTH) / (union + UKAN_SMOOTH))
            weights.append(c.shape[0])
        iou_b = torch.stack(batch_iou)
        w = torch.tensor(weights, dtype=torch.float64)
        out = {
            "pooled": {k: float(v) for k, v in pooled.items()},
            "per_image": {k: float(v.mean()) for k, v in per_image.items()},
            "per_batch": {"iou": float((iou_b * w).sum() / w.sum()),
                          "dsc": float((2 * iou_b / (1 + iou_b) * w).sum() / w.sum())},
            "n_images": int(counts.shape[0]),
            "n_empty_target": int(((tp + fn) == 0).sum()),
            "n_empty_pred": int(((tp + fp) == 0).sum()),
            "threshold": self.threshold,
        }
        if self.hd95:
            out["hd95"] = summarize_cases(self.cases)["hd95"]
            out["hd95_rules"] = self.rules
            out["n_hd95_excluded"] = sum(np.isnan(c.hd95) for c in self.cases)
        return out


# --------------------------------------------------------------------------------------------
# Surfaces and HD95 (2-D images, 3-D volumes)
# --------------------------------------------------------------------------------------------

def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface of a boolean mask (any dimension): mask XOR its face-connected erosion.

    Voxels on the array border count as surface (outside the array is background)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=structure)


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of a | b: surfaces and distances are unchanged."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        hits = np.flatnonzero(union.any(axis=tuple(j for j in range(union.ndim) if j != axis)))
        box.append(slice(hits[0], hits[-1] + 1))
    return a[tuple(box)], b[tuple(box)]


def surface_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances from each surface voxel of a to the nearest surface voxel of b, and b to a).

    Both masks must be non-empty; unit spacing."""
    a, b = _crop_to_union(np.asarray(a, bool), np.asarray(b, bool))
    sa, sb = surface(a), surface(b)
    d_ab = ndimage.distance_transform_edt(~sb)[sa]
    d_ba = ndimage.distance_transform_edt(~sa)[sb]
    return d_ab, d_ba


def hd95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile (numpy linear) of both directions' surface distances, pooled; in pixels."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        raise ValueError("hd95 needs two non-empty masks: apply the empty-mask rules first (case_scores)")
    return float(np.percentile(np.concatenate(surface_distances(a, b)), 95))


@dataclass(frozen=True)
class CaseScore:
    """One (volume or image, class): Dice, HD95 (NaN when excluded) and which masks were empty."""

    dice: float
    hd95: float
    status: str                   # "both" non-empty, "pred_only", "label_only", "neither"


def case_scores(pred: np.ndarray, label: np.ndarray, *, rules: str = "authors", with_hd95: bool = True) -> CaseScore:
    """Dice and HD95 of boolean masks `pred` (A) and `label` (B) under the empty-mask `rules`."""
    a, b = np.asarray(pred, bool), np.asarray(label, bool)
    na, nb = int(a.sum()), int(b.sum())
    status = {(True, True): "both", (True, False): "pred_only", (False, True): "label_only",
              (False, False): "neither"}[(na > 0, nb > 0)]
    if status == "both":
        dice = 2.0 * int((a & b).sum()) / (na + nb)
        return CaseScore(dice, hd95(a, b) if with_hd95 else float("nan"), status)
    if rules == "authors":
        return CaseScore(1.0, 0.0, status) if status == "pred_only" else CaseScore(0.0, 0.0, status)
    if rules == "strict":
        return CaseScore(1.0 if status == "neither" else 0.0, float("nan"), status)
    raise ValueError(f"rules must be one of {RULES}, got {rules!r}")


def summarize_cases(cases: list[CaseScore]) -> dict:
    """Mean Dice, mean HD95 over the cases where it is defined, and the counts of empty cases."""
    dice = np.array([c.dice for c in cases], dtype=np.float64)
    hd = np.array([c.hd95 for c in cases], dtype=np.float64)
    kept = ~np.isnan(hd)
    return {
        "dice": float(dice.mean()) if cases else float("nan"),
        "hd95": float(hd[kept].mean()) if kept.any() else float("nan"),
        "n": len(cases),
        "n_hd95_excluded": int((~kept).sum()),
        "n_empty_label": sum(c.status in ("pred_only", "neither") for c in cases),
        "n_empty_pred": sum(c.status in ("label_only", "neither") for c in cases),
    }


# --------------------------------------------------------------------------------------------
# Multi-class volumes (ACDC, Synapse)
# --------------------------------------------------------------------------------------------

def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, rows = target class, columns = predicted class (on the inputs' device)."""
    p = torch.as_tensor(pred).long().flatten()
    t = torch.as_tensor(target).long().flatten()
    if p.numel() and (int(p.max()) >= num_classes or int(t.max()) >= num_classes):
        raise ValueError(f"class index >= num_classes={num_classes}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def dice_per_class(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C - 1,) float64 Dice of each foreground class from the confusion matrix; NaN where both
    masks are empty (the rules decide what that scores)."""
    cm = confusion_matrix(pred, target, num_classes).double()
    inter = cm.diagonal()[1:]
    size_pred, size_target = cm.sum(0)[1:], cm.sum(1)[1:]
    return 2 * inter / (size_pred + size_target)


class VolumeMetrics:
    """Per-class 3-D Dice and HD95 over volumes (or 2-D images), averaged as the authors do:
    per class over volumes, then over classes.

    update(pred, label): integer label maps of one volume, (D, H, W) or (H, W), torch or numpy.
    """

    def __init__(self, *, num_classes: int = 4, class_names: tuple[str, ...] = ("RV", "Myo", "LV"),
                 rules: str = "authors", hd95: bool = True):
        if len(class_names) != num_classes - 1:
            raise ValueError(f"{num_classes - 1} foreground class names expected, got {class_names}")
        if rules not in RULES:
            raise ValueError(f"rules must be one of {RULES}, got {rules!r}")
        self.num_classes = num_classes
        self.class_names = class_names
        self.rules = rules
        self.hd95 = hd95
        self.cases: dict[str, list[CaseScore]] = {name: [] for name in class_names}
        self.names: list[str] = []

    def update(self, pred, label, *, name: str | None = None) -> list[CaseScore]:
        pred = torch.as_tensor(pred).cpu().numpy()
        label = torch.as_tensor(label).cpu().numpy()
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape"
                             + (f" (volume {name})" if name else ""))
        scores = [case_scores(pred == c, label == c, rules=self.rules, with_hd95=self.hd95)
                  for c in range(1, self.num_classes)]
        for class_name, score in zip(self.class_names, scores):
            self.cases[class_name].append(score)
        self.names.append(name or f"volume_{len(self.names)}")
        return scores

    def compute(self) -> dict:
        if not self.names:
            raise ValueError("no volume was added: call update() first")
        per_class = {name: summarize_cases(cases) for name, cases in self.cases.items()}
        out = {
            "dice": float(np.mean([v["dice"] for v in per_class.values()])),
            "per_class": per_class,
            "n_volumes": len(self.names),
            "rules": self.rules,
        }
        if self.hd95:
            out["hd95"] = float(np.nanmean([v["hd95"] for v in per_class.values()])) if any(
                not np.isnan(v["hd95"]) for v in per_class.values()) else float("nan")
            out["hd95_unit"] = "voxels (unit spacing)"
        return out
