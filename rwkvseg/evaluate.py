"""Evaluation and prediction with a trained network (spec protocols.md §4-5).

    evaluate_split(model, split, binary=True)              metrics of one split (ISIC or ACDC)
    evaluate_checkpoint("runs/x/best.pt", split="test")    the same from a checkpoint file
    predict_images(model, ["a.jpg", ...], out_dir="pred")  masks and overlays for any images

ISIC (binary): predict at the stored 256 x 256, sigmoid, threshold 0.5; report the pooled
confusion-matrix DSC / IoU / Acc (VM-UNet, MS-RWKV Table 1) and the per-image means beside them.
ACDC (multi-class volumes): every slice resized to img_size (bicubic: [choose] torch's bicubic
instead of the authors' order-3 spline, the same kernel as training), softmax and argmax, the
label map resized back to the native (H, W) with nearest neighbour, slices stacked into a 3-D
prediction; 3-D Dice and HD95 (voxels, unit spacing) per class with the authors' empty-mask rules.
TTA: the mean of the logits of the image and of its horizontal flip (flipped back).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ACDC_CLASSES = ("RV", "Myo", "LV")     # labels 1, 2, 3 (0 is background)


def to_input(x: Tensor) -> Tensor:
    """uint8 (B, C, H, W) -> float network input in [0, 1]. ADAPTER: rwkvseg.data owns this."""
    return x.float() / 255.0


def metric_conventions(*, binary: bool) -> dict:
    """The words every result carries about how its numbers were computed."""
    if binary:
        return {"threshold": 0.5, "pooled": "one confusion matrix over all test pixels (VM-UNet, MS-RWKV)",
                "per_image": "mean over images; both empty -> 1, one empty -> 0",
                "iou": "foreground IoU (the tables' 'mIoU')", "resolution": "256x256 as stored"}
    return {"dice": "3-D per volume and class, mean over volumes, then over RV/Myo/LV",
            "hd95": "voxels (no spacing stored), face-connected surfaces, numpy percentile 95",
            "empty_rules": "authors: A,B non-empty -> (Dice, HD95); A non-empty, B empty -> (1, 0); "
                           "A empty -> (0, 0)",
            "resize": "slice -> 224 bicubic, label map back nearest"}


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


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------------------------
# Binary (ISIC)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_binary(model, images: Tensor, masks: Tensor, *, tta: bool = False, bf16: bool = False,
                    batch_size: int = 32) -> dict:
    """Pooled and per-image DSC / IoU / Acc of uint8 images (N, C, H, W) against masks (N, H, W)."""
    was_training = model.training
    model.eval()
    dev = _device_of(model)
    preds = []
    for i in range(0, images.shape[0], batch_size):
        x = to_input(images[i:i + batch_size].to(dev))
        preds.append(torch.sigmoid(predict_logits(model, x, tta=tta, bf16=bf16))[:, 0] >= 0.5)
    model.train(was_training)
    pred = torch.cat(preds).cpu()                                         # (N, H, W) bool
    out = binary_metrics(pred, masks.cpu().bool())
    out.update(n_images=int(images.shape[0]), tta=tta)
    return out


def binary_metrics(pred: Tensor, gt: Tensor) -> dict:
    """Pooled and per-image DSC / IoU / Acc of boolean (N, H, W) maps. ADAPTER: rwkvseg.metrics."""
    tp = (pred & gt).flatten(1).sum(1).double()
    fp = (pred & ~gt).flatten(1).sum(1).double()
    fn = (~pred & gt).flatten(1).sum(1).double()
    tn = (~pred & ~gt).flatten(1).sum(1).double()
    TP, FP, FN, TN = tp.sum(), fp.sum(), fn.sum(), tn.sum()
    both_empty = (tp + fp + fn) == 0
    dsc_i = torch.where(both_empty, 1.0, 2 * tp / (2 * tp + fp + fn).clamp_min(1))
    iou_i = torch.where(both_empty, 1.0, tp / (tp + fp + fn).clamp_min(1))
    return {
        "pooled": {"dsc": float(2 * TP / (2 * TP + FP + FN)), "iou": float(TP / (TP + FP + FN)),
                   "acc": float((TP + TN) / (TP + TN + FP + FN))},
        "per_image": {"dsc": float(dsc_i.mean()), "iou": float(iou_i.mean()),
                      "acc": float(((tp + tn) / (tp + tn + fp + fn)).mean())},
    }


# --------------------------------------------------------------------------------------------
# Volumes (ACDC)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_volume(model, image: Tensor, *, img_size: int = 224, tta: bool = False, bf16: bool = False,
                   batch_size: int = 32) -> Tensor:
    """Label volume (D, H, W) uint8 for a float image volume (D, H, W) in [0, 1] (protocols §5)."""
    dev = _device_of(model)
    D, H, W = image.shape
    out = []
    for i in range(0, D, batch_size):
        x = image[i:i + batch_size].to(dev, torch.float32)[:, None]               # (d, 1, H, W)
        x = F.interpolate(x, size=(img_size, img_size), mode="bicubic", align_corners=False)
        x = to_input((x.clamp(0, 1) * 255).round().byte())                        # same quantisation as training
        lab = predict_logits(model, x, tta=tta, bf16=bf16).argmax(1, keepdim=True)  # (d, 1, S, S)
        lab = F.interpolate(lab.float(), size=(H, W), mode="nearest")[:, 0]         # (d, H, W)
        out.append(lab.byte().cpu())
    return torch.cat(out)


def volume_class_metrics(pred: np.ndarray, gt: np.ndarray, *, hd95: bool = True) -> tuple[float, float]:
    """(Dice, HD95) of boolean 3-D masks, authors' empty rules. ADAPTER: rwkvseg.metrics owns this."""
    if pred.sum() == 0:
        return 0.0, 0.0
    if gt.sum() == 0:
        return 1.0, 0.0
    dice = 2.0 * (pred & gt).sum() / (pred.sum() + gt.sum())
    if not hd95:
        return float(dice), float("nan")
    from scipy import ndimage

    sa = pred ^ ndimage.binary_erosion(pred)
    sb = gt ^ ndimage.binary_erosion(gt)
    da = ndimage.distance_transform_edt(~sb)[sa]
    db = ndimage.distance_transform_edt(~sa)[sb]
    return float(dice), float(np.percentile(np.concatenate([da, db]), 95))


@torch.no_grad()
def evaluate_volumes(model, volumes: list, *, img_size: int = 224, tta: bool = False, bf16: bool = False,
                     hd95: bool = True, num_classes: int = 4) -> dict:
    """Per-class 3-D Dice (and HD95) over a list of (name, image (D,H,W), label (D,H,W)) volumes."""
    was_training = model.training
    model.eval()
    names = ACDC_CLASSES if num_classes == 4 else tuple(f"class{c}" for c in range(1, num_classes))
    dice = {n: [] for n in names}
    hd = {n: [] for n in names}
    for _, image, label in volumes:
        pred = predict_volume(model, torch.as_tensor(image), img_size=img_size, tta=tta, bf16=bf16).numpy()
        label = np.asarray(label)
        for c, n in enumerate(names, start=1):
            d_, h_ = volume_class_metrics(pred == c, label == c, hd95=hd95)
            dice[n].append(d_)
            hd[n].append(h_)
    model.train(was_training)
    per_class = {n: {"dice": float(np.mean(dice[n])), **({"hd95": float(np.mean(hd[n]))} if hd95 else {})}
                 for n in names}
    out = {"dice": float(np.mean([v["dice"] for v in per_class.values()])), "per_class": per_class,
           "n_volumes": len(volumes), "tta": tta}
    if hd95:
        out["hd95"] = float(np.mean([v["hd95"] for v in per_class.values()]))
    return out


def evaluate_split(model, split, *, binary: bool, img_size: int, tta: bool = False, hd95: bool = True,
                   bf16: bool = False) -> dict:
    """Metrics of an EvalSet (rwkvseg.train.EvalSet), with the score used for model selection:
    pooled DSC for ISIC, mean 3-D Dice over RV/Myo/LV for ACDC."""
    if binary:
        out = evaluate_binary(model, split.images, split.masks, tta=tta, bf16=bf16)
        out.update(selection_metric="pooled_dsc", selection_score=out["pooled"]["dsc"])
    else:
        out = evaluate_volumes(model, split.volumes, img_size=img_size, tta=tta, bf16=bf16, hd95=hd95)
        out.update(selection_metric="mean_dice", selection_score=out["dice"])
    out["split"] = split.name
    return out


# --------------------------------------------------------------------------------------------
# Checkpoints, tables, prediction on any image
# --------------------------------------------------------------------------------------------

def load_model(checkpoint: str | Path, *, device: torch.device | str | None = None):
    """(model in eval mode, training config dict) from a train.py checkpoint (best.pt / last.pt)."""
    from rwkvseg.models import create_model
    from rwkvseg.notebook import default_device

    device = torch.device(device) if device is not None else default_device()
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: pass out_dir/best.pt or out_dir/last.pt "
                                "of a `python -m rwkvseg train` run")
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = ckpt["config"]
    model = create_model(cfg["model"], in_chans=ckpt["in_chans"], num_classes=ckpt["num_classes"],
                         **cfg.get("model_kwargs", {}))
    state = {k.replace("_orig_mod.", "").replace("module.", ""): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg


def evaluate_checkpoint(checkpoint: str | Path, *, data_dir: str | None = None, split: str = "test",
                        tta: bool = True, max_items: int | None = None,
                        device: str | None = None) -> dict:
    """Evaluate a checkpoint on the `split` ("test" or "val") of the data set it was trained on."""
    from rwkvseg.train import TrainConfig, load_training_data

    model, cfg_dict = load_model(checkpoint, device=device)
    cfg = TrainConfig(**{**cfg_dict, "data_dir": data_dir or cfg_dict.get("data_dir"),
                         "max_eval_items": max_items, "selection": "val" if split == "val" else "last",
                         "max_train_images": 1})
    data = load_training_data(cfg, device=_device_of(model))
    es = data.val if split == "val" else data.test
    out = {"checkpoint": str(checkpoint), "dataset": cfg.dataset, "split_info": data.split_info,
           "no_tta": evaluate_split(model, es, binary=cfg.is_binary, img_size=cfg.img_size, tta=False)}
    if tta:
        out["tta"] = evaluate_split(model, es, binary=cfg.is_binary, img_size=cfg.img_size, tta=True)
    return out


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
            cls = "  ".join(f"{n} {100 * v['dice']:6.2f}" for n, v in r["per_class"].items())
            hd = f"  HD95 {r['hd95']:.2f} vox" if "hd95" in r else ""
            rows.append(f"{key:<7} Dice {100 * r['dice']:6.2f}  ({cls}){hd}")
    return "\n".join(rows)


@torch.no_grad()
def predict_images(model, paths: list, out_dir: str | Path, *, img_size: int = 256, tta: bool = False,
                   overlay: bool = True) -> list[Path]:
    """Predict masks for image files of any size: resized to img_size in, the mask resized back
    (nearest) to the image's own size. Writes <stem>_mask.png (0/255, or the class index x 60 for
    multi-class) and <stem>_overlay.png (the mask in red over the image)."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = _device_of(model)
    model.eval()
    in_chans = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    written = []
    for p in map(Path, paths):
        img = Image.open(p).convert("RGB" if in_chans == 3 else "L")
        arr = np.array(img)
        x = torch.from_numpy(arr).to(dev)
        x = (x.permute(2, 0, 1) if x.ndim == 3 else x[None])[None].float()       # (1, C, H, W)
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
        logits = predict_logits(model, to_input(x.round().clamp(0, 255).byte()), tta=tta)
        lab = (torch.sigmoid(logits) >= 0.5)[:, 0] if logits.shape[1] == 1 else logits.argmax(1)
        lab = F.interpolate(lab[:, None].float(), size=arr.shape[:2], mode="nearest")[0, 0].byte().cpu().numpy()
        scale = 255 if logits.shape[1] == 1 else 60
        mask_path = out_dir / f"{p.stem}_mask.png"
        Image.fromarray((lab * scale).astype(np.uint8)).save(mask_path)
        written.append(mask_path)
        if overlay:
            rgb = np.asarray(img.convert("RGB")).astype(np.float32)
            red = np.zeros_like(rgb)
            red[..., 0] = 255
            a = 0.45 * (lab > 0)[..., None]
            ov_path = out_dir / f"{p.stem}_overlay.png"
            Image.fromarray((rgb * (1 - a) + red * a).astype(np.uint8)).save(ov_path)
            written.append(ov_path)
    return written


def write_json(obj: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=str))
