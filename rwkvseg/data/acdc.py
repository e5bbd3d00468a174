"""ACDC cine-MRI (labels 0 background, 1 RV, 2 Myo, 3 LV): files, checks, and the 224x224 cache.

Two layouts are read, by the API and by `load_dataset` / `train` / `evaluate` / `cache` alike:

- SSL4MIS-style HDF5: `<acdc>/data/patientXXX_frameYY_slice_N.h5` (2-D training slices,
  N = 1..D) and `patientXXX_frameYY.h5` (3-D volumes), datasets `image` (float32,
  min-max normalised to [0, 1] per volume) and `label` (uint8). A volume is read from its file,
  or rebuilt by stacking its slice files 1..D in order.
- The official NIfTI release, `<acdc>/[training/]patientXXX/patientXXX_frameYY.nii.gz` +
  `..._gt.nii.gz` (nibabel, imported only then), used when the folder holds no .h5 file: arrays
  are transposed to (D, H, W) and min-max normalised per volume, as the SSL4MIS preprocessing did,
  and each patient's two annotated frames are named frame01 (ED) and frame02 (ES) in the order of
  their frame numbers, as the SSL4MIS files (and so the committed split lists) name them.
Every file is read through rwkvseg.data.files (regular files only, within a time bound), and
every problem is a DataError naming the file.

The cache holds every slice of every volume resized to 224 x 224 as training uses it: images
with torch's bicubic kernel (align_corners=False) clamped to [0, 1] and stored as uint8
(round(255 x)), labels with nearest neighbour ("nearest-exact": pixel centres aligned like the
bicubic kernel's). [choose] the same image interpolation in training and evaluation (the
authors' code resizes with nearest neighbour in training, a cubic spline at test): bicubic, which
differs slightly from their order-3 spline (scipy). It also keeps each volume's native-size
label, which the metrics compare against.
"""
from __future__ import annotations

import gzip
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rwkvseg.data.cache import SegCache, default_cache_dir, load_or_build, source_fingerprint
from rwkvseg.data.errors import DataError, DataNotFoundError
from rwkvseg.data.files import read_bytes, read_with
from rwkvseg.data.paths import dataset_dir

LABELS = ("background", "RV", "Myo", "LV")
IMG_SIZE = 224                    # RWKV-UNet (TransUNet) training and evaluation size
FILE_RE = re.compile(r"^(patient\d{3}_frame\d{2})(?:_slice_(\d+))?\.h5$")
NIFTI_RE = re.compile(r"^(patient\d{3}_frame\d{2})\.nii(?:\.gz)?$")
H5_LAYOUT = ("expected <acdc>/data/patientXXX_frameYY.h5 (volumes) or patientXXX_frameYY_slice_N.h5 "
             "(slices), each with datasets 'image' (float32 in [0, 1]) and 'label' (uint8 in {0, 1, 2, 3})")
NIFTI_LAYOUT = (", or the official NIfTI release: <acdc>/[training/]patientXXX/patientXXX_frameYY.nii.gz with "
                "patientXXX_frameYY_gt.nii.gz")


def check_image_label(image: np.ndarray, label: np.ndarray, where: str | Path, *, unit_range: bool = True) -> None:
    """Raise a DataError naming `where` unless image and label form a valid ACDC slice or volume."""
    if image.size == 0:
        raise DataError(where, f"empty volume (image shape {image.shape})", hint="re-export this case")
    if image.shape != label.shape:
        raise DataError(where, f"image shape {image.shape} differs from label shape {label.shape}")
    bad = int((~np.isfinite(image)).sum())
    if bad:
        raise DataError(where, f"image contains {bad} NaN or infinite value(s)", hint="re-export this case")
    lo, hi = float(image.min()), float(image.max())
    if lo == hi:
        raise DataError(where, f"image is constant ({lo}): no signal", hint="re-export this case")
    if unit_range and (lo < -1e-6 or hi > 1 + 1e-6):
        raise DataError(where, f"image values lie in [{lo:.4g}, {hi:.4g}], expected [0, 1] (min-max normalised)")
    if not np.issubdtype(label.dtype, np.integer):
        raise DataError(where, f"label dtype {label.dtype}, expected an integer type (uint8)")
    outside = sorted(set(np.unique(label).tolist()) - set(range(len(LABELS))))
    if outside:
        raise DataError(where, f"label values {outside} outside {{0, 1, 2, 3}} (background, RV, Myo, LV)")


H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)    # what h5py raises for a damaged file
H5_DAMAGED = "the file is corrupt or truncated: download or export it again"


def check_datasets(path: Path, keys: list[str]) -> None:
    """A DataError naming `path` unless its HDF5 datasets `keys` include 'image' and 'label'."""
    missing = {"image", "label"} - set(keys)
    if missing:
        raise DataError(path, f"no dataset {sorted(missing)} (found {keys})", hint=H5_LAYOUT)


def read_h5(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 and label uint8 of one SSL4MIS file: (H, W) for a slice, (D, H, W) for a volume.

    Read by rwkvseg.data.files.read_bytes (a regular, non-empty file, within the time bound), then
    decoded from memory: every problem is a DataError naming the file."""
    import h5py

    path = Path(path)
    data = read_bytes(path, "HDF5 file")
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            keys = sorted(f.keys())
            if {"image", "label"} <= set(keys):
                image = np.asarray(f["image"][()], dtype=np.float32)
                label = np.asarray(f["label"][()])
    except H5_ERRORS as e:
        raise DataError(path, f"not a readable HDF5 file ({e})", hint=H5_DAMAGED) from None
    check_datasets(path, keys)
    check_image_label(image, label, path)
    return image, label.astype(np.uint8)


def h5_image_shape(path: str | Path) -> tuple[int, ...]:
    """The shape of a file's `image` dataset, from its header (no pixel read); the same checks and
    errors as read_h5."""
    import h5py

    path = Path(path)

    def header():
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            return (tuple(f["image"].shape) if "image" in keys else None), keys

    shape, keys = read_with(header, path, "HDF5 file", errors=H5_ERRORS, problem="not a readable HDF5 file",
                            hint=H5_DAMAGED, empty_hint="write or download it again")
    check_datasets(path, keys)
    return shape


def h5_folder(folder: str | Path) -> Path:
    """The folder holding the .h5 files: `<folder>/data` when present (the SSL4MIS layout), else `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(folder, "folder does not exist", hint=H5_LAYOUT)
    return folder / "data" if (folder / "data").is_dir() else folder


def is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def list_volumes(folder: str | Path) -> dict[str, list[Path]]:
    """{volume name: its files}: one HDF5 volume file, or its HDF5 slice files ordered 1..D; where
    the folder holds no .h5 file, the NIfTI frame and its ground truth (nifti_volumes)."""
    root, folder = Path(folder), h5_folder(folder)
    volumes: dict[str, dict[int, Path]] = {}
    for path in folder.iterdir():
        m = FILE_RE.match(path.name)
        if m:
            volumes.setdefault(m.group(1), {})[int(m.group(2) or 0)] = path
    if not volumes:
        nifti = nifti_volumes(root)
        if nifti:
            return nifti
        raise DataNotFoundError(folder, "no ACDC .h5 file here (nor patientXXX/ folders of NIfTI frames)",
                                hint=H5_LAYOUT + NIFTI_LAYOUT)
    out = {}
    for name, files in sorted(volumes.items()):
        if 0 in files:                                        # the whole-volume file wins
            out[name] = [files[0]]
            continue
        depth = max(files)
        gaps = sorted(set(range(1, depth + 1)) - set(files))
        if gaps:
            raise DataError(folder / f"{name}_slice_{gaps[0]}.h5",
                            f"missing slice {gaps[0]} of volume {name} (slices 1..{depth} expected)")
        out[name] = [files[k] for k in range(1, depth + 1)]
    return out


def volume_depths(folder: str | Path) -> dict[str, int]:
    """{volume name: number of slices D}, from file names and HDF5 / NIfTI headers (no pixel is read)."""
    depths = {}
    for name, paths in list_volumes(folder).items():
        if is_nifti(paths[0]):
            depths[name] = nifti_shape(paths[0])[0]
        elif len(paths) > 1 or FILE_RE.match(paths[0].name).group(2):
            depths[name] = len(paths)
        else:
            shape = h5_image_shape(paths[0])
            depths[name] = int(shape[0]) if len(shape) == 3 else 1
    return depths


def read_volume(folder: str | Path, name: str, *, files: dict[str, list[Path]] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Image (D, H, W) float32 and label (D, H, W) uint8 of one volume, from its file or its slices.

    `files` is list_volumes(folder), passed when reading many volumes (the folder is listed once)."""
    paths = (files if files is not None else list_volumes(folder)).get(name)
    if paths is None:
        raise DataNotFoundError(h5_folder(folder) / f"{name}.h5", "no such volume (nor its slice files)",
                                hint=H5_LAYOUT)
    if is_nifti(paths[0]):
        image, label, _ = read_nifti_frame(*paths)
        return image, label
    pairs = [read_h5(p) for p in paths]
    if len(paths) == 1 and pairs[0][0].ndim == 3:
        return pairs[0]
    shapes = {image.shape for image, _ in pairs}
    if len(shapes) > 1 or pairs[0][0].ndim != 2:
        raise DataError(paths[0].parent / f"{name}_slice_*.h5",
                        f"slices of one volume differ in shape: {sorted(shapes)}")
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def resize_image(image: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(D, H, W) float in [0, 1] -> (D, S, S) float32: bicubic, align_corners=False, clamped to [0, 1]."""
    x = torch.as_tensor(image, dtype=torch.float32)[:, None]                     # (D, 1, H, W)
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return x[:, 0].clamp(0.0, 1.0)                                             # bicubic overshoots


def resize_label(label: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(D, H, W) labels -> (D, S, S) uint8 by nearest neighbour (centre-aligned "nearest-exact").

    Also the way back: a (D, 224, 224) prediction -> (D, H, W) for the metrics."""
    y = torch.as_tensor(label)[:, None].float()                                # (D, 1, H, W)
    return F.interpolate(y, size=size, mode="nearest-exact")[:, 0].to(torch.uint8)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 round(255 x): at most 0.5 / 255 = 0.00196 away from the input."""
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def build_acdc_cache(folder: str | Path, *, volumes: Sequence[str] | None = None, size: int = IMG_SIZE) -> SegCache:
    """Every slice of `volumes` (default: all) at size x size: images (N, 1, S, S) uint8, masks
    (N, S, S) uint8, ids "patientXXX_frameYY_slice_K" (K = 1..D), native labels in extras.

    meta["quantization"] measures the accuracy effect: the largest |uint8 / 255 - float| with and
    without the clamp of the bicubic overshoot, and the share of pixels that were clamped.
    """
    files = list_volumes(folder)
    names = sorted(files) if volumes is None else list(volumes)
    images, masks, ids, extras, shapes = [], [], [], {}, {}
    err_quant = err_total = 0.0
    n_clamped = n_pixels = 0
    for name in names:
        image, label = read_volume(folder, name, files=files)                  # (D, H, W)
        x = torch.from_numpy(image)[:, None]
        raw = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
        clamped = raw.clamp(0.0, 1.0)
        q = to_uint8(clamped)                                                  # (D, S, S)
        err_quant = max(err_quant, float((q.float() / 255 - clamped).abs().max()))
        err_total = max(err_total, float((q.float() / 255 - raw).abs().max()))
        n_clamped += int((raw != clamped).sum())
        n_pixels += raw.numel()
        images.append(q[:, None].numpy())
        masks.append(resize_label(label, (size, size)).numpy())
        ids += [f"{name}_slice_{k}" for k in range(1, image.shape[0] + 1)]
        extras[f"label.{name}"] = label
        shapes[name] = list(image.shape)
    meta = {
        "dataset": "acdc", "num_classes": 4, "classes": list(LABELS), "size": [size, size],
        "image": f"bicubic to {size}x{size} (torch, align_corners=False), clamped to [0, 1], uint8 round(255 x)",
        "label": "nearest-exact", "volumes": shapes,
        "quantization": {"max_abs_error_uint8": err_quant, "max_abs_error_with_clamp": err_total,
                         "clamped_fraction": n_clamped / max(n_pixels, 1)},
    }
    return SegCache(images=np.concatenate(images), masks=np.concatenate(masks), ids=tuple(ids), meta=meta,
                    extras=extras)


def acdc_cache_name(size: int = IMG_SIZE) -> str:
    """File name of the ACDC cache at size x size, e.g. `acdc_224.npz`."""
    return f"acdc_{size}.npz"


def acdc_cache(root: str | Path | None = None, *, cache_dir: str | Path | None = None, size: int = IMG_SIZE,
               rebuild: bool = False, verbose: bool = True) -> SegCache:
    """All ACDC volumes of the data root at size x size, from a cache file built on first use.

    The file (`acdc_S.npz`, bzip2; ~49 MiB for all 100 patients at 224) is rebuilt when the source
    files change; without the source, an existing file is used as is (e.g. on a remote GPU).
    """
    path = Path(cache_dir or default_cache_dir()) / acdc_cache_name(size)
    try:
        folder = dataset_dir("acdc", root)
    except DataNotFoundError:
        if root is not None or not path.is_file():
            raise
        folder = None
    fingerprint = None
    if folder is not None:
        files = [p for group in list_volumes(folder).values() for p in group]
        fingerprint = source_fingerprint(files, base=Path(folder) if is_nifti(files[0]) else h5_folder(folder))

    def build() -> SegCache:
        cache = build_acdc_cache(folder, size=size)
        cache.meta["source_fingerprint"] = fingerprint
        return cache

    return load_or_build(path, build=build, fingerprint=fingerprint, compression="bzip2", rebuild=rebuild,
                         verbose=verbose)


@dataclass(frozen=True)
class AcdcVolume:
    """One volume for evaluation: the network input as trained, and the labels to score against."""

    name: str
    image: np.ndarray             # (D, 1, S, S) uint8, as in training
    label: np.ndarray             # (D, S, S) uint8 at the training size
    native_label: np.ndarray      # (D, H, W) uint8 at the stored size: what the metrics compare to


def volume_slice_ids(cache: SegCache, names: Sequence[str]) -> list[str]:
    """The cache rows ("<volume>_slice_K", K = 1..D) of the volumes `names`, e.g. a training split."""
    volumes = cache.meta["volumes"]
    missing = [n for n in names if n not in volumes]
    if missing:
        raise DataError(f"the ACDC cache (sha256 {cache.meta.get('sha256', '?')[:12]})",
                        f"{len(missing)} volume(s) of the split are not in it, e.g. {missing[:3]}",
                        hint="was it built from the same data? rebuild it (rwkvseg cache --rebuild)")
    return [f"{n}_slice_{k}" for n in names for k in range(1, volumes[n][0] + 1)]


def cache_volumes(cache: SegCache, names: Sequence[str]) -> list[AcdcVolume]:
    """The volumes `names` of an ACDC cache, each with its native-size label."""
    out = []
    for name in names:
        rows = cache.index(volume_slice_ids(cache, [name]))
        out.append(AcdcVolume(name=name, image=cache.images[rows], label=cache.masks[rows],
                              native_label=cache.extras[f"label.{name}"]))
    return out


def patient_dirs(folder: Path) -> list[Path]:
    """The patientXXX/ folders under `folder`, directly or one level down (e.g. training/)."""
    return [p for pattern in ("patient[0-9][0-9][0-9]", "*/patient[0-9][0-9][0-9]")
            for p in sorted(folder.glob(pattern)) if p.is_dir()]


def find_acdc_nifti(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, image, ground truth) of every annotated frame under `folder` (patientXXX/ folders,
    directly or one level down, e.g. training/). The 4-D cine files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(folder, "folder does not exist",
                                hint="expected patientXXX/patientXXX_frameYY.nii.gz with _gt.nii.gz")
    frames, seen = [], {}
    for patient in patient_dirs(folder):
        for path in sorted(patient.iterdir()):
            m = NIFTI_RE.match(path.name)
            if not m:
                continue
            gt = path.with_name(path.name.replace(m.group(1), m.group(1) + "_gt"))
            if not gt.exists() and not gt.is_symlink():
                raise DataError(path, f"frame has no ground truth (expected {gt.name})")
            if m.group(1) in seen:
                raise DataError(path, f"two files for the frame {m.group(1)}: {seen[m.group(1)]} and {path}",
                                hint="keep one copy of each patient folder")
            seen[m.group(1)] = path
            frames.append((m.group(1), path, gt))
    if not frames:
        raise DataNotFoundError(folder, "no patientXXX/patientXXX_frameYY.nii.gz found",
                                hint="point to the ACDC 'training' folder (or its parent)")
    return frames


def nifti_volumes(folder: str | Path) -> dict[str, list[Path]]:
    """{"patientXXX_frame01": [image, ground truth], "..._frame02": ...} of the official release
    under `folder` ({} when it holds no patientXXX/ folder): each patient's annotated frames in the
    order of their frame numbers, named frame01 (ED) and frame02 (ES) as the SSL4MIS files are."""
    folder = Path(folder)
    if not patient_dirs(folder):
        return {}
    by_patient: dict[str, list[tuple[str, Path, Path]]] = {}
    for frame in find_acdc_nifti(folder):
        by_patient.setdefault(frame[0].split("_")[0], []).append(frame)
    out = {}
    for patient, frames in sorted(by_patient.items()):
        for k, (_, image, gt) in enumerate(sorted(frames), start=1):
            out[f"{patient}_frame{k:02d}"] = [image, gt]
    return out


def unreadable_nifti(path: str | Path, error: Exception) -> DataError:
    return DataError(path, f"not a readable NIfTI file ({type(error).__name__}: {error})")


def nifti_shape(path: str | Path) -> tuple[int, int, int]:
    """(D, H, W) of a NIfTI frame, from its header (the checks of rwkvseg.data.files)."""
    import nibabel

    path = Path(path)

    def header():
        try:
            return nibabel.load(str(path)).shape
        except Exception as e:                  # nibabel raises many types for a bad header
            raise unreadable_nifti(path, e) from None

    shape = read_with(header, path, "NIfTI file", empty_hint="download it again")
    if len(shape) != 3:
        raise DataError(path, f"a frame has 3 axes (x, y, z), this file has shape {shape}")
    return shape[2], shape[1], shape[0]


def read_nifti_frame(image_path: str | Path, gt_path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Image (D, H, W) float32 min-max normalised to [0, 1], label (D, H, W) uint8, and the voxel
    spacing (dz, dy, dx) in mm. NIfTI stores (x, y, z): transposed to (z, y, x) like SimpleITK."""
    try:
        import nibabel
    except ImportError:
        raise ImportError("reading NIfTI needs nibabel: pip install nibabel (or rwkvseg[nifti])") from None
    arrays, zooms = [], None
    for path in (image_path, gt_path):
        data = read_bytes(path, "NIfTI file")
        try:
            img = nibabel.Nifti1Image.from_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
            array = np.asarray(img.dataobj)
        except Exception as e:                  # gzip and nibabel raise many types for a bad file
            raise unreadable_nifti(path, e) from None
        if array.ndim != 3:
            raise DataError(path, f"a frame has 3 axes (x, y, z), this file has shape {array.shape}")
        arrays.append(array.transpose(2, 1, 0))
        zooms = img.header.get_zooms()[:3] if zooms is None else zooms
    image, label = arrays[0].astype(np.float32), arrays[1]
    if image.size and np.isfinite(image).all() and image.max() > image.min():
        image = (image - image.min()) / (image.max() - image.min())
    if np.issubdtype(label.dtype, np.floating) and np.array_equal(label, np.round(label)):
        label = label.astype(np.int16)          # labels are often stored as float in NIfTI
    check_image_label(image, label, f"{image_path} (ground truth {Path(gt_path).name})")
    return image, label.astype(np.uint8), tuple(float(z) for z in zooms[::-1])
