"""Where the data live: one data root holding `isic2018/` and `acdc/`.

The root is, in order: the `root` argument (DATA_DIR in the book, `--data_dir` on the command
line), the environment variable RWKVSEG_DATA, or the default folder `~/rwkvseg-data` when it
exists. Nothing else is searched. Without a root, quick mode runs on the ISIC 2018 sample pairs
shipped inside the package (`samples_dir()`) and on synthetic cardiac slices; full mode needs the
data and says what to download (`MISSING_DATA`).
"""
from __future__ import annotations

import os
from pathlib import Path

from rwkvseg.data.errors import DataNotFoundError

ENV_VAR = "RWKVSEG_DATA"
DEFAULT_ROOT = Path("~/rwkvseg-data")
FOLDERS = ("isic2018", "acdc")                # the data sets that live in a data root (sets.DATASETS: all four)
LAYOUT = (
    "expected a data root holding\n"
    "  isic2018/images/ISIC_XXXXXXX.jpg  and  isic2018/masks/ISIC_XXXXXXX_segmentation.png\n"
    "  acdc/data/patientXXX_frameYY[_slice_N].h5  and  acdc/{train,val,test}.list\n"
    "  (or the official NIfTI release: acdc/training/patientXXX/patientXXX_frameYY[_gt].nii.gz)\n"
    f"pass it as an argument (DATA_DIR in the book, --data_dir on the command line), set {ENV_VAR}=/path/to/root, "
    f"or put it at {DEFAULT_ROOT}"
)
MISSING_DATA = (
    "full mode trains on the real data, which this package does not ship. Download\n"
    "  ISIC 2018: the 'ISIC 2018 Challenge, Task 1: Lesion Boundary Segmentation' training images and\n"
    "    ground truth (ISIC Challenge data page, challenge.isic-archive.com/data); put the images in\n"
    "    isic2018/images/ and the *_segmentation.png masks in isic2018/masks/\n"
    "  ACDC: the 'Automated Cardiac Diagnosis Challenge' training set (the ACDC challenge page of the\n"
    "    Creatis lab, Universite de Lyon, human-heart-project.creatis.insa-lyon.fr); the slices preprocessed\n"
    "    as HDF5 files by the SSL4MIS project go in acdc/data/ with its train.list, val.list and test.list\n"
    + LAYOUT + "\n"
    "quick mode (MODE='quick', or RWKVSEG_MODE=quick) runs without any of it, on the shipped samples"
)


def find_data_root(root: str | Path | None = None, *, required: bool = True) -> Path | None:
    """The data root: `root`, else $RWKVSEG_DATA, else ~/rwkvseg-data if it exists.

    With required=False a missing root returns None (quick mode then uses the shipped samples);
    a root that is named explicitly (argument or variable) but does not exist is always an error.
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
    default = DEFAULT_ROOT.expanduser()
    if default.is_dir():
        return default
    if required:
        raise DataNotFoundError(default, "no data root given and the default folder does not exist",
                                hint=MISSING_DATA)
    return None


def dataset_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder of one data set: `<root>/<name>`, or `root` itself when it is that folder."""
    if name not in FOLDERS:
        raise ValueError(f"unknown data set {name!r}: expected one of {FOLDERS}")
    base = find_data_root(root)
    if (base / name).is_dir():
        return base / name
    if base.name == name:
        return base
    raise DataNotFoundError(base / name, f"no {name}/ folder in the data root", hint=MISSING_DATA)


def has_dataset(name: str, root: str | Path | None = None) -> bool:
    """True when `dataset_dir(name, root)` would find the folder (never raises)."""
    try:
        dataset_dir(name, root)
    except (DataNotFoundError, ValueError):
        return False
    return True


def samples_dir() -> Path:
    """The ISIC 2018 sample pairs shipped inside the package (CC BY-NC 4.0, see ATTRIBUTION.md)."""
    return Path(__file__).resolve().parent.parent / "samples" / "isic2018"
