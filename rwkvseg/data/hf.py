"""The Hugging Face `datasets` path: a local image folder, or a dataset on the Hub.

A local folder is read with the `imagefolder` builder and a metadata file linking each image to
its mask: `metadata.jsonl` lines like
    {"file_name": "images/ISIC_0000000.jpg", "id": "ISIC_0000000",
     "mask_file_name": "masks/ISIC_0000000_segmentation.png"}
(`export_imagefolder` writes such a folder from ISIC pairs). A Hub name ("user/dataset") is
loaded with `datasets.load_dataset`, which needs the network the first time; offline
(HF_HUB_OFFLINE=1 or no connection) it fails with a message saying so. Both give a SegCache,
checked like the files (mask values {0, 255}, sizes). `datasets` is imported only here.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rwkvseg.data.cache import SegCache
from rwkvseg.data.errors import DataError, DataNotFoundError, SkipLog, check_on_error
from rwkvseg.data.isic import IsicPair, decode_pair


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("the Hugging Face path needs the `datasets` package: pip install datasets") from None
    return datasets


def export_imagefolder(pairs: Sequence[IsicPair], out_dir: str | Path) -> Path:
    """Copy pairs (byte-identical) into out_dir/images, out_dir/masks and write metadata.jsonl."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    lines = []
    for pair in pairs:
        shutil.copyfile(pair.image, out / "images" / pair.image.name)
        shutil.copyfile(pair.mask, out / "masks" / pair.mask.name)
        lines.append(json.dumps({"file_name": f"images/{pair.image.name}",
                                 "mask_file_name": f"masks/{pair.mask.name}", "id": pair.id}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"


def load_hf(source: str | Path, *, split: str = "train", image_column: str = "image", mask_column: str = "mask",
            id_column: str = "id", size: tuple[int, int] | None = None, on_error: str = "raise",
            cache_dir: str | Path | None = None) -> SegCache:
    """Images (N, 3, H, W) uint8 and masks (N, H, W) {0, 1} from a local image folder or a Hub name."""
    check_on_error(on_error)
    datasets = _import_datasets()
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise DataNotFoundError(local, "not a folder", hint="pass an image folder with metadata.jsonl")
        if not any((local / name).is_file() for name in ("metadata.jsonl", "metadata.csv")):
            raise DataError(local, "no metadata.jsonl or metadata.csv linking images to masks",
                            hint='write lines {"file_name": ..., "mask_file_name": ...} (see export_imagefolder)')
        ds = datasets.load_dataset("imagefolder", data_dir=str(local), split=split,
                                   cache_dir=None if cache_dir is None else str(cache_dir))
        where = str(local)
    else:
        try:
            ds = datasets.load_dataset(str(source), split=split,
                                       cache_dir=None if cache_dir is None else str(cache_dir))
        except Exception as e:                 # datasets raises connection, hub and value errors alike
            why = ("offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set) and not in the local cache"
                   if _offline() else f"could not be loaded ({type(e).__name__}: {e})")
            raise DataNotFoundError(str(source), f"Hub dataset {why}",
                                    hint="download it once online, or pass a local folder") from None
        where = f"hf://{source}"
    missing = {image_column, mask_column} - set(ds.column_names)
    if missing:
        raise DataError(where, f"no column {sorted(missing)} (columns: {ds.column_names})",
                        hint="pass image_column= and mask_column=")
    skipped = SkipLog()
    images, masks, ids = [], [], []
    has_ids = id_column in ds.column_names
    for k, row in enumerate(ds):
        name = str(row[id_column]) if has_ids else f"row_{k}"
        try:
            image, mask = decode_pair(row[image_column], row[mask_column], image_name=f"{where}[{name}].image",
                                      mask_name=f"{where}[{name}].mask", size=size)
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.add(e)
            continue
        images.append(image)
        masks.append(mask)
        ids.append(name)
    if not ids:
        raise DataError(where, "no usable row", hint=skipped.summary() if len(skipped) else "the split is empty")
    if len({m.shape for m in masks}) > 1:
        raise DataError(where, "images have different sizes", hint="pass size=(256, 256)")
    skipped.warn(f"load_hf({source})")
    meta = {"dataset": "hf", "source": where, "split": split, "num_classes": 2, "size": list(masks[0].shape),
            "skipped": skipped.to_list()}
    return SegCache(images=np.stack(images), masks=np.stack(masks), ids=tuple(ids), meta=meta)
