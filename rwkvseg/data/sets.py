"""The four data sets a run can train on, and `load_dataset`: train / val / test on the device.

    data = load_dataset("isic2018", split="default", img_size=256, device="cuda")
    data.train_images, data.train_labels     # uint8 (N, C, S, S), (N, S, S) on the device
    data.val, data.test                      # EvalSet: images + masks (ISIC) or volumes (ACDC)

`DATASETS` holds what each data set is (binary or not, channels, classes, normalisation); nothing
else in the package tests a data set's name. Full loads read the data set's cache file (built on
first use, or carried as a file); quick loads (max_train / max_eval set) decode only the items they
use. `isic2018_samples` (the 16 pairs inside the package) and `synthetic_acdc` need no data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.data.acdc import (LABELS, acdc_cache, acdc_cache_name, build_acdc_cache, cache_volumes, resize_label,
                               volume_depths, volume_slice_ids)
from rwkvseg.data.cache import SegCache, load_cache
from rwkvseg.data.isic import isic2018_cache, isic2018_cache_name, isic_samples, load_isic
from rwkvseg.data.normalize import NORMALIZATIONS, Normalization
from rwkvseg.data.paths import dataset_dir
from rwkvseg.data.splits import DEFAULT_SPLIT, random_split, split_ids, split_info, split_sha256
from rwkvseg.data.synthetic import synthetic_acdc, synthetic_acdc_volumes


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: the network's input and output, and how it is scored."""

    name: str
    binary: bool                   # one logit and BCE + Dice (ISIC), or K classes and CE + Dice (ACDC)
    in_chans: int
    num_classes: int               # the network's output channels: 1 for binary
    classes: tuple[str, ...]       # class names, background first
    normalization: str             # key of rwkvseg.data.NORMALIZATIONS
    img_size: int                  # the papers' training size
    needs_data: bool               # False: shipped or generated, runs anywhere
    stands_for: str                # the real data set it represents ("isic2018" or "acdc")

    @property
    def foreground(self) -> tuple[str, ...]:
        """The scored classes (everything but the background)."""
        return self.classes[1:]


ISIC_CLASSES = ("background", "lesion")
DATASETS = {
    "isic2018": DatasetInfo("isic2018", True, 3, 1, ISIC_CLASSES, "isic2018", 256, True, "isic2018"),
    "isic2018_samples": DatasetInfo("isic2018_samples", True, 3, 1, ISIC_CLASSES, "isic2018", 256, False,
                                    "isic2018"),
    "acdc": DatasetInfo("acdc", False, 1, 4, LABELS, "acdc", 224, True, "acdc"),
    "synthetic_acdc": DatasetInfo("synthetic_acdc", False, 1, 4, LABELS, "acdc", 224, False, "acdc"),
}
STAND_INS = {"isic2018": "isic2018_samples", "acdc": "synthetic_acdc"}   # what quick mode uses without data


def dataset_info(name: str) -> DatasetInfo:
    """The DATASETS entry of `name`; a ValueError naming the known ones otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: expected one of {tuple(DATASETS)}")
    return DATASETS[name]


def normalization_of(name: str) -> Normalization:
    """The uint8 -> network input normalisation of a data set (the same in training and evaluation)."""
    return NORMALIZATIONS[dataset_info(name).normalization]


@dataclass
class EvalSet:
    """A split to evaluate. Binary (ISIC): images (N, C, H, W) uint8 and masks (N, H, W) uint8 {0, 1}
    at the training size. Volumes (ACDC): `volumes` is a list of rwkvseg.data.AcdcVolume (image
    (D, 1, S, S) uint8 as trained, native_label (D, H, W) uint8 that the metrics compare against).
    `ids` names the binary images in order (volumes carry their own names)."""

    name: str
    images: Tensor | None = None
    masks: Tensor | None = None
    volumes: list | None = None
    ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.volumes) if self.volumes is not None else int(self.images.shape[0])


@dataclass
class SegData:
    """A loaded data set: training tensors (uint8, on the device), the two evaluation splits, and
    what every result records about them."""

    info: DatasetInfo
    train_images: Tensor          # (N, C, S, S) uint8, already at img_size
    train_labels: Tensor          # (N, S, S) uint8 labels (binary: {0, 1})
    val: EvalSet | None           # None when the run selects its weights by the last epoch
    test: EvalSet
    split_info: dict              # name, parts with their sizes and list sha256

    @property
    def normalization(self) -> Normalization:
        return NORMALIZATIONS[self.info.normalization]


def cache_in(data_dir: str | Path | None, filename: str) -> Path | None:
    """`data_dir/filename` when that prebuilt cache file is there (a carried cache), else None."""
    if data_dir is None:
        return None
    path = Path(data_dir) / filename
    return path if path.exists() else None            # a named pipe is refused by the reader, by name


def load_dataset(name: str, *, split: str = "default", img_size: int | None = None,
                 data_dir: str | Path | None = None, with_val: bool = True, max_train: int | None = None,
                 max_eval: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> SegData:
    """Load data set `name` once: the committed split, the uint8 cache, on `device`.

    `data_dir` may be the data root, a folder holding `isic2018/` or `acdc/`, that folder itself,
    or a folder holding the cache file `isic2018_SxS.npz` / `acdc_S.npz`. `with_val`: keep a
    validation part for model selection (ISIC: train-sub / val of the split; ACDC: its val
    patients), else train on the whole training part. `max_train` / `max_eval`: use only the first
    N training items / evaluation images or volumes (quick runs: decoded on demand, no cache file).
    `seed` draws the split of the shipped samples and the synthetic slices.
    """
    info = dataset_info(name)
    size = img_size or info.img_size
    device = torch.device(device)
    loaders = {"isic2018": _isic2018, "isic2018_samples": _isic_samples, "acdc": _acdc,
               "synthetic_acdc": _synthetic_acdc}
    return loaders[name](info, split=split, size=size, data_dir=data_dir, with_val=with_val,
                         max_train=max_train, max_eval=max_eval, seed=seed, device=device)


def _first(ids: list[str], n: int | None) -> list[str]:
    return list(ids[:n]) if n else list(ids)


def _split_record(dataset: str, split: str, parts: dict[str, str]) -> dict:
    """{"name", "dataset", "split", one split_info per part, "train_hash", "test_hash"}."""
    rec = {"name": f"{dataset}/{split}", "dataset": dataset, "split": split}
    for role, part in parts.items():
        rec[role] = split_info(dataset, split, part)
    rec["train_hash"], rec["test_hash"] = rec["train"]["sha256"], rec["test"]["sha256"]
    return rec


def _on(device: torch.device, array) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _binary(info, device, train: SegCache, val: SegCache | None, test: SegCache, rec: dict) -> SegData:
    def evalset(part, cache):
        return EvalSet(part, images=_on(device, cache.images), masks=_on(device, cache.masks), ids=list(cache.ids))

    return SegData(info, _on(device, train.images), _on(device, train.masks),
                   evalset("val", val) if val is not None else None, evalset("test", test), rec)


def _isic2018(info, *, split, size, data_dir, with_val, max_train, max_eval, seed, device) -> SegData:
    split = DEFAULT_SPLIT["isic2018"] if split == "default" else split
    parts = {"train": "train-sub", "val": "val", "test": "test"} if with_val else {"train": "train", "test": "test"}
    ids = {role: split_ids("isic2018", split, part) for role, part in parts.items()}
    ids["train"] = _first(ids["train"], max_train)
    for role in ("val", "test"):
        if role in ids:
            ids[role] = _first(ids[role], max_eval)
    carried = cache_in(data_dir, isic2018_cache_name((size, size)))
    if carried is not None:
        cache = load_cache(carried)
    elif max_train or max_eval:                           # decode only what is used: seconds, no file
        cache = load_isic(dataset_dir("isic2018", data_dir), ids=sorted({i for v in ids.values() for i in v}),
                          size=(size, size), dataset="isic2018")
    else:
        cache = isic2018_cache(data_dir, size=(size, size))
    rec = _split_record("isic2018", split, parts)
    rec.update(cache_sha256=cache.meta.get("sha256"), n_used={k: len(v) for k, v in ids.items()})
    return _binary(info, device, cache.take(ids["train"]), cache.take(ids["val"]) if "val" in ids else None,
                   cache.take(ids["test"]), rec)


def _isic_samples(info, *, split, size, data_dir, with_val, max_train, max_eval, seed, device) -> SegData:
    """The 16 shipped ISIC 2018 pairs: a seeded 10 / 3 / 3 split, for demos and quick mode only."""
    cache = isic_samples()
    if cache.images.shape[-1] != size:
        x = F.interpolate(torch.from_numpy(cache.images).float(), size=size, mode="bilinear",
                          antialias=True).round().clamp(0, 255).byte().numpy()
        y = resize_label(cache.masks, (size, size)).numpy()
        cache = SegCache(images=x, masks=y, ids=cache.ids, meta=cache.meta)
    train, val, test = random_split(cache.ids, (0.625, 0.1875, 0.1875), seed=seed, salt="samples")
    if not with_val:
        train, val = sorted(train + val), None
    rec = {"name": f"isic2018_samples/seed{seed}", "dataset": "isic2018_samples", "split": f"seed{seed}"}
    for role, part in (("train", train), ("val", val), ("test", test)):
        if part is not None:
            rec[role] = {"n": len(part), "sha256": split_sha256(part)}
    rec["train_hash"], rec["test_hash"] = rec["train"]["sha256"], rec["test"]["sha256"]
    val = _first(val, max_eval) if val else None
    return _binary(info, device, cache.take(_first(train, max_train)), cache.take(val) if val else None,
                   cache.take(_first(test, max_eval)), rec)


def _volumes(info, device, train: SegCache, val: list | None, test: list, rec: dict) -> SegData:
    return SegData(info, _on(device, train.images), _on(device, train.masks),
                   EvalSet("val", volumes=val) if val is not None else None, EvalSet("test", volumes=test), rec)


def _acdc(info, *, split, size, data_dir, with_val, max_train, max_eval, seed, device) -> SegData:
    split = DEFAULT_SPLIT["acdc"] if split == "default" else split
    parts = {"train": "train", "val": "val", "test": "test"}
    names = {role: split_ids("acdc", split, part) for role, part in parts.items()}
    names["val"] = _first(names["val"], max_eval)
    names["test"] = _first(names["test"], max_eval)
    carried = cache_in(data_dir, acdc_cache_name(size))
    if carried is not None:
        cache = load_cache(carried)
    elif max_train or max_eval:                           # only the volumes used: seconds, no file
        folder = dataset_dir("acdc", data_dir)
        depths = volume_depths(folder)
        train, n = [], 0
        for name in names["train"]:
            if max_train and n >= max_train:
                break
            train.append(name)
            n += depths[name]
        names["train"] = train
        wanted = train + [v for v in names["val"] + names["test"] if v not in train]
        cache = build_acdc_cache(folder, volumes=wanted, size=size)
    else:
        cache = acdc_cache(data_dir, size=size)
    train_ids = _first(volume_slice_ids(cache, names["train"]), max_train)
    rec = _split_record("acdc", split, parts)
    rec.update(cache_sha256=cache.meta.get("sha256"), n_train_slices=len(train_ids),
               n_used={k: len(v) for k, v in names.items()})
    val = cache_volumes(cache, names["val"]) if with_val else None
    return _volumes(info, device, cache.take(train_ids), val, cache_volumes(cache, names["test"]), rec)


def _synthetic_acdc(info, *, split, size, data_dir, with_val, max_train, max_eval, seed, device) -> SegData:
    """Synthetic cardiac-like slices and volumes (rwkvseg.data.synthetic): quick mode without ACDC."""
    train = synthetic_acdc(n_slices=max_train or 64, size=size, seed=seed)
    n_eval = max_eval or 4
    val = synthetic_acdc_volumes(n_eval, size=size, seed=seed + 1) if with_val else None
    test = synthetic_acdc_volumes(n_eval, size=size, seed=seed + 2)
    rec = {"name": f"synthetic_acdc/seed{seed}", "dataset": "synthetic_acdc", "split": f"seed{seed}",
           "train": {"n": len(train)}, "test": {"n": len(test)}, "train_hash": None, "test_hash": None,
           "note": "generated from the seed: train seed, val seed + 1, test seed + 2"}
    return _volumes(info, device, train, val, test, rec)
