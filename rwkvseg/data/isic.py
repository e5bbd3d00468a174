"""ISIC 2017 / 2018 lesion segmentation: find image/mask pairs, decode them, check them.

Images are `ISIC_XXXXXXX.jpg` (any size), masks `ISIC_XXXXXXX_segmentation.png` (8-bit grey,
values exactly {0, 255}; stored here as {0, 1}). Accepted layouts, from the folder given:

- images and masks in that folder itself;
- sibling sub-folders, one with images and one with masks: `images/` + `masks/` (a resized
  copy), or the official `ISIC2018_Task1-2_Training_Input/` + `ISIC2018_Task1_Training_GroundTruth/`;
  for ISIC 2017, whose root holds Training, Validation and Test folders, pick one with
  `split="Training"` (the `_superpixels.png` files are ignored).

Every problem (corrupt or truncated file, mask of another size, unpaired file, two files for one id,
mask values outside {0, 255}, a named pipe or device in place of a file) raises a DataError naming
the file; `on_error="skip"` leaves such pairs out, counts them in a SkipLog and warns. Files are
read by rwkvseg.data.files.read_image: a 16-bit image is scaled to 8 bits and a huge JPEG decoded
at a reduced scale, and the load warns with those notes (DataNoteWarning; kept in the cache's meta).
Ids are compared ignoring case and extension: `ISIC_0000001.jpg` beside `isic_0000001.PNG` is an
error naming both, never a silent choice.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from rwkvseg.data.cache import SegCache, default_cache_dir, load_or_build, source_fingerprint
from rwkvseg.data.errors import DataError, DataNotFoundError, SkipLog, check_on_error, warn_notes
from rwkvseg.data.files import image_size, read_image
from rwkvseg.data.paths import dataset_dir, samples_dir

IMAGE_RE = re.compile(r"^(ISIC_\d{7})\.(?:jpe?g|png)$", re.IGNORECASE)
MASK_RE = re.compile(r"^(ISIC_\d{7})_segmentation\.png$", re.IGNORECASE)
MASK_VALUES = (0, 255)
IMAGE_SIZE = (256, 256)          # (H, W) of the papers' training (and of the resized copy read here)
LAYOUT = ("expected ISIC_XXXXXXX.jpg images with ISIC_XXXXXXX_segmentation.png masks, in one folder "
          "or in two sibling folders (e.g. images/ and masks/)")


@dataclass(frozen=True)
class IsicPair:
    """One image file and its mask file."""

    id: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class IsicScan:
    """The pairs found in a folder (sorted by id) and the unpaired files skipped."""

    pairs: tuple[IsicPair, ...]
    images_dir: Path
    masks_dir: Path
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]


def _matches(folder: Path, pattern: re.Pattern) -> tuple[dict[str, Path], list[tuple[str, DataError]]]:
    """{id: path} of the entries in `folder` whose name matches `pattern` (a named pipe or device
    too: reading it is refused by name), and an (id, DataError) per file that claims an id already
    found (ids are compared ignoring case and extension)."""
    found: dict[str, Path] = {}
    clashes: list[tuple[str, DataError]] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        m = pattern.match(entry.name)
        if not m:
            continue
        key = m.group(1).upper()
        if key in found:
            clashes.append((key, DataError(found[key], f"two files for the id {key}: {found[key].name} and "
                                           f"{entry.name} (ids are compared ignoring case and extension)",
                                           hint="keep one of them: which one is meant cannot be guessed")))
        else:
            found[key] = Path(entry.path)
    return found, clashes


def _locate(folder: Path, split: str | None) -> tuple[Path, Path]:
    """(images folder, masks folder) under `folder`: itself or one level of sub-folders."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    if split is not None:
        candidates = [p for p in candidates if p == folder or split.lower() in p.name.lower()]
    image_dirs = [p for p in candidates if _matches(p, IMAGE_RE)[0]]
    mask_dirs = [p for p in candidates if _matches(p, MASK_RE)[0]]
    if not image_dirs or not mask_dirs:
        found = "no images" if not image_dirs else "no masks"
        raise DataNotFoundError(folder, f"{found} found here or in its sub-folders", hint=LAYOUT)
    if len(image_dirs) > 1 or len(mask_dirs) > 1:
        names = ", ".join(p.name for p in image_dirs + mask_dirs)
        raise DataError(folder, f"several image or mask folders ({names})",
                        hint='pick one with split="Training" (or "Validation", "Test"), '
                             "or pass images_dir= and masks_dir=")
    return image_dirs[0], mask_dirs[0]


def find_isic_pairs(folder: str | Path | None = None, *, split: str | None = None,
                    images_dir: str | Path | None = None, masks_dir: str | Path | None = None,
                    on_error: str = "raise") -> IsicScan:
    """Pair every ISIC_XXXXXXX image with its ISIC_XXXXXXX_segmentation.png mask.

    Give `folder` (layout found automatically) or both `images_dir` and `masks_dir`. An image
    without a mask, or a mask without an image, is an error (or skipped, with on_error="skip").
    """
    scan = _scan(folder, split=split, images_dir=images_dir, masks_dir=masks_dir, on_error=on_error)
    scan.skipped.warn(f"find_isic_pairs({scan.images_dir.parent})")
    return scan


def _scan(folder, *, split, images_dir, masks_dir, on_error) -> IsicScan:
    """find_isic_pairs without the warning (load_isic warns once, for everything it skipped)."""
    check_on_error(on_error)
    if images_dir is not None and masks_dir is not None:
        images_dir, masks_dir = Path(images_dir), Path(masks_dir)
        for p in (images_dir, masks_dir):
            if not p.is_dir():
                raise DataNotFoundError(p, "folder does not exist", hint=LAYOUT)
    elif folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataNotFoundError(folder, "folder does not exist", hint=LAYOUT)
        images_dir, masks_dir = _locate(folder, split)
    else:
        raise ValueError("give folder=, or both images_dir= and masks_dir=")
    (images, image_clashes), (masks, mask_clashes) = _matches(images_dir, IMAGE_RE), _matches(masks_dir, MASK_RE)
    skipped = SkipLog()
    problems = [error for _, error in image_clashes + mask_clashes]
    for key, _ in image_clashes + mask_clashes:          # a clashing id is left out whole (skip mode)
        images.pop(key, None)
        masks.pop(key, None)
    problems += [DataError(images[i], f"image has no mask (expected {masks_dir / f'{i}_segmentation.png'})")
                 for i in sorted(images.keys() - masks.keys())]
    problems += [DataError(masks[i], f"mask has no image (expected {images_dir / f'{i}.jpg'})")
                 for i in sorted(masks.keys() - images.keys())]
    for problem in problems:
        if on_error == "raise":
            raise problem
        skipped.add(problem)
    pairs = tuple(IsicPair(i, images[i], masks[i]) for i in sorted(images.keys() & masks.keys()))
    if not pairs:
        raise DataNotFoundError(images_dir, "no image/mask pair found", hint=LAYOUT)
    return IsicScan(pairs=pairs, images_dir=images_dir, masks_dir=masks_dir, skipped=skipped)


def decode_pair(image: Image.Image, mask: Image.Image, *, image_name: str, mask_name: str,
                size: tuple[int, int] | None = None, stored_size: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert one decoded pair: image (3, H, W) uint8 RGB, mask (H, W) uint8 {0, 1}.

    `size` (H, W) resizes both: the image bilinearly (PIL, antialiased when shrinking), the mask
    with nearest neighbour, so it stays binary. `stored_size` (W, H): the image's size in its file,
    when it was decoded at a reduced scale (the mask must match that; without `size` it is then
    resized to the decoded image). Images of more than 8 bits are refused here: files read by
    rwkvseg.data.files.read_image arrive scaled.
    """
    if mask.mode not in ("L", "1"):
        raise DataError(mask_name, f"mask has PIL mode {mask.mode!r}, expected 8-bit grey ('L')",
                        hint="save masks as single-channel PNG with values 0 and 255")
    stored = stored_size or image.size
    if mask.size != stored:
        raise DataError(mask_name, f"mask is {mask.size[0]}x{mask.size[1]} (WxH) but its image "
                                   f"{Path(image_name).name} is {stored[0]}x{stored[1]}",
                        hint="a mask must have the size of its image")
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        raise DataError(image_name, f"image has PIL mode {image.mode!r} (more than 8 bits per pixel)",
                        hint="read it with rwkvseg.data.files.read_image(path, mode='RGB'), which scales 16-bit "
                             "images to 8 bits")
    mask = mask.convert("L")
    values = np.flatnonzero(np.bincount(np.asarray(mask).ravel(), minlength=256))
    outside = sorted(set(values.tolist()) - set(MASK_VALUES))
    if outside:
        shown = ", ".join(map(str, outside[:8])) + (", ..." if len(outside) > 8 else "")
        raise DataError(mask_name, f"mask values {{{shown}}} outside {{0, 255}}",
                        hint="ISIC masks are binary (0 background, 255 lesion): resize masks with "
                             "nearest neighbour, never bilinear")
    image = image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    target = image.size if size is None else (size[1], size[0])
    if mask.size != target:
        mask = mask.resize(target, Image.Resampling.NEAREST)
    image_chw = np.asarray(image).transpose(2, 0, 1)                      # (H, W, 3) -> (3, H, W)
    return np.ascontiguousarray(image_chw), (np.asarray(mask) == 255).astype(np.uint8)


def read_isic_pair(pair: IsicPair, *, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, H, W) uint8 and mask (H, W) uint8 {0, 1} of one pair, checked."""
    image, mask, _ = _read_pair(pair, size)
    return image, mask


def _read_pair(pair: IsicPair, size) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """read_isic_pair, and the notes of the image's reading (16-bit scaled, decoded at a reduced scale)."""
    image = read_image(pair.image, "image", mode="RGB")
    mask = read_image(pair.mask, "mask")
    arrays = decode_pair(image.image, mask.image, image_name=str(pair.image), mask_name=str(pair.mask), size=size,
                         stored_size=image.size)
    return (*arrays, image.notes)


def _try_read(pair: IsicPair, size):
    try:
        return _read_pair(pair, size)
    except DataError as e:
        return e


def load_isic(source: str | Path | IsicScan, *, ids: Sequence[str] | None = None,
              size: tuple[int, int] | None = None, on_error: str = "raise", workers: int | None = None,
              dataset: str = "isic") -> SegCache:
    """Decode pairs into a SegCache: images (N, 3, H, W) uint8, masks (N, H, W) uint8 {0, 1}.

    `source` is a folder or an IsicScan; `ids` selects pairs (in that order); `size` (H, W) is
    needed when the images differ in size (e.g. the original ISIC challenge files).
    """
    check_on_error(on_error)
    scan = source if isinstance(source, IsicScan) else _scan(source, split=None, images_dir=None, masks_dir=None,
                                                             on_error=on_error)
    skipped = SkipLog(list(scan.skipped.items))
    pairs = list(scan.pairs)
    if ids is not None:
        by_id = {p.id: p for p in pairs}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DataNotFoundError(scan.images_dir, f"{len(missing)} requested id(s) not found, e.g. {missing[:3]}",
                                    hint="is this the right folder for that split?")
        pairs = [by_id[i] for i in ids]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:                 # PIL decodes without the GIL
        results = list(pool.map(lambda p: _try_read(p, size), pairs))
    kept_images, kept_masks, kept_ids, notes = [], [], [], []
    for pair, result in zip(pairs, results):
        if isinstance(result, DataError):
            if on_error == "raise":
                raise result
            skipped.add(result)
            continue
        kept_images.append(result[0])
        kept_masks.append(result[1])
        kept_ids.append(pair.id)
        notes += [(str(pair.image), note) for note in result[2]]
    if not kept_ids:
        raise DataError(scan.images_dir, "no readable pair left", hint=skipped.summary())
    shapes = {m.shape for m in kept_masks}
    if len(shapes) > 1:
        raise DataError(scan.images_dir, f"images have different sizes, e.g. {sorted(shapes)[:2]} (H, W)",
                        hint="pass size=(256, 256) to resize them while loading")
    skipped.warn(f"load_isic({scan.images_dir.parent})")
    warn_notes(f"load_isic({scan.images_dir.parent})", notes)
    meta = {
        "dataset": dataset, "num_classes": 2, "classes": ["background", "lesion"],
        "mask_values": "file 0 -> 0, 255 -> 1", "size": list(kept_masks[0].shape),
        "resize": None if size is None else "image: PIL bilinear (antialiased); mask: nearest",
        "images_dir": str(scan.images_dir), "masks_dir": str(scan.masks_dir),
        "skipped": skipped.to_list(), "notes": [list(n) for n in notes],
    }
    return SegCache(images=np.stack(kept_images), masks=np.stack(kept_masks), ids=tuple(kept_ids), meta=meta)


def _read_mask_checked(pair: IsicPair) -> np.ndarray:
    """The mask of a pair as (H, W) {0, 1}, checked against its image's size (read from the header only)."""
    stored = image_size(pair.image, "image")
    mask = read_image(pair.mask, "mask").image
    return decode_pair(Image.new("1", stored), mask, image_name=str(pair.image), mask_name=str(pair.mask))[1]


def load_isic_masks(source: str | Path | IsicScan, *, ids: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Masks (N, H, W) uint8 {0, 1} and their ids (sorted), without decoding the images: lesion
    statistics of the whole set in seconds. Same checks as load_isic (image size from the header)."""
    scan = source if isinstance(source, IsicScan) else find_isic_pairs(source)
    pairs = list(scan.pairs) if ids is None else [p for p in scan.pairs if p.id in set(ids)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        masks = list(pool.map(_read_mask_checked, pairs))
    if len({m.shape for m in masks}) > 1:
        raise DataError(scan.masks_dir, "masks have different sizes", hint="use load_isic(..., size=(256, 256))")
    return np.stack(masks), [p.id for p in pairs]


def isic2018_cache_name(size: tuple[int, int] = IMAGE_SIZE) -> str:
    """File name of the ISIC 2018 cache at `size` (H, W), e.g. `isic2018_256x256.npz`."""
    return f"isic2018_{size[0]}x{size[1]}.npz"


def isic2018_cache(root: str | Path | None = None, *, cache_dir: str | Path | None = None,
                   size: tuple[int, int] = IMAGE_SIZE, rebuild: bool = False, verbose: bool = True) -> SegCache:
    """All ISIC 2018 pairs of the data root at `size`, from a cache file built on first use.

    The file (`isic2018_HxW.npz` in `cache_dir`, default $RWKVSEG_CACHE or ~/.cache/rwkvseg) is
    rebuilt when the source files change; without the source an existing file is used as is.
    """
    path = Path(cache_dir or default_cache_dir()) / isic2018_cache_name(size)
    try:
        folder = dataset_dir("isic2018", root)
    except DataNotFoundError:
        if root is not None or not path.is_file():
            raise
        folder = None
    scan = find_isic_pairs(folder) if folder is not None else None
    fingerprint = None
    if scan is not None:
        files = [f for p in scan.pairs for f in (p.image, p.mask)]
        fingerprint = source_fingerprint(files, base=folder)

    def build() -> SegCache:
        cache = load_isic(scan, size=size, dataset="isic2018")
        cache.meta["source_fingerprint"] = fingerprint
        return cache

    # stored, not compressed: 649 MiB at 256^2 instead of deflate level 1's 291 MiB, written in ~1 s
    # instead of ~7 s and read twice as fast: a fresh machine pays the write before its first step
    return load_or_build(path, build=build, fingerprint=fingerprint, compression="none",
                         rebuild=rebuild, verbose=verbose)


def isic_samples() -> SegCache:
    """The ISIC 2018 pairs shipped in the package (CC BY-NC 4.0; see samples/isic2018/ATTRIBUTION.md)."""
    return load_isic(samples_dir(), dataset="isic2018_samples")
