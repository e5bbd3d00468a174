"""Segment image files of any size with a trained network: masks and overlays as PNG files.

    model, cfg = rwkvseg.engine.load_model("weights/rwkv_unet_t_isic2018")
    predict_images(model, ["a.jpg", "b.png"], "pred/", img_size=cfg["img_size"])

Each image is resized to the training size, normalised as in training, predicted, and its mask
resized back to the image's own size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rwkvseg.data import NORMALIZATIONS, Normalization
from rwkvseg.engine.evaluate import predict_logits


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_images(model, paths: list, out_dir: str | Path, *, img_size: int = 256, tta: bool = False,
                   normalization: Normalization | None = None, overlay: bool = True) -> list[Path]:
    """Predict masks for image files of any size: resized to img_size in (bilinear), normalised as
    in training (`normalization`; default: ISIC's for 3 channels, ACDC's for 1), the mask resized
    back (nearest) to the image's own size. Writes <stem>_mask.png (0/255, or the class index x 60 for
    multi-class) and <stem>_overlay.png (the mask in red over the image)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = _device_of(model)
    model.eval()
    in_chans = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    if normalization is None:
        normalization = NORMALIZATIONS["isic2018" if in_chans == 3 else "acdc"]
    written = []
    for p in map(Path, paths):
        img = Image.open(p).convert("RGB" if in_chans == 3 else "L")
        arr = np.array(img)
        x = torch.from_numpy(arr).to(dev)
        x = (x.permute(2, 0, 1) if x.ndim == 3 else x[None])[None].float()       # (1, C, H, W)
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
        logits = predict_logits(model, normalization.from_uint8(x.round().clamp(0, 255).byte()), tta=tta)
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
