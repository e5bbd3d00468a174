"""Best, median and worst cases of an evaluated split: `cases.json` and `cases.png` for the book.

    rwkvseg evaluate --checkpoint weights/rwkv_unet_t_isic2018 --data_dir DATA --no-tta \\
        --cases rwkvseg/results/train_isic2018/cases

The Dice of every case comes from the evaluation itself (rwkvseg.engine.evaluate_split with
per_case=True, no TTA): per image for ISIC, per volume for ACDC (3-D Dice of RV, Myo and LV,
authors' empty-mask rules, their mean). pick_cases orders them and takes k from the top, the
middle and the bottom; write_cases predicts those cases again and draws one row each: the image,
the ground truth and the prediction over it (ACDC: the volume's middle slice, at its stored size).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rwkvseg.data import Normalization, overlay, resize_image
from rwkvseg.data.acdc import LABELS
from rwkvseg.data.overlay import PALETTE
from rwkvseg.engine.evaluate import predict_logits, predict_volume
from rwkvseg.env import device_of, provenance

GROUPS = ("best", "median", "worst")


def pick_cases(per_case: list[dict], k: int = 2) -> dict[str, list[str]]:
    """Ids of the k best, k median and k worst of [{"id", "dice"}, ...], best first within each group
    (ties broken by id). With fewer than 3k cases k shrinks to len // 3 (at least 1)."""
    if not per_case:
        raise ValueError("no cases to pick from")
    ids = [c["id"] for c in sorted(per_case, key=lambda c: (-c["dice"], c["id"]))]
    n = len(ids)
    k = max(1, min(k, n // 3))
    mid = (n - k + 1) // 2
    return {"best": ids[:k], "median": ids[mid:mid + k], "worst": ids[n - k:]}


def _agreement(model, result: dict, *, binary: bool, bf16: bool = False) -> dict | None:
    """This run's test numbers beside those in the checkpoint's config.json (metrics.test), when the
    checkpoint is an exported directory and the split is its test split."""
    record = getattr(model, "pretrained_record", None) or {}
    ref = (record.get("metrics") or {}).get("test")
    if ref is None or result["split"] != "test":
        return None
    if binary:
        pairs = {"per_image_dsc": (ref["per_image"]["dsc"], result["per_image"]["dsc"]),
                 "pooled_dsc": (ref["pooled"]["dsc"], result["pooled"]["dsc"])}
        n_ref, n = ref["n_images"], result["n_images"]
    else:
        ref = ref.get("authors", ref)
        pairs = {"volume_mean_dice": (ref["dice"], result["dice"]),
                 **{f"{c}_dice": (ref["per_class"][c]["dice"], result["per_class"][c]["dice"])
                    for c in ref["per_class"]}}
        n_ref, n = ref["n_volumes"], result["n_volumes"]
    extra = record.get("extra", {})
    if n != n_ref:
        return {"comparable": False, "note": f"{n} of the {n_ref} test cases evaluated: not compared"}
    metrics = {name: {"reference": a, "this_run": b, "difference_points": round(100 * (b - a), 3)}
               for name, (a, b) in pairs.items()}
    return {
        "comparable": True,
        "reference": "metrics.test of the checkpoint's config.json (no TTA)",
        "reference_run": {"device": extra.get("provenance", {}).get("device"),
                          "bf16": extra.get("train_config", {}).get("bf16"),
                          "weights": "the float32 model at the end of training"},
        "this_run": {"weights": f"{record.get('dtype')} as shipped, upcast to float32; "
                                f"{'bf16 autocast' if bf16 else 'float32 compute'}"},
        "n": n,
        "test_split_sha256_matches": (result.get("split_sha256") == record.get("training_data", {}).get("test_sha256")
                                      if result.get("split_sha256") else None),
        "metrics": metrics,
        "max_abs_difference_points": max(abs(m["difference_points"]) for m in metrics.values()),
    }


@torch.no_grad()
def _panels(model, split, index: int, *, binary: bool, normalization: Normalization, bf16: bool = False):
    """(image, ground truth, prediction) of case `index` as arrays for overlay(), plus a note."""
    dev = device_of(model)
    if binary:
        image = split.images[index:index + 1]
        prob = torch.sigmoid(predict_logits(model, normalization.from_uint8(image.to(dev)), bf16=bf16))[0, 0]
        return image[0].cpu().numpy(), split.masks[index].cpu().numpy(), (prob >= 0.5).cpu().numpy(), ""
    vol = split.volumes[index]
    z = vol.native_label.shape[0] // 2                                          # the middle slice
    size = tuple(vol.native_label.shape[-2:])
    pred = predict_volume(model, vol.image[z:z + 1], size, normalization=normalization, bf16=bf16)[0].numpy()
    image = resize_image(torch.as_tensor(vol.image[z]).float() / 255, size)[0].numpy()   # display only
    return image, vol.native_label[z], pred, f"slice {z + 1}/{vol.native_label.shape[0]}, cropped"


def _crop(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, margin: float = 0.6):
    """The three (H, W) arrays cut to the bounding box of both label maps, grown by `margin` of its size
    on every side (ACDC: the heart fills a small part of the slice)."""
    ys, xs = np.nonzero((truth > 0) | (pred > 0))
    if ys.size == 0:
        return image, truth, pred
    box = []
    for lo, hi, size in ((ys.min(), ys.max(), truth.shape[0]), (xs.min(), xs.max(), truth.shape[1])):
        grow = int(margin * (hi - lo + 1))
        box.append(slice(max(0, lo - grow), min(size, hi + 1 + grow)))
    return image[tuple(box)], truth[tuple(box)], pred[tuple(box)]


def case_figure(model, split, picked: dict[str, list[str]], dice: dict[str, float], *, binary: bool,
                normalization: Normalization, panel_inches: float = 1.7, bf16: bool = False):
    """A matplotlib Figure (no pyplot, Agg canvas): one row per picked case, best first."""
    ids = split.ids if binary else [v.name for v in split.volumes]
    rows = [(group, case) for group in GROUPS for case in picked[group]]
    fig = Figure(figsize=(3 * panel_inches, len(rows) * panel_inches + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (group, case) in enumerate(rows):
        image, truth, pred, note = _panels(model, split, ids.index(case), binary=binary, normalization=normalization,
                                           bf16=bf16)
        truth, pred = np.asarray(truth), np.asarray(pred).astype(np.uint8)
        if not binary:
            image, truth, pred = _crop(image, truth, pred)
        panels = ((overlay(image, np.zeros_like(truth)), f"{group}: {case}" + (f"\n{note}" if note else "")),
                  (overlay(image, truth), "ground truth"),                   # (an empty mask: the image alone)
                  (overlay(image, pred), f"prediction, {'' if binary else 'volume '}Dice {dice[case]:.3f}"))
        for ax, (panel, title) in zip(axes[r], panels):
            ax.imshow(panel, interpolation="antialiased")
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    names = ("lesion",) if binary else LABELS[1:]
    fig.legend(handles=[Patch(color=np.array(PALETTE[i + 1]) / 255, label=n) for i, n in enumerate(names)],
               loc="outside lower center", ncol=len(names), fontsize=7, frameon=False)
    return fig


def write_cases(out_dir: str | Path, model, split, result: dict, *, binary: bool, normalization: Normalization,
                k: int = 2, dataset: str | None = None, checkpoint: str | None = None, split_info: dict | None = None,
                command: str | None = None, mode: str = "full", dpi: int = 100, bf16: bool = False) -> dict:
    """Write out_dir/cases.json and out_dir/cases.png from an evaluate_split(..., per_case=True) result
    of `split`; returns a short summary: the folder, the picked ids and the agreement. `bf16`: the figure's
    predictions under bf16 autocast on CUDA, as the result's were (the training engine's evaluation)."""
    per_case = result["per_case"]
    picked = pick_cases(per_case, k)
    dice = {c["id"]: c["dice"] for c in per_case}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = case_figure(model, split, picked, dice, binary=binary, normalization=normalization, bf16=bf16)
    fig.savefig(out_dir / "cases.png", dpi=dpi, pil_kwargs={"optimize": True})

    sha = (split_info or {}).get(split.name, {}).get("sha256")
    agreement = _agreement(model, {**result, "split_sha256": sha}, binary=binary, bf16=bf16)
    record = {
        "dataset": dataset, "split": split.name, "split_info": split_info, "checkpoint": checkpoint,
        "metric": ("per-image DSC (rwkvseg.metrics.BinaryMetrics, threshold 0.5)" if binary else
                   "per-volume 3-D Dice, mean over RV/Myo/LV (rwkvseg.metrics.VolumeMetrics, authors' rules)"),
        "tta": result["tta"],
        "rule": "cases sorted by Dice, ties by id: best = the top k, median = the k around the middle, "
                "worst = the bottom k; best first within each group",
        "k": len(picked["best"]),
        "picked": {g: [{"id": i, "dice": dice[i]} for i in picked[g]] for g in GROUPS},
        "summary": {"n": len(per_case), "mean_dice": float(np.mean([c["dice"] for c in per_case])),
                    "median_dice": float(np.median([c["dice"] for c in per_case])),
                    **({"pooled_dsc": result["pooled"]["dsc"]} if binary else {})},
        "agreement": agreement,
        "figure": {"file": "cases.png", "rows": "one per picked case, best first: image, ground truth, prediction",
                   "shows": "the evaluated 256x256 image" if binary else
                            "the volume's middle slice (D // 2) at its stored size; image resized there for display"},
        "cases": per_case,
        "provenance": provenance(mode=mode, device=device_of(model),
                                 **({"command": command} if command else {})),
    }
    (out_dir / "cases.json").write_text(json.dumps(record, indent=1) + "\n")
    return {"dir": str(out_dir), "picked": picked, "agreement": agreement}


def case_rows(record: dict, **columns) -> list[dict]:
    """The picked cases of a cases.json record as table rows (rwkvseg.book.show_table): `columns`
    first, then the group, the case, its Dice in % and, for volumes, each class's Dice in %."""
    per_class = {c["id"]: c.get("per_class") or {} for c in record["cases"]}
    return [{**columns, "group": group, "case": c["id"], "Dice (%)": 100 * c["dice"],
             **{name: 100 * v for name, v in per_class[c["id"]].items()}}
            for group, picked in record["picked"].items() for c in picked]
