"""Segment image files of any size with a trained network: masks and overlays as PNG files.

    model, cfg = rwkvseg.engine.load_model("weights/rwkv_unet_t_isic2018")
    report = predict_images(model, ["a.jpg", "b.png"], "pred/", img_size=cfg["img_size"])
    report.predictions[0].mask                 # pred/a_mask.png

Each image is read by rwkvseg.data.files.read_image (regular files only; a 16-bit image scaled to
8 bits, a JPEG above the decode bound decoded at a reduced scale: its notes say so), resized to
the training size with PIL's bilinear filter (as the training cache was), normalised as in
training, predicted, and its mask resized back (nearest) to the image's own size. Memory stays
within the decode bound plus one byte per pixel of the image for the mask.

Outputs never overwrite one another nor an input: inputs that share a stem (a.jpg and a.png,
d1/a.jpg and d2/a.jpg, A.jpg and a.jpg on a case-insensitive disk) get names that tell them apart
(`output_names`). A file that cannot be read raises a DataError naming it (on_error="raise"), or
is skipped and reported in the result and by a DataSkipWarning (on_error="skip").
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rwkvseg.data import NORMALIZATIONS, Normalization
from rwkvseg.data.errors import DataError, SkipLog, check_on_error, warn_notes
from rwkvseg.data.files import read_image
from rwkvseg.engine.evaluate import predict_logits
from rwkvseg.env import device_of

OUTPUTS = ("_mask.png", "_overlay.png")


@dataclass(frozen=True)
class Prediction:
    """The files written for one input, and how it was read (e.g. "16-bit grey scaled to 8 bits")."""

    image: Path
    mask: Path
    overlay: Path | None
    notes: tuple[str, ...] = ()


@dataclass
class PredictReport:
    """What predict_images did: one Prediction per image written, and the files it skipped."""

    predictions: list[Prediction] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def written(self) -> list[Path]:
        return [p for pr in self.predictions for p in (pr.mask, pr.overlay) if p is not None]


def output_names(paths: list[Path], out_dir: Path | None = None) -> list[str]:
    """A distinct output stem per input, compared ignoring case: the file's stem; where two inputs
    share it, the file name with its extension ("a.jpg"); where they still share it, the name with
    its folders ("d1_a.jpg"). A name whose outputs (<stem>_mask.png, <stem>_overlay.png in
    `out_dir`) would replace one of the inputs is lengthened the same way."""
    parts = [Path(os.path.abspath(p)).parts[1:] for p in paths]            # without the root
    inputs = {os.path.normcase(os.path.abspath(p)).lower() for p in paths}
    level = [0] * len(paths)

    def name(i: int) -> str:
        return Path(paths[i]).stem if level[i] == 0 else "_".join(parts[i][-level[i]:])

    while True:
        names = [name(i) for i in range(len(paths))]
        groups = defaultdict(list)
        for i, n in enumerate(names):
            groups[n.lower()].append(i)
        bump = {i for group in groups.values() if len(group) > 1 for i in group}
        if out_dir is not None:
            bump |= {i for i, n in enumerate(names)
                     if any(os.path.normcase(os.path.abspath(out_dir / f"{n}{s}")).lower() in inputs for s in OUTPUTS)}
        if not bump:
            return names
        if any(level[i] >= len(parts[i]) for i in bump):                     # the whole path is used up
            return [f"{Path(p).stem}-{i + 1}" for i, p in enumerate(paths)]
        for i in bump:
            level[i] += 1


def _overlay(rgb: np.ndarray, label: np.ndarray, alpha: float = 0.45, rows: int = 512) -> np.ndarray:
    """The mask in red over the image, (H, W, 3) uint8, computed a band of rows at a time."""
    out = np.empty_like(rgb)
    red = np.array([255, 0, 0], np.float32)
    for r in range(0, rgb.shape[0], rows):
        a = alpha * (label[r:r + rows] > 0)[..., None]
        out[r:r + rows] = (rgb[r:r + rows].astype(np.float32) * (1 - a) + red * a).astype(np.uint8)
    return out


@torch.no_grad()
def predict_images(model, paths: list, out_dir: str | Path, *, img_size: int = 256, tta: bool = False,
                   normalization: Normalization | None = None, overlay: bool = True,
                   on_error: str = "raise") -> PredictReport:
    """Predict masks for image files of any size (see the module docstring). Writes
    <name>_mask.png (0/255, or the class index x 60 for multi-class) at the image's own size and
    <name>_overlay.png (the mask in red over the image, at the size it was decoded at), <name>
    from output_names. `normalization` defaults to ISIC's for 3 input channels, ACDC's for 1.
    A file given twice is predicted once. on_error: "raise" (the first unreadable file stops the
    batch with a DataError naming it) or "skip" (it is left out, listed in the report's `skipped`)."""
    check_on_error(on_error)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = device_of(model)
    model.eval()
    in_chans = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    if normalization is None:
        normalization = NORMALIZATIONS["isic2018" if in_chans == 3 else "acdc"]
    paths = list({os.path.normpath(os.path.abspath(p)): Path(p) for p in paths}.values())
    report = PredictReport()
    for path, name in zip(paths, output_names(paths, out_dir)):
        try:
            read = read_image(path, "image", mode="RGB" if in_chans == 3 else "L")
        except DataError as e:
            if on_error == "raise":
                raise
            report.skipped.add(e)
            continue
        small = np.asarray(read.image.resize((img_size, img_size), Image.Resampling.BILINEAR))
        x = torch.from_numpy(small.copy()).to(dev)
        x = (x.permute(2, 0, 1) if x.ndim == 3 else x[None])[None]                  # (1, C, S, S) uint8
        logits = predict_logits(model, normalization.from_uint8(x), tta=tta)
        label = ((torch.sigmoid(logits) >= 0.5)[:, 0] if logits.shape[1] == 1 else logits.argmax(1))
        label = label.to(torch.uint8)[:, None].cpu()                                # (1, 1, S, S)
        width, height = read.size
        mask = F.interpolate(label, size=(height, width), mode="nearest")[0, 0].numpy()
        mask_path = out_dir / f"{name}_mask.png"
        Image.fromarray(mask * np.uint8(255 if logits.shape[1] == 1 else 60)).save(mask_path)
        ov_path = None
        if overlay:
            decoded = read.image.size
            shown = mask if decoded == read.size else \
                F.interpolate(label, size=(decoded[1], decoded[0]), mode="nearest")[0, 0].numpy()
            ov_path = out_dir / f"{name}_overlay.png"
            Image.fromarray(_overlay(np.asarray(read.image.convert("RGB")), shown)).save(ov_path)
        report.predictions.append(Prediction(path, mask_path, ov_path, read.notes))
    report.skipped.warn("predict_images")
    warn_notes("predict_images", [(str(p.image), n) for p in report.predictions for n in p.notes])
    return report
