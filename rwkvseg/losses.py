"""The training losses of the papers (RWKV-UNet Eq. 12: alpha CE + beta Dice).

Three losses, each a weighted sum of a pixel-wise cross-entropy and a soft Dice:

| function | definition | used by |
|---|---|---|
| `binary_bce_dice(style="ukan")`   | 0.5 BCE + 1.0 Dice, Dice smoothing 1e-5, per image | RWKV-UNet binary tasks (U-KAN's code base) |
| `binary_bce_dice(style="vmunet")` | 1.0 BCE + 1.0 Dice, Dice smoothing 1, per image    | MS-RWKV-UNet (VM-UNet's defaults, likely) |
| `multiclass_ce_dice`              | 0.3 CE + 0.7 Dice (ACDC), background included, sums over the whole batch, 1e-5 | RWKV-UNet ACDC (authors' code) |

BCE always runs on logits (`binary_cross_entropy_with_logits`, numerically safe); VM-UNet applies
BCE to sigmoid probabilities, which equals ours up to float rounding. Dice runs on probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Dice smoothing constants, named by where they come from.
SMOOTH_UKAN = 1e-5     # [code] U-KAN's BCEDiceLoss: (2 I + 1e-5) / (P + G + 1e-5) per image
SMOOTH_VMUNET = 1.0    # [code] VM-UNet's DiceLoss: (2 I + 1) / (P + G + 1) per image
SMOOTH_MULTICLASS = 1e-5  # [code] RWKV-UNet's DiceLoss: (2 I + 1e-5) / (P^2 + G^2 + 1e-5) per class


def soft_dice_binary(logits: Tensor, target: Tensor, *, smooth: float) -> Tensor:
    """1 - mean over images of (2 sum p g + smooth) / (sum p + sum g + smooth).

    logits: (B, 1, H, W) or (B, H, W); target: the same shape (or without the channel), {0, 1}.
    Reduction: sums over the pixels of each image, then the mean over the B images
    (not one sum over the batch). `smooth` is 1e-5 for U-KAN, 1 for VM-UNet.
    """
    p = torch.sigmoid(logits.float()).flatten(1)                  # (B, H*W)
    g = target.float().reshape(p.shape)                           # (B, H*W)
    inter = (p * g).sum(1)
    dice = (2 * inter + smooth) / (p.sum(1) + g.sum(1) + smooth)  # (B,)
    return 1 - dice.mean()


def binary_bce_dice(
    logits: Tensor, target: Tensor, *, bce_weight: float = 0.5, dice_weight: float = 1.0,
    style: str = "ukan",
) -> Tensor:
    """bce_weight * BCE(logits, target) + dice_weight * soft Dice (one-channel binary task).

    logits: (B, 1, H, W); target: (B, 1, H, W) or (B, H, W) with values in {0, 1}.
    BCE: mean over all pixels of the batch, computed on logits. Dice: `soft_dice_binary`, per image
    then the batch mean, smoothing `SMOOTH_UKAN` (style "ukan") or `SMOOTH_VMUNET` ("vmunet").
    Defaults (0.5, 1.0) are the RWKV-UNet binary recipe [paper Sec. 4.1]; MS-RWKV uses 1 : 1.
    """
    if style not in ("ukan", "vmunet"):
        raise ValueError(f"style must be 'ukan' (smooth 1e-5) or 'vmunet' (smooth 1), got {style!r}")
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(
            f"binary_bce_dice expects logits of shape (B, 1, H, W), got {tuple(logits.shape)}; "
            "build the model with num_classes=1 for a binary task"
        )
    target = target.float().reshape(logits.shape)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target)
    smooth = SMOOTH_UKAN if style == "ukan" else SMOOTH_VMUNET
    return bce_weight * bce + dice_weight * soft_dice_binary(logits, target, smooth=smooth)


def soft_dice_multiclass(logits: Tensor, target: Tensor) -> Tensor:
    """The authors' multi-class Dice loss ([code] RWKV-UNet's DiceLoss; the Dice of Eq. 12).

    logits: (B, C, H, W); target: (B, H, W) integer labels in 0..C-1.
    p = softmax(logits), g = one-hot(target); for every class c = 0..C-1, background included:
    1 - (2 sum p_c g_c + 1e-5) / (sum p_c^2 + sum g_c^2 + 1e-5), each sum over the WHOLE batch
    (all images and pixels together); the mean over the C classes.
    """
    C = logits.shape[1]
    p = torch.softmax(logits.float(), dim=1)                                # (B, C, H, W)
    g = F.one_hot(target.long(), C).permute(0, 3, 1, 2).float()             # (B, C, H, W)
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)                                               # (C,)
    denom = (p * p).sum(dims) + (g * g).sum(dims)
    dice = (2 * inter + SMOOTH_MULTICLASS) / (denom + SMOOTH_MULTICLASS)
    return (1 - dice).mean()


def multiclass_ce_dice(
    logits: Tensor, target: Tensor, *, ce_weight: float = 0.3, dice_weight: float = 0.7,
) -> Tensor:
    """ce_weight * CE + dice_weight * `soft_dice_multiclass` (CE: mean over all pixels of the batch).

    logits: (B, C, H, W); target: (B, H, W) labels. Defaults (0.3, 0.7) are RWKV-UNet's ACDC
    weights [paper Sec. 4.1 = code]; Synapse uses (0.5, 0.5).
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"multiclass_ce_dice expects logits (B, C, H, W) and labels (B, H, W), "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    ce = F.cross_entropy(logits.float(), target.long())
    return ce_weight * ce + dice_weight * soft_dice_multiclass(logits, target)


@dataclass(frozen=True)
class LossConfig:
    """Which loss, with which weights: the part of TrainConfig a loss needs."""

    kind: str = "bce_dice"          # "bce_dice" (binary, 1 output channel) | "ce_dice" (multi-class)
    ce_weight: float = 0.5          # [paper Sec. 4.1] binary 0.5; ACDC 0.3; MS-RWKV (VM-UNet) 1.0
    dice_weight: float = 1.0        # [paper Sec. 4.1] binary 1.0; ACDC 0.7; MS-RWKV (VM-UNet) 1.0
    dice_style: str = "ukan"        # binary only: "ukan" (smooth 1e-5) | "vmunet" (smooth 1)


def build_loss(cfg: LossConfig):
    """A function (logits, target) -> scalar loss for the given configuration."""
    if cfg.kind == "bce_dice":
        return lambda logits, target: binary_bce_dice(
            logits, target, bce_weight=cfg.ce_weight, dice_weight=cfg.dice_weight, style=cfg.dice_style
        )
    if cfg.kind == "ce_dice":
        return lambda logits, target: multiclass_ce_dice(
            logits, target, ce_weight=cfg.ce_weight, dice_weight=cfg.dice_weight
        )
    raise ValueError(f"loss kind must be 'bce_dice' or 'ce_dice', got {cfg.kind!r}")
