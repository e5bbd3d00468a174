"""Where the data live: one data root holding `isic2018/` and `acdc/`.

The root is, in order: the `root` argument, the environment variable RWKVSEG_DATA, or the first
`shared/data` folder found walking up from the current directory and from the package's folder
(a developer checkout sits beside `shared/`). The shipped ISIC 2018 samples live in the package.
"""
from __future__ import annotations

import os
from pathlib import Path

from rwkvseg.data.errors import DataNotFoundError

ENV_VAR = "RWKVSEG_DATA"
DATASETS = ("isic2018", "acdc")
LAYOUT = (
    "expected a data root holding\n"
    "  isic2018/images/ISIC_XXXXXXX.jpg  and  isic2018/masks/ISIC_XXXXXXX_segmentation.png\n"
    "  acdc/data/patientXXX_frameYY[_slice_N].h5  and  acdc/{train,val,test}.list\n"
    f"pass it as an argument (DATA_DIR in the book) or set {ENV_VAR}=/path/to/root"
)


def _looks_like_root(path: Path) -> bool:
    return any((path / name).is_dir() for name in DATASETS)


def _search_upward(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir() and _looks_like_root(candidate):
            return candidate
    return None


def find_data_root(root: str | Path | None = None, *, required: bool = True) -> Path | None:
    """The data root (argument, then $RWKVSEG_DATA, then an upward search for shared/data).

    With required=False a missing root returns None (quick mode then uses the shipped samples);
    a root that is given explicitly but does not exist is always an error.
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(path, "data root does not exist", hint=LAYOUT)
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(path, f"{ENV_VAR} points to a folder that does not exist", hint=LAYOUT)
        return path
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        found = _search_upward(start)
        if found is not None:
            return found
    if required:
        raise DataNotFoundError(Path.cwd(), "no data root found (searched upward for shared/data)",
                                hint=LAYOUT)
    return None


def dataset_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder of one data set: `<root>/<name>`, or `root` itself when it is that folder."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: expected one of {DATASETS}")
    base = find_data_root(root)
    if (base / name).is_dir():
        return base / name
    if base.name == name:
        return base
    raise DataNotFoundError(base / name, f"no {name}/ folder in the data root", hint=LAYOUT)


def samples_dir() -> Path:
    """The ISIC 2018 sample pairs shipped inside the package (CC BY-NC 4.0, see ATTRIBUTION.md)."""
    return Path(__file__).resolve().parent.parent / "samples" / "isic2018"
