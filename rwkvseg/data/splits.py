"""Train / validation / test splits: committed ID lists, their hashes, and how they were made.

    split_ids("isic2018", "7-3_seed0", "train")    1816 ISIC ids   (MS-RWKV-UNet / VM-UNet 7:3, the default)
    split_ids("isic2018", "7-3_seed0", "test")     778
    split_ids("isic2018", "7-3_seed0", "train-sub") / "val"   1634 / 182: 10 % of train held out
    split_ids("isic2018", "8-1-1_seed1", "test")   RWKV-UNet-style 8:1:1 option, any seed
    split_ids("acdc", "ssl4mis", "train")          140 volume names (70 patients; the default)
    split_ids("acdc", "authors", "test")           patient001-020 (RWKV-UNet code split)
    split_info(...)                                 {"dataset", "split", "part", "n", "sha256"}

The lists live in rwkvseg/splits/ as text files, one id per line; a list's sha256 is that of its
text (one id and a newline per line), so `sha256sum` of a file gives the same value. Every result
records it.

The random splits use no random-number library: ids are ordered by sha256(f"{salt}{seed}:{id}"),
an order no numpy or torch version can change, and cut by the rounded fractions.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from rwkvseg.data.errors import DataError, DataNotFoundError
from rwkvseg.data.files import read_text

SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"
DEFAULT_SPLIT = {"isic2018": "7-3_seed0", "acdc": "ssl4mis"}
ISIC_FILE_PARTS = ("train", "test", "train-sub", "val")
ACDC_PARTS = ("train", "val", "test")


def split_sha256(ids: Sequence[str]) -> str:
    """sha256 of the list's text: each id followed by a newline (equals `sha256sum` of its file)."""
    return hashlib.sha256("".join(f"{i}\n" for i in ids).encode()).hexdigest()


def read_split_file(path: str | Path) -> list[str]:
    """The ids of one list file, checked: no blank line, no duplicate."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(path, "split list does not exist",
                                hint=f"the committed lists are in {SPLITS_DIR}")
    ids = read_text(path, "split list").splitlines()
    if any(not i.strip() or i != i.strip() for i in ids):
        raise DataError(path, "blank line or stray spaces in a split list (one id per line expected)")
    if len(set(ids)) != len(ids):
        raise DataError(path, "duplicate id in a split list")
    return ids


def seeded_order(ids: Sequence[str], *, seed: int, salt: str = "") -> list[str]:
    """`ids` sorted by sha256(f"{salt}{seed}:{id}"): a seeded shuffle independent of library versions."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{salt}{seed}:{i}".encode()).hexdigest())


def random_split(ids: Sequence[str], fractions: Sequence[float], *, seed: int, salt: str = "") -> list[list[str]]:
    """Cut the seeded order of `ids` into parts of round(fraction x N) ids (the last takes the
    rest); each part is returned sorted."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    order = seeded_order(sorted(set(ids)), seed=seed, salt=salt)
    parts, start = [], 0
    for k, fraction in enumerate(fractions):
        stop = len(order) if k == len(fractions) - 1 else start + round(fraction * len(order))
        parts.append(sorted(order[start:stop]))
        start = stop
    return parts


def make_isic2018_7_3(ids: Sequence[str], *, seed: int = 0) -> dict[str, list[str]]:
    """The procedure behind the committed lists: 7:3 train/test (MS-RWKV / VM-UNet protocol), then
    10 % of train held out as validation [choose] (model selection never on test)."""
    train, test = random_split(ids, (0.7, 0.3), seed=seed)
    train_sub, val = random_split(train, (0.9, 0.1), seed=seed, salt="val")
    return {"train": train, "test": test, "train-sub": train_sub, "val": val}


def make_isic2018_8_1_1(ids: Sequence[str], *, seed: int) -> dict[str, list[str]]:
    """RWKV-UNet Table 5 style (from U-KAN's code): 8:1:1 train/val/test; report over 3 seeds."""
    train, val, test = random_split(ids, (0.8, 0.1, 0.1), seed=seed, salt="8-1-1")
    return {"train": train, "val": val, "test": test}


def acdc_authors_split() -> dict[str, list[str]]:
    """RWKV-UNet's code split of the 100 ACDC patients: test 001-020, val 021-030, train 031-100
    (ED and ES frames: 140 / 20 / 40 volumes). Not the SSL4MIS split: results differ."""
    def volumes(first: int, last: int) -> list[str]:
        return [f"patient{p:03d}_frame{f:02d}" for p in range(first, last + 1) for f in (1, 2)]

    return {"train": volumes(31, 100), "val": volumes(21, 30), "test": volumes(1, 20)}


def split_ids(dataset: str, split: str | None = None, part: str = "train") -> list[str]:
    """The ids of one part of a named split (see the module docstring for the names)."""
    split = split or DEFAULT_SPLIT.get(dataset)
    if dataset == "isic2018":
        if split.startswith("8-1-1_seed"):
            all_ids = split_ids("isic2018", "7-3_seed0", "train") + split_ids("isic2018", "7-3_seed0", "test")
            parts = make_isic2018_8_1_1(all_ids, seed=int(split[len("8-1-1_seed"):]))
        elif part in ISIC_FILE_PARTS:
            return read_split_file(SPLITS_DIR / f"isic2018_{split}_{part}.txt")
        else:
            raise ValueError(f"ISIC 2018 parts are {ISIC_FILE_PARTS}, got {part!r}")
    elif dataset == "acdc":
        if split == "authors":
            parts = acdc_authors_split()
        elif part in ACDC_PARTS:
            return read_split_file(SPLITS_DIR / f"acdc_{split}_{part}.list")
        else:
            raise ValueError(f"ACDC parts are {ACDC_PARTS}, got {part!r}")
    else:
        raise ValueError(f"unknown data set {dataset!r}: 'isic2018' or 'acdc'")
    if part not in parts:
        raise ValueError(f"split {split!r} has parts {tuple(parts)}, got {part!r}")
    return parts[part]


def split_info(dataset: str, split: str | None = None, part: str = "train") -> dict:
    """What a result records about the data it used: names, size and the list's sha256."""
    split = split or DEFAULT_SPLIT.get(dataset)
    ids = split_ids(dataset, split, part)
    return {"dataset": dataset, "split": split, "part": part, "n": len(ids), "sha256": split_sha256(ids)}
