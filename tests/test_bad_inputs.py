"""The bad-input corpus: every corrupt, truncated, mismatched or odd input a hostile but fair user
could hand the package, run through every entry point that reads it: the command line (train,
evaluate, predict, cache, record) and the Python API (load_dataset, load_isic, read_volume,
load_cache, load_checkpoint, load_model, from_pretrained, predict_images, TrainConfig.from_yaml).

Each run must end in a clear error that names the file (or the argument) and the problem, printed
by the command line as one line without a traceback, or in correct handling: a 16-bit image scaled
to 8 bits and said so, a huge image decoded within the memory bound, outputs that never overwrite
each other, a bad file in a batch reported and skipped. `judge` sorts an outcome into

    clear     the error names the file and the problem (or the input was handled correctly)
    partial   the file is named, but in a traceback or with the wrong problem
    obscure   an error that does not name the file
    silent    no error, and the result is wrong (or a bad input was accepted without a word)
    hang      the run did not finish (a test fails after HANG_S seconds instead of waiting)

Everything is generated: 32x32 images, 2-slice volumes, the tiny network `rwkv_unet_test`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from rwkvseg.cli import main
from rwkvseg.data import (NORMALIZATIONS, dataset_dir, isic2018_cache_name, load_cache, load_dataset, load_isic,
                          read_volume, save_cache)
from rwkvseg.data import files as data_files
from rwkvseg.data.acdc import list_volumes
from rwkvseg.data.splits import split_ids
from rwkvseg.engine import TrainConfig, load_checkpoint, load_model
from rwkvseg.engine.checkpoint import save_checkpoint
from rwkvseg.hub import from_pretrained, save_pretrained
from rwkvseg.models import create_model
from rwkvseg.predict import predict_images

IMG = 32                                                   # every generated image's size, and the training size
BOUND = 256 * 256                                          # the decode bound the tests set (bytes): a 256 x 256
                                                           # RGB JPEG is decoded at 1/2 scale, its grey mask whole
ISIC_IDS = {"train": split_ids("isic2018", None, "train-sub")[:2], "val": split_ids("isic2018", None, "val")[:1],
            "test": split_ids("isic2018", None, "test")[:1]}
BAD_ISIC = ISIC_IDS["test"][0]                             # the pair every ISIC case spoils (read by every entry)
ACDC_VOLS = {"train": split_ids("acdc", None, "train")[0], "val": split_ids("acdc", None, "val")[0],
             "test": split_ids("acdc", None, "test")[0]}
BAD_ACDC = ACDC_VOLS["test"]
SPECIAL = r"named pipe|not a regular file|character device|directory"
HANG_S = 20                                                # a run longer than this is a hang


# ---------------------------------------------------------------------------------------------
# Good files: a tiny ISIC root, a tiny ACDC root, a tiny network as a checkpoint and as a directory
# ---------------------------------------------------------------------------------------------

def _rgb(seed: int, size: int = IMG) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([120 + 80 * np.sin(6 * xx + seed), 100 + 60 * yy, 140 - 50 * xx * yy], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _mask(seed: int, size: int = IMG) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = size / 2 + (seed % 3) - 1
    return (((yy - c) ** 2 + (xx - c) ** 2) < (size / 4) ** 2).astype(np.uint8) * 255


def _isic_root(root: Path) -> Path:
    images, masks = root / "isic2018" / "images", root / "isic2018" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for k, i in enumerate(i for part in ISIC_IDS.values() for i in part):
        Image.fromarray(_rgb(k)).save(images / f"{i}.jpg", quality=95)
        Image.fromarray(_mask(k)).save(masks / f"{i}_segmentation.png")
    return root


def _volume(seed: int, depth: int = 2, size: int = IMG) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, (depth, size, size)).astype(np.float32)
    image[0, 0, 0], image[-1, -1, -1] = 0.0, 1.0
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    label = np.select([r < 4, r < 7, r < 10], [3, 2, 1], 0).astype(np.uint8)
    return image, np.repeat(label[None], depth, 0)


def _h5(path: Path, image=None, label=None) -> Path:
    with h5py.File(path, "w") as f:
        if image is not None:
            f["image"] = image
        if label is not None:
            f["label"] = label
    return path


def _acdc_root(root: Path) -> Path:
    data = root / "acdc" / "data"
    data.mkdir(parents=True)
    image, label = _volume(0)
    for k in range(image.shape[0]):                        # a training volume as slice files, as SSL4MIS ships it
        _h5(data / f"{ACDC_VOLS['train']}_slice_{k + 1}.h5", image[k], label[k])
    for seed, part in ((1, "val"), (2, "test")):
        _h5(data / f"{ACDC_VOLS[part]}.h5", *_volume(seed))
    return root


NIFTI_FRAMES = {ACDC_VOLS["train"]: 10, ACDC_VOLS["val"]: 9, ACDC_VOLS["test"]: 12}   # frame01 -> its ES frame


def _nifti(path: Path, array: np.ndarray) -> Path:
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(array.T, np.eye(4)), path)                # (D, H, W) -> (x, y, z)
    return path


def _acdc_nifti_root(root: Path) -> Path:
    """The same volumes as _acdc_root in the official layout: acdc/training/patientXXX/, two annotated
    frames per patient (frame01 and a later one, read as frame02)."""
    for seed, volume in enumerate(ACDC_VOLS.values()):
        patient = volume.split("_")[0]
        folder = root / "acdc" / "training" / patient
        folder.mkdir(parents=True)
        for frame, shift in ((1, 0), (NIFTI_FRAMES[volume], 3)):
            image, label = _volume(seed + shift)
            _nifti(folder / f"{patient}_frame{frame:02d}.nii.gz", image)
            _nifti(folder / f"{patient}_frame{frame:02d}_gt.nii.gz", label)
    return root


def _config(dataset: str, data_dir: Path) -> TrainConfig:
    return TrainConfig(model="rwkv_unet_test", dataset=dataset, data_dir=str(data_dir), img_size=IMG, batch_size=2,
                       epochs=1, max_train_images=2, max_eval_items=1, progress="none", tta=False, seed=0)


def _net(in_chans: int, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("rwkv_unet_test", in_chans=in_chans, num_classes=num_classes).eval()


@dataclass
class Assets:
    root: Path
    isic: Path                 # data root holding isic2018/
    acdc: Path                 # data root holding acdc/ (HDF5)
    nifti: Path                # data root holding acdc/training/ (the official NIfTI release)
    isic_pt: Path              # training checkpoint (best.pt form)
    isic_dir: Path             # exported directory
    acdc_pt: Path
    net: torch.nn.Module       # the ISIC network itself


def make_assets(root: Path) -> Assets:
    root.mkdir(parents=True, exist_ok=True)
    isic, acdc = _isic_root(root / "isic_root"), _acdc_root(root / "acdc_root")
    nifti = _acdc_nifti_root(root / "nifti_root")
    paths = {}
    for dataset, data, chans, classes in (("isic2018", isic, 3, 1), ("acdc", acdc, 1, 4)):
        net, cfg = _net(chans, classes), _config(dataset, data)
        paths[dataset] = root / f"{dataset}.pt"
        save_checkpoint(paths[dataset], model=net.state_dict(), epoch=0, step=1, config=cfg.to_dict(),
                        best=None, num_classes=classes, in_chans=chans)
        if dataset == "isic2018":
            isic_net = net
            save_pretrained(net, root / "isic_model", model_name="rwkv_unet_test", input_size=[3, IMG, IMG],
                            normalization=NORMALIZATIONS["isic2018"].to_dict(), train_config=cfg.to_dict())
    return Assets(root, isic, acdc, nifti, paths["isic2018"], root / "isic_model", paths["acdc"], isic_net)


# ---------------------------------------------------------------------------------------------
# Outcomes and the judge
# ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    rc: int                                  # exit status (the API: 0, or 1 when it raised)
    error: str = ""                          # stderr of the command, or "Type: message" of the exception
    out: str = ""                            # stdout of the command
    value: object = None                     # what the API returned
    warned: str = ""                         # the warnings, joined


def cli(*args) -> Outcome:
    """`rwkvseg ARGS` in this process: exit status, stdout, stderr (a crash counts as a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
        except Exception:
            traceback.print_exc(file=err)
            rc = 1
    return Outcome(rc=rc, error=err.getvalue(), out=out.getvalue(),
                   warned="\n".join(str(w.message) for w in caught))


def api(fn: Callable, *args, **kw) -> Outcome:
    """fn(*args, **kw): its value, or the exception as "Type: message"."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kw)
        except Exception as e:
            return Outcome(rc=1, error=f"{type(e).__name__}: {e}", warned="\n".join(str(w.message) for w in caught))
    return Outcome(rc=0, value=value, warned="\n".join(str(w.message) for w in caught))


@dataclass
class Case:
    """One bad input. `names`: what the error must name (file names, an argument); `says`: a regex
    the error must match (the problem); `check`: for inputs that must be handled, not refused, a
    function of (outcome, entry, setup) that raises AssertionError when the handling is wrong."""

    name: str
    kind: str
    make: Callable
    names: tuple[str, ...] = ()
    says: str | None = None
    check: Callable | None = None
    skip: tuple[str, ...] = ()               # entry points that do not read what this case spoils


def judge(case: Case, o: Outcome, entry: str, setup) -> str:
    """clear, partial, obscure or silent (see the module docstring)."""
    if case.check is not None:
        try:
            case.check(o, entry, setup)
            return "clear"
        except AssertionError:
            if o.rc == 0:
                return "silent"
    elif o.rc == 0:
        return "silent"
    text = o.error
    named = all(n in text for n in case.names)
    right = case.says is None or re.search(case.says, text, re.IGNORECASE) is not None
    if named and right and "Traceback" not in text and case.check is None:
        return "clear"
    return "partial" if named else "obscure"


# ---------------------------------------------------------------------------------------------
# The entry points, per kind of input
# ---------------------------------------------------------------------------------------------

def _train_args(dataset: str, data_dir: Path, out: Path, *more) -> list:
    return ["train", "--model", "rwkv_unet_test", "--dataset", dataset, "--data_dir", data_dir, "--img_size", IMG,
            "--batch_size", 2, "--epochs", 1, "--max_train_images", 2, "--max_eval_items", 1, "--progress", "none",
            "--tta", "false", "--save_checkpoints", "false", "--out_dir", out, *more]


def _evaluate(ckpt, data_dir=None) -> Outcome:
    more = ["--data_dir", data_dir] if data_dir is not None else []
    return cli("evaluate", "--checkpoint", ckpt, *more, "--max-items", 1, "--no-tta", "--device", "cpu")


def _resume(a: Assets, tmp: Path, last: Path) -> Outcome:
    out = tmp / "resumed"
    out.mkdir(exist_ok=True)
    if last.is_fifo():
        _fifo(out / "last.pt")
    else:
        shutil.copyfile(last, out / "last.pt")
    args = _train_args("isic2018", a.isic, out)
    return cli(*[x for x in args if x not in ("--save_checkpoints", "false")], "--resume")


ENTRIES: dict[str, dict[str, Callable]] = {
    "isic-data": {                                        # setup: a data root holding a spoiled isic2018/
        "cli-train": lambda a, t, d: cli(*_train_args("isic2018", d, t / "run")),
        "cli-evaluate": lambda a, t, d: _evaluate(a.isic_pt, d),
        "cli-cache": lambda a, t, d: cli("cache", "--dataset", "isic2018", "--data_dir", d, "--out", t / "c",
                                         "--size", IMG),
        "api-load_dataset": lambda a, t, d: api(load_dataset, "isic2018", data_dir=d, img_size=IMG, max_train=2,
                                                max_eval=1),
        "api-load_isic": lambda a, t, d: api(load_isic, dataset_dir("isic2018", d), size=(IMG, IMG)),
    },
    "acdc-data": {                                        # setup: (a data root holding a spoiled acdc/, the volume)
        "cli-train": lambda a, t, s: cli(*_train_args("acdc", s[0], t / "run")),
        "cli-evaluate": lambda a, t, s: _evaluate(a.acdc_pt, s[0]),
        "cli-cache": lambda a, t, s: cli("cache", "--dataset", "acdc", "--data_dir", s[0], "--out", t / "c",
                                         "--size", IMG),
        "api-load_dataset": lambda a, t, s: api(load_dataset, "acdc", data_dir=s[0], img_size=IMG, max_train=2,
                                                max_eval=1),
        "api-read_volume": lambda a, t, s: api(read_volume, dataset_dir("acdc", s[0]), s[1]),
    },
    "checkpoint": {                                       # setup: a .pt file
        "cli-evaluate": lambda a, t, p: _evaluate(p, a.isic),
        "cli-predict": lambda a, t, p: cli("predict", "--checkpoint", p, a.isic / "isic2018" / "images" /
                                           f"{BAD_ISIC}.jpg", "--out", t / "pred"),
        "cli-train-resume": lambda a, t, p: _resume(a, t, p),
        "api-load_model": lambda a, t, p: api(load_model, p, device="cpu"),
        "api-load_checkpoint": lambda a, t, p: api(load_checkpoint, p),
    },
    "weights": {                                          # setup: an exported directory
        "cli-evaluate": lambda a, t, p: _evaluate(p, a.isic),
        "cli-predict": lambda a, t, p: cli("predict", "--checkpoint", p, a.isic / "isic2018" / "images" /
                                           f"{BAD_ISIC}.jpg", "--out", t / "pred"),
        "api-from_pretrained": lambda a, t, p: api(from_pretrained, p),
        "api-load_model": lambda a, t, p: api(load_model, p, device="cpu"),
    },
    "image": {                                            # setup: (image paths, output folder)
        "cli-predict": lambda a, t, s: cli("predict", "--checkpoint", a.isic_dir, *s[0], "--out", s[1]),
        "api-predict_images": lambda a, t, s: api(predict_images, a.net, s[0], s[1], img_size=IMG),
    },
    "recipe": {                                           # setup: a YAML file
        "cli-train": lambda a, t, p: cli("train", "--config", p, "--data_dir", a.isic, "--out_dir", t / "run"),
        "api-from_yaml": lambda a, t, p: api(TrainConfig.from_yaml, p),
    },
    "cache-file": {                                       # setup: a folder holding a spoiled isic2018_32x32.npz
        "cli-train": lambda a, t, d: cli(*_train_args("isic2018", d, t / "run")),
        "cli-evaluate": lambda a, t, d: _evaluate(a.isic_pt, d),
        "api-load_dataset": lambda a, t, d: api(load_dataset, "isic2018", data_dir=d, img_size=IMG),
        "api-load_cache": lambda a, t, d: api(load_cache, d / isic2018_cache_name((IMG, IMG))),
    },
    "args": {"cli": lambda a, t, argv: cli(*argv)},       # setup: the command line
    "run-dir": {"cli-record": lambda a, t, d: cli("record", "--run", d, "--out", t / "record")},
}


# ---------------------------------------------------------------------------------------------
# The corpus: spoilers (each returns the names the error must carry)
# ---------------------------------------------------------------------------------------------

def _fifo(path: Path) -> Path:
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _isic_data(spoil: Callable[[Path, Path], tuple]) -> Callable:
    """A case on a copy of the ISIC root: spoil(images folder, masks folder) -> names."""
    def make(a: Assets, tmp: Path):
        root = tmp / "data"
        shutil.copytree(a.isic, root)
        names = spoil(root / "isic2018" / "images", root / "isic2018" / "masks")
        return root, names
    return make


IMAGE_FILE, MASK_FILE = f"{BAD_ISIC}.jpg", f"{BAD_ISIC}_segmentation.png"


def _spoil_file(path: Path, how: str) -> None:
    """The corruptions any file kind meets: truncated, empty, text, a named pipe, a device, a folder."""
    if how == "truncated":
        _truncate(path)
    elif how == "zero-byte":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("this is a text file, not an image\n" * 20)
    elif how == "fifo":
        _fifo(path)
    elif how == "device":
        path.unlink()
        path.symlink_to("/dev/zero")
    elif how == "directory":
        path.unlink()
        path.mkdir()


def _spoil_image(how: str):
    def spoil(images: Path, masks: Path):
        _spoil_file(images / IMAGE_FILE, how)
        return (IMAGE_FILE,)
    return spoil


def _spoil_mask(how: str):
    def spoil(images: Path, masks: Path):
        path = masks / MASK_FILE
        if how == "truncated":
            _truncate(path, 0.6)
        elif how == "zero-byte":
            path.write_bytes(b"")
        elif how == "text":
            path.write_text("not a PNG\n" * 20)
        elif how == "other-size":
            Image.fromarray(_mask(0, IMG // 2)).save(path)
        elif how == "16-bit":
            Image.fromarray(_mask(0).astype(np.uint16) * 257).save(path)
        elif how == "values":
            m = _mask(0)
            m[0, :4] = 128
            Image.fromarray(m).save(path)
        elif how == "fifo":
            _fifo(path)
        elif how == "missing":
            path.unlink()
            return (IMAGE_FILE,)
        return (MASK_FILE,)
    return spoil


def _isic_16bit(images: Path, masks: Path):
    (images / IMAGE_FILE).unlink()
    grey = np.tile(np.linspace(10000, 50000, IMG), (IMG, 1)).astype(np.uint16)     # mid-grey, far from 255 * 257
    Image.fromarray(grey).save(images / f"{BAD_ISIC}.png")
    return (f"{BAD_ISIC}.png",)


def _isic_huge(images: Path, masks: Path):
    Image.fromarray(_rgb(0, 256)).save(images / IMAGE_FILE, quality=90)
    Image.fromarray(_mask(0, 256)).save(masks / MASK_FILE)
    return (IMAGE_FILE,)


def _isic_case_clash(images: Path, masks: Path):
    clash = f"{BAD_ISIC.lower()}.JPG"
    Image.fromarray(_rgb(7)).save(images / clash, format="JPEG")
    return (IMAGE_FILE, clash)


def _isic_jpg_and_png(images: Path, masks: Path):
    Image.fromarray(_rgb(7)).save(images / f"{BAD_ISIC}.png")
    return (IMAGE_FILE, f"{BAD_ISIC}.png")


def _isic_mask_case_clash(images: Path, masks: Path):
    clash = f"{BAD_ISIC}_Segmentation.PNG"
    Image.fromarray(_mask(3)).save(masks / clash, format="PNG")
    return (MASK_FILE, clash)


def _handled_16bit(o: Outcome, entry: str, setup) -> None:
    """Loaded, and the 16-bit image scaled to 8 bits (not clipped to white), and said so."""
    assert o.rc == 0, o.error
    assert re.search(r"16-bit", o.warned + o.error + o.out), "the scaling was not reported"
    if entry == "api-load_dataset":
        assert float(o.value.test.images.float().mean()) < 200          # clipped would be 255
    if entry == "api-load_isic":
        row = o.value.ids.index(BAD_ISIC)
        assert float(o.value.images[row].mean()) < 200


def _handled_huge(o: Outcome, entry: str, setup) -> None:
    """Loaded within the bound (decoded at a reduced scale), and said so."""
    assert o.rc == 0, o.error
    assert re.search(r"decoded at 1/\d", o.warned + o.error + o.out), "the reduction was not reported"


ISIC_DATA = [
    Case("isic-image-truncated-jpeg", "isic-data", _isic_data(_spoil_image("truncated")), says=r"truncated|decode"),
    Case("isic-image-zero-byte", "isic-data", _isic_data(_spoil_image("zero-byte")), says=r"empty|decode|identify"),
    Case("isic-image-text", "isic-data", _isic_data(_spoil_image("text")), says=r"decode|identify|not an image"),
    Case("isic-image-fifo", "isic-data", _isic_data(_spoil_image("fifo")), says=SPECIAL),
    Case("isic-image-device", "isic-data", _isic_data(_spoil_image("device")), says=SPECIAL),
    Case("isic-image-directory", "isic-data", _isic_data(_spoil_image("directory")), says=SPECIAL),
    Case("isic-image-16bit", "isic-data", _isic_data(_isic_16bit), check=_handled_16bit),
    Case("isic-image-huge", "isic-data", _isic_data(_isic_huge), check=_handled_huge),
    Case("isic-ids-case-clash", "isic-data", _isic_data(_isic_case_clash), says=r"two files for the id"),
    Case("isic-ids-jpg-and-png", "isic-data", _isic_data(_isic_jpg_and_png), says=r"two files for the id"),
    Case("isic-mask-ids-case-clash", "isic-data", _isic_data(_isic_mask_case_clash), says=r"two files for the id"),
    Case("isic-mask-truncated-png", "isic-data", _isic_data(_spoil_mask("truncated")), says=r"truncated|decode"),
    Case("isic-mask-zero-byte", "isic-data", _isic_data(_spoil_mask("zero-byte")), says=r"empty|decode|identify"),
    Case("isic-mask-text", "isic-data", _isic_data(_spoil_mask("text")), says=r"decode|identify|not an image"),
    Case("isic-mask-other-size", "isic-data", _isic_data(_spoil_mask("other-size")), says=r"16x16"),
    Case("isic-mask-16bit", "isic-data", _isic_data(_spoil_mask("16-bit")), says=r"16|mode"),
    Case("isic-mask-values", "isic-data", _isic_data(_spoil_mask("values")), says=r"\{128\}"),
    Case("isic-mask-fifo", "isic-data", _isic_data(_spoil_mask("fifo")), says=SPECIAL),
    Case("isic-image-without-mask", "isic-data", _isic_data(_spoil_mask("missing")), (IMAGE_FILE,), "no mask"),
]


def _acdc_data(spoil: Callable[[Path], tuple]) -> Callable:
    """A case on a copy of the ACDC root: spoil(data folder) -> names (the first: the spoiled volume's file)."""
    def make(a: Assets, tmp: Path):
        root = tmp / "data"
        shutil.copytree(a.acdc, root)
        names = spoil(root / "acdc" / "data")
        return (root, re.sub(r"(_slice_\d+)?\.h5$", "", names[0])), names
    return make


def _spoil_volume(how: str, volume: str = BAD_ACDC):
    def spoil(data: Path):
        path = data / f"{volume}.h5"
        image, label = _volume(2)
        if how == "zero-byte":
            path.write_bytes(b"")
        elif how == "truncated":
            _truncate(path)
        elif how == "no-label":
            _h5(path, image)
        elif how == "text":
            path.write_text("not HDF5\n" * 30)
        elif how == "fifo":
            _fifo(path)
        elif how == "nan":
            image[1, 3, 3] = np.nan
            _h5(path, image, label)
        elif how == "label-5":
            label[0, 0, 0] = 5
            _h5(path, image, label)
        elif how == "shape":
            _h5(path, image, label[:, :IMG // 2])
        return (path.name,)
    return spoil


def _acdc_missing_slice(data: Path):
    (data / f"{ACDC_VOLS['train']}_slice_1.h5").unlink()
    return (f"{ACDC_VOLS['train']}_slice_1.h5",)


def _acdc_nifti(spoil: Callable[[Path], tuple]) -> Callable:
    """A case on a copy of the NIfTI root: spoil(the test patient's folder) -> names."""
    def make(a: Assets, tmp: Path):
        root = tmp / "data"
        shutil.copytree(a.nifti, root)
        return (root, BAD_ACDC), spoil(root / "acdc" / "training" / BAD_ACDC.split("_")[0])
    return make


def _spoil_nifti(how: str):
    def spoil(patient: Path):
        image, gt = patient / f"{BAD_ACDC}.nii.gz", patient / f"{BAD_ACDC}_gt.nii.gz"
        if how == "truncated":
            _truncate(image)
        elif how == "zero-byte-gt":
            gt.write_bytes(b"")
            return (gt.name,)
        elif how == "text":
            image.write_text("not NIfTI\n" * 30)
        elif how == "no-gt":
            gt.unlink()
        elif how == "fifo-gt":
            _fifo(gt)
            return (gt.name,)
        elif how == "4d":
            _nifti(image, np.zeros((2, IMG, IMG, 3), np.float32))
        return (image.name,)
    return spoil


ACDC_DATA = [
    Case("acdc-test-volume-zero-byte", "acdc-data", _acdc_data(_spoil_volume("zero-byte")), says=r"HDF5|empty"),
    Case("acdc-test-volume-truncated", "acdc-data", _acdc_data(_spoil_volume("truncated")), says=r"HDF5|truncated"),
    Case("acdc-test-volume-no-label", "acdc-data", _acdc_data(_spoil_volume("no-label")), says=r"label"),
    Case("acdc-test-volume-text", "acdc-data", _acdc_data(_spoil_volume("text")), says=r"HDF5"),
    Case("acdc-test-volume-fifo", "acdc-data", _acdc_data(_spoil_volume("fifo")), says=SPECIAL),
    Case("acdc-test-volume-nan", "acdc-data", _acdc_data(_spoil_volume("nan")), says=r"NaN"),
    Case("acdc-test-volume-label-5", "acdc-data", _acdc_data(_spoil_volume("label-5")), says=r"\[5\]"),
    Case("acdc-test-volume-shapes", "acdc-data", _acdc_data(_spoil_volume("shape")), says=r"shape"),
    Case("acdc-val-volume-zero-byte", "acdc-data", _acdc_data(_spoil_volume("zero-byte", ACDC_VOLS["val"])),
         says=r"HDF5|empty"),
    Case("acdc-train-missing-slice", "acdc-data", _acdc_data(_acdc_missing_slice), says=r"missing slice"),
    Case("acdc-nifti-truncated", "acdc-data", _acdc_nifti(_spoil_nifti("truncated")), says=r"NIfTI"),
    Case("acdc-nifti-text", "acdc-data", _acdc_nifti(_spoil_nifti("text")), says=r"NIfTI"),
    Case("acdc-nifti-zero-byte-gt", "acdc-data", _acdc_nifti(_spoil_nifti("zero-byte-gt")), says=r"empty"),
    Case("acdc-nifti-fifo-gt", "acdc-data", _acdc_nifti(_spoil_nifti("fifo-gt")), says=SPECIAL),
    Case("acdc-nifti-without-gt", "acdc-data", _acdc_nifti(_spoil_nifti("no-gt")), says=r"no ground truth"),
    Case("acdc-nifti-4d", "acdc-data", _acdc_nifti(_spoil_nifti("4d")), says=r"3 axes|shape"),
]


class _Payload:
    """Unpickling this runs code: it writes a marker file (harmless)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def _checkpoint(how: str) -> Callable:
    def make(a: Assets, tmp: Path):
        path = tmp / "best.pt"
        ckpt = torch.load(a.isic_pt, weights_only=True)
        if how == "truncated":
            shutil.copyfile(a.isic_pt, path)
            _truncate(path)
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "text":
            path.write_text("model: rwkv_unet_test\n")
        elif how == "pickled-code":
            torch.save({"model": ckpt["model"], "config": ckpt["config"], "x": _Payload(tmp / "PWNED")}, path)
        elif how == "no-config":
            torch.save({"model": ckpt["model"]}, path)
        elif how == "state-dict-only":
            torch.save(ckpt["model"], path)
        elif how == "nan":
            key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 4)
            ckpt["model"][key][0, 0, 0, 0] = float("nan")
            torch.save(ckpt, path)
            return path, ("best.pt", key)
        elif how == "mismatched":
            ckpt["model"] = {k: v for k, v in list(ckpt["model"].items())[1:]}
            torch.save(ckpt, path)
        elif how == "unknown-model":
            ckpt["config"]["model"] = "no_such_net"
            torch.save(ckpt, path)
        elif how == "fifo":
            _fifo(path)
        return path, ("best.pt",)
    return make


CHECKPOINTS = [
    Case("pt-truncated", "checkpoint", _checkpoint("truncated"), says=r"truncated|not a readable"),
    Case("pt-empty", "checkpoint", _checkpoint("empty"), says=r"empty|not a readable"),
    Case("pt-text", "checkpoint", _checkpoint("text"), says=r"not a checkpoint"),
    Case("pt-pickled-code", "checkpoint", _checkpoint("pickled-code"), says=r"refused|code"),
    Case("pt-without-config", "checkpoint", _checkpoint("no-config"), says=r"config"),
    Case("pt-state-dict-only", "checkpoint", _checkpoint("state-dict-only"), says=r"not an rwkvseg"),
    Case("pt-nan-weights", "checkpoint", _checkpoint("nan"), says=r"NaN|non-finite|infinite"),
    Case("pt-mismatched-keys", "checkpoint", _checkpoint("mismatched"), says=r"missing|does not match|different",
         skip=("api-load_checkpoint",)),                 # a readable checkpoint: load_model matches it to the net
    Case("pt-unknown-model", "checkpoint", _checkpoint("unknown-model"), says=r"no_such_net",
         skip=("api-load_checkpoint",)),
    Case("pt-fifo", "checkpoint", _checkpoint("fifo"), says=SPECIAL),
]


def _weights(how: str) -> Callable:
    def make(a: Assets, tmp: Path):
        d = tmp / "model"
        shutil.copytree(a.isic_dir, d)
        weights, config = d / "model.safetensors", d / "config.json"
        if how == "nan":
            net = _net(3, 1)
            key, param = next((k, p) for k, p in net.named_parameters() if p.ndim == 4)
            with torch.no_grad():
                param[0, 0, 0, 0] = float("nan")
            record = json.loads(config.read_text())
            save_pretrained(net, d, model_name="rwkv_unet_test", input_size=record["input_size"],
                            normalization=record["normalization"], train_config=record["extra"]["train_config"])
            return d, ("model.safetensors", key)
        if how == "random-payload":
            data = bytearray(weights.read_bytes())
            header = 8 + int.from_bytes(data[:8], "little")
            rng = np.random.default_rng(0)
            data[header:] = rng.integers(0, 256, len(data) - header, dtype=np.uint8).tobytes()
            weights.write_bytes(bytes(data))
        elif how == "header-length":
            data = weights.read_bytes()
            weights.write_bytes((2**40).to_bytes(8, "little") + data[8:])
        elif how == "header-not-json":
            data = weights.read_bytes()
            n = int.from_bytes(data[:8], "little")
            weights.write_bytes(data[:8] + b"{" * n + data[8 + n:])
        elif how == "truncated":
            _truncate(weights)
        elif how == "empty":
            weights.write_bytes(b"")
        elif how == "fifo-weights":
            _fifo(weights)
        elif how == "missing-weights":
            weights.unlink()
        elif how == "config-not-json":
            config.write_text("{'format': 'rwkvseg',")
            return d, ("config.json",)
        elif how == "config-no-model-name":
            record = json.loads(config.read_text())
            del record["model_name"]
            config.write_text(json.dumps(record))
            return d, ("config.json", "model_name")
        elif how == "config-unknown-model":
            record = json.loads(config.read_text())
            record["model_name"] = "no_such_net"
            config.write_text(json.dumps(record))
            return d, ("config.json", "no_such_net")
        elif how == "config-unknown-field":
            record = json.loads(config.read_text())
            record["config"]["no_such_field"] = 3
            config.write_text(json.dumps(record))
            return d, ("config.json", "no_such_field")
        elif how == "config-list":
            config.write_text("[1, 2, 3]")
            return d, ("config.json",)
        elif how == "fifo-config":
            _fifo(config)
            return d, ("config.json",)
        elif how == "missing-config":
            config.unlink()
            return d, ("config.json",)
        return d, ("model.safetensors",)
    return make


WEIGHTS = [
    Case("weights-nan", "weights", _weights("nan"), says=r"NaN|non-finite|infinite"),
    Case("weights-random-payload", "weights", _weights("random-payload"), says=r"sha256|corrupt"),
    Case("weights-header-length", "weights", _weights("header-length"), says=r"header|safetensors"),
    Case("weights-header-not-json", "weights", _weights("header-not-json"), says=r"header|safetensors"),
    Case("weights-truncated", "weights", _weights("truncated"), says=r"truncated|safetensors|header"),
    Case("weights-empty", "weights", _weights("empty"), says=r"empty|safetensors|header"),
    Case("weights-fifo", "weights", _weights("fifo-weights"), says=SPECIAL),
    Case("weights-missing", "weights", _weights("missing-weights"), says=r"no model.safetensors|not found"),
    Case("config-json-invalid", "weights", _weights("config-not-json"), says=r"JSON"),
    Case("config-json-no-model-name", "weights", _weights("config-no-model-name")),
    Case("config-json-unknown-model", "weights", _weights("config-unknown-model")),
    Case("config-json-unknown-field", "weights", _weights("config-unknown-field")),
    Case("config-json-a-list", "weights", _weights("config-list"), says=r"mapping|object|dict|not an rwkvseg"),
    Case("config-json-fifo", "weights", _weights("fifo-config"), says=SPECIAL),
    Case("config-json-missing", "weights", _weights("missing-config"), says=r"no config.json|does not exist|not found"),
]


def _image(how: str) -> Callable:
    """One bad file given to predict."""
    def make(a: Assets, tmp: Path):
        src = a.isic / "isic2018" / "images" / f"{BAD_ISIC}.jpg"
        path = tmp / ("in.png" if how in ("truncated-png", "float-tiff") else "in.jpg")
        if how == "float-tiff":
            path = tmp / "in.tif"
            Image.fromarray(np.ones((IMG, IMG), np.float32)).save(path)
        elif how == "truncated-png":
            Image.open(src).save(path)
            _truncate(path, 0.6)
        elif how != "missing":
            shutil.copyfile(src, path)
        _spoil_file(path, "truncated" if how == "truncated-jpeg" else how)
        return ([path], tmp / "pred"), (path.name,)
    return make


IMAGES = [
    Case("predict-truncated-jpeg", "image", _image("truncated-jpeg"), says=r"truncated|decode"),
    Case("predict-truncated-png", "image", _image("truncated-png"), says=r"truncated|decode"),
    Case("predict-zero-byte", "image", _image("zero-byte"), says=r"empty|zero|identify|decode"),
    Case("predict-text-as-image", "image", _image("text"), says=r"identify|decode|not an image"),
    Case("predict-fifo", "image", _image("fifo"), says=SPECIAL),
    Case("predict-device", "image", _image("device"), says=SPECIAL),
    Case("predict-directory", "image", _image("directory"), says=SPECIAL),
    Case("predict-missing-file", "image", _image("missing"), says=r"no such|does not exist|not found"),
    Case("predict-float-tiff", "image", _image("float-tiff"), says=r"float|32-bit|mode"),
]


def _masks_written(o: Outcome, entry: str, out: Path, n: int) -> list[Path]:
    assert o.rc == 0, o.error
    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == n, f"{len(masks)} masks for {n} inputs: {[m.name for m in masks]}"
    return masks


def _batch(build: Callable[[Path], list[Path]]) -> Callable:
    def make(a: Assets, tmp: Path):
        src = tmp / "in"
        src.mkdir()
        return (build(src), tmp / "pred"), ()
    return make


def _same_stem(src: Path) -> list[Path]:
    Image.fromarray(_rgb(1)).save(src / "a.jpg")
    Image.fromarray(_rgb(2)).save(src / "a.png")
    return [src / "a.jpg", src / "a.png"]


def _same_name_two_folders(src: Path) -> list[Path]:
    for k, sub in enumerate(("d1", "d2")):
        (src / sub).mkdir()
        Image.fromarray(_rgb(k)).save(src / sub / "a.jpg")
    return [src / "d1" / "a.jpg", src / "d2" / "a.jpg"]


def _case_only(src: Path) -> list[Path]:
    (src / "up").mkdir()
    Image.fromarray(_rgb(1)).save(src / "up" / "A.jpg")
    Image.fromarray(_rgb(2)).save(src / "a.jpg")
    return [src / "up" / "A.jpg", src / "a.jpg"]


def _distinct(n: int):
    def check(o: Outcome, entry: str, setup) -> None:
        masks = _masks_written(o, entry, setup[1], n)
        assert len({m.name.lower() for m in masks}) == n            # distinct on a case-insensitive disk too
    return check


def _one_bad_in_batch(src: Path) -> list[Path]:
    Image.fromarray(_rgb(1)).save(src / "first.jpg")
    (src / "bad.jpg").write_text("not an image")
    Image.fromarray(_rgb(2)).save(src / "last.png")
    return [src / "first.jpg", src / "bad.jpg", src / "last.png"]


def _bad_reported_and_skipped(o: Outcome, entry: str, setup) -> None:
    if entry == "api-predict_images":                             # the API raises by default (on_error="raise")
        assert o.rc == 1 and "bad.jpg" in o.error and "Traceback" not in o.error
        return
    assert o.rc == 1, f"exit status {o.rc}: a skipped file must show in the status"
    assert "bad.jpg" in o.error and "Traceback" not in o.error
    assert sorted(p.name for p in setup[1].glob("*_mask.png")) == ["first_mask.png", "last_mask.png"]


def _stop_on_error(a: Assets, tmp: Path):
    (tmp / "bad.jpg").write_text("not an image")
    Image.fromarray(_rgb(2)).save(tmp / "good.png")
    return ["predict", "--checkpoint", a.isic_dir, tmp / "bad.jpg", tmp / "good.png", "--out", tmp / "pred",
            "--stop-on-error"], ()


def _stopped(o: Outcome, entry: str, argv) -> None:
    assert o.rc == 2 and "bad.jpg" in o.error and "Traceback" not in o.error, o.error
    assert not list(Path(argv[argv.index("--out") + 1]).glob("good*")), "the batch went on"


def _in_place(build: Callable[[Path], list[Path]]) -> Callable:
    """A batch whose outputs go to the folder of its inputs."""
    def make(a: Assets, tmp: Path):
        src = tmp / "in"
        src.mkdir()
        return (build(src), src), ()
    return make


def _output_names_an_input(src: Path) -> list[Path]:
    Image.fromarray(_rgb(1)).save(src / "x.png")
    Image.fromarray(_rgb(2)).save(src / "x_mask.png")
    return [src / "x.png", src / "x_mask.png"]


def _inputs_kept(o: Outcome, entry: str, setup) -> None:
    assert o.rc == 0, o.error
    src = setup[0][0].parent
    assert np.array_equal(np.asarray(Image.open(src / "x_mask.png")), _rgb(2)), "an input was overwritten"
    assert len(list(setup[1].glob("*_mask.png"))) == 3                 # the input x_mask.png and two outputs


def _16bit_input(src: Path) -> list[Path]:
    grey = np.tile(np.linspace(10000, 50000, IMG), (IMG, 1)).astype(np.uint16)
    Image.fromarray(grey).save(src / "g16.png")
    return [src / "g16.png"]


def _said_16bit(o: Outcome, entry: str, setup) -> None:
    _masks_written(o, entry, setup[1], 1)
    overlay = np.asarray(Image.open(setup[1] / "g16_overlay.png"))
    assert overlay[..., 1].mean() < 200, "the 16-bit image was clipped to white"
    assert "16-bit" in o.error + o.out + o.warned + str(o.value)


def _huge_input(src: Path) -> list[Path]:
    Image.fromarray(_rgb(3, 256)).save(src / "big.jpg", quality=90)
    return [src / "big.jpg"]


def _said_reduced(o: Outcome, entry: str, setup) -> None:
    (mask,) = _masks_written(o, entry, setup[1], 1)
    assert Image.open(mask).size == (256, 256), "the mask must have the image's own size"
    assert re.search(r"decoded at 1/\d", o.error + o.out + o.warned + str(o.value))


def _odd_modes(src: Path) -> list[Path]:
    rgba = np.dstack([_rgb(1), np.full((IMG, IMG), 128, np.uint8)])
    Image.fromarray(rgba).save(src / "rgba.png")
    Image.fromarray(_rgb(2)).convert("P").save(src / "palette.png")
    Image.fromarray(_rgb(3)).convert("L").save(src / "grey.jpg")
    return [src / "rgba.png", src / "palette.png", src / "grey.jpg"]


def _same_file_twice(src: Path) -> list[Path]:
    Image.fromarray(_rgb(1)).save(src / "a.jpg")
    return [src / "a.jpg", src / "a.jpg"]


BATCHES = [
    Case("predict-same-stem", "image", _batch(_same_stem), check=_distinct(2)),
    Case("predict-same-name-two-folders", "image", _batch(_same_name_two_folders), check=_distinct(2)),
    Case("predict-names-differ-in-case", "image", _batch(_case_only), check=_distinct(2)),
    Case("predict-one-bad-in-batch", "image", _batch(_one_bad_in_batch), check=_bad_reported_and_skipped),
    Case("predict-output-would-overwrite-input", "image", _in_place(_output_names_an_input), check=_inputs_kept),
    Case("predict-16bit-png", "image", _batch(_16bit_input), check=_said_16bit),
    Case("predict-huge-jpeg", "image", _batch(_huge_input), check=_said_reduced),
    Case("predict-rgba-palette-grey", "image", _batch(_odd_modes), check=lambda o, e, s: _masks_written(o, e, s[1], 3)),
    Case("predict-same-file-twice", "image", _batch(_same_file_twice),
         check=lambda o, e, s: _masks_written(o, e, s[1], 1)),
]


def _recipe(text: str | bytes | None) -> Callable:
    def make(a: Assets, tmp: Path):
        path = tmp / "recipe.yaml"
        if text is None:
            _fifo(path)
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path, ("recipe.yaml",)
    return make


RECIPES = [
    Case("yaml-invalid", "recipe", _recipe("model: rwkv_unet_test\nepochs: [1, 2\n"), says=r"YAML"),
    Case("yaml-tab-indent", "recipe", _recipe("model:\n\t- x\n"), says=r"YAML"),
    Case("yaml-a-list", "recipe", _recipe("- model\n- epochs\n"), says=r"mapping"),
    Case("yaml-unknown-field", "recipe", _recipe("epoch: 3\n"), says=r"unknown TrainConfig field"),
    Case("yaml-epochs-0", "recipe", _recipe("epochs: 0\n"), says=r"epochs"),
    Case("yaml-binary", "recipe", _recipe(bytes(range(256)) * 4), says=r"UTF-8|text|YAML|decode"),
    Case("yaml-fifo", "recipe", _recipe(None), says=SPECIAL),
]


def _cache_file(how: str) -> Callable:
    def make(a: Assets, tmp: Path):
        d = tmp / "cachedir"
        d.mkdir()
        path = d / isic2018_cache_name((IMG, IMG))
        if how == "zero-byte":
            path.write_bytes(b"")
        else:
            save_cache(load_isic(dataset_dir("isic2018", a.isic), size=(IMG, IMG), dataset="isic2018"), path)
            if how == "truncated":
                _truncate(path)
            elif how == "text":
                path.write_text("PK not really a zip")
        return d, (path.name,)
    return make


CACHE_FILES = [
    Case("npz-zero-byte", "cache-file", _cache_file("zero-byte"), says=r"cache"),
    Case("npz-truncated", "cache-file", _cache_file("truncated"), says=r"cache"),
    Case("npz-text", "cache-file", _cache_file("text"), says=r"cache"),
]


def _args(*argv, names: tuple = ()) -> Callable:
    """A command line; "{isic}", "{pt}", "{model}", "{tmp}", "{file}" are filled in."""
    def make(a: Assets, tmp: Path):
        (tmp / "a_file").write_text("x")
        fill = {"{isic}": str(a.isic), "{pt}": str(a.isic_pt), "{model}": str(a.isic_dir), "{tmp}": str(tmp),
                "{file}": str(tmp / "a_file"), "{img}": str(a.isic / "isic2018" / "images" / f"{BAD_ISIC}.jpg")}
        out = []
        for x in argv:
            for k, v in fill.items():
                x = str(x).replace(k, v)
            out.append(x)
        return out, names
    return make


TRAIN = ("train", "--model", "rwkv_unet_test", "--data_dir", "{isic}", "--img_size", IMG, "--max_train_images", 2,
         "--max_eval_items", 1, "--batch_size", 2, "--epochs", 1, "--progress", "none", "--tta", "false",
         "--save_checkpoints", "false", "--out_dir", "{tmp}/run")
EVAL = ("evaluate", "--checkpoint", "{pt}", "--data_dir", "{isic}", "--no-tta")


def _said_fresh(o: Outcome, entry: str, setup) -> None:
    assert o.rc == 0, o.error
    assert "starting from the first epoch" in o.out


ARGS = [
    Case("train-epochs-0", "args", _args(*TRAIN, "--epochs", 0), ("epochs",), r"at least 1"),
    Case("train-epochs-negative", "args", _args(*TRAIN, "--epochs", -3), ("epochs",), r"at least 1"),
    Case("train-batch-size-0", "args", _args(*TRAIN, "--batch_size", 0), ("batch_size",), r"at least 1"),
    Case("train-eval-every-0", "args", _args(*TRAIN, "--eval_every", 0), ("eval_every",), r"at least 1"),
    Case("train-iterations-negative", "args", _args(*TRAIN, "--iterations", -1), ("iterations",)),
    Case("train-max-train-images-0", "args", _args(*TRAIN, "--max_train_images", 0), ("max_train_images",)),
    Case("train-lr-text", "args", _args(*TRAIN, "--lr", "fast"), ("lr",)),
    Case("train-img-size-100", "args", _args(*TRAIN, "--img_size", 100), ("img_size",), r"multiple of 32"),
    Case("train-model-unknown", "args", _args(*TRAIN, "--model", "no_such_net"), ("model", "no_such_net")),
    Case("train-unknown-option", "args", _args(*TRAIN, "--epoch", 3), ("--epoch",)),
    Case("train-device-nonsense", "args", _args(*TRAIN, "--device", "gpu0"), ("device", "gpu0")),
    Case("train-data-dir-missing", "args", _args(*TRAIN, "--data_dir", "{tmp}/nowhere"), ("nowhere",)),
    Case("train-out-dir-is-a-file", "args", _args(*TRAIN, "--out_dir", "{file}"), ("a_file",)),
    Case("train-resume-without-last-pt", "args", _args(*TRAIN, "--resume"), check=_said_fresh),
    Case("evaluate-max-items-negative", "args", _args(*EVAL, "--max-items", -1), ("--max-items",)),
    Case("evaluate-max-items-0", "args", _args(*EVAL, "--max-items", 0), ("--max-items",)),
    Case("evaluate-n-cases-0", "args", _args(*EVAL, "--max-items", 1, "--n-cases", 0), ("--n-cases",)),
    Case("evaluate-device-nonsense", "args", _args(*EVAL, "--max-items", 1, "--device", "gpu0"), ("device", "gpu0")),
    Case("evaluate-split-unknown", "args", _args(*EVAL, "--split", "train"), ("--split",)),
    Case("evaluate-checkpoint-missing", "args", _args("evaluate", "--checkpoint", "{tmp}/none.pt"), ("none.pt",)),
    Case("evaluate-json-folder-missing", "args", _args(*EVAL, "--max-items", 1, "--json", "{tmp}/no/dir/r.json"),
         ("r.json",)),
    Case("evaluate-cases-is-a-file", "args", _args(*EVAL, "--max-items", 1, "--cases", "{file}"), ("a_file",)),
    Case("evaluate-data-dir-missing", "args", _args("evaluate", "--checkpoint", "{pt}", "--data_dir", "{tmp}/nowhere",
                                                    "--max-items", 1), ("nowhere",)),
    Case("predict-device-nonsense", "args", _args("predict", "--checkpoint", "{model}", "{img}", "--out", "{tmp}/p",
                                                  "--device", "gpu0"), ("device", "gpu0")),
    Case("predict-out-is-a-file", "args", _args("predict", "--checkpoint", "{model}", "{img}", "--out", "{file}"),
         ("a_file",)),
    Case("predict-checkpoint-missing", "args", _args("predict", "--checkpoint", "{tmp}/none", "{img}", "--out",
                                                      "{tmp}/p"), ("none",)),
    Case("cache-size-0", "args", _args("cache", "--dataset", "isic2018", "--data_dir", "{isic}", "--out", "{tmp}/c",
                                       "--size", 0), ("--size",)),
    Case("cache-size-33", "args", _args("cache", "--dataset", "isic2018", "--data_dir", "{isic}", "--out", "{tmp}/c",
                                        "--size", 33), ("--size",), r"multiple of 32"),
    Case("cache-dataset-unknown", "args", _args("cache", "--dataset", "isic", "--out", "{tmp}/c"), ("--dataset",)),
    Case("cache-data-dir-missing", "args", _args("cache", "--dataset", "isic2018", "--data_dir", "{tmp}/nowhere",
                                                 "--out", "{tmp}/c"), ("nowhere",)),
    Case("cache-out-is-a-file", "args", _args("cache", "--dataset", "isic2018", "--data_dir", "{isic}", "--out",
                                              "{file}", "--size", IMG), ("a_file",)),
    Case("record-run-missing", "args", _args("record", "--run", "{tmp}/nowhere", "--out", "{tmp}/r"), ("nowhere",)),
    Case("predict-stop-on-error", "args", _stop_on_error, check=_stopped),
    Case("record-n-cases-0", "args", _args("record", "--run", "{tmp}", "--out", "{tmp}/r", "--n-cases", 0),
         ("--n-cases",)),
]


def _run_dir(how: str) -> Callable:
    def make(a: Assets, tmp: Path):
        run = tmp / "run"
        run.mkdir()
        results = run / "results.json"
        if how == "invalid-json":
            results.write_text('{"dataset": "isic2018",')
        elif how == "a-list":
            results.write_text("[]")
        elif how == "missing-keys":
            results.write_text('{"dataset": "isic2018"}')
        elif how == "fifo":
            _fifo(results)
        elif how == "no-model":
            results.write_text(json.dumps({"dataset": "isic2018", "model": "rwkv_unet_test", "history": [],
                                           "provenance": {}, "config": {}, "selection": {}}))
            return run, ("model",)
        return run, ("results.json",)
    return make


RUN_DIRS = [
    Case("record-results-invalid-json", "run-dir", _run_dir("invalid-json"), says=r"JSON"),
    Case("record-results-a-list", "run-dir", _run_dir("a-list")),
    Case("record-results-missing-keys", "run-dir", _run_dir("missing-keys"), says=r"lacks|missing"),
    Case("record-results-fifo", "run-dir", _run_dir("fifo"), says=SPECIAL),
    Case("record-run-without-model", "run-dir", _run_dir("no-model"), says=r"no exported weights"),
]

CORPUS = ISIC_DATA + ACDC_DATA + CHECKPOINTS + WEIGHTS + IMAGES + BATCHES + RECIPES + CACHE_FILES + ARGS + RUN_DIRS
RUNS = [(case, entry) for case in CORPUS for entry in ENTRIES[case.kind] if entry not in case.skip]


def run_case(case: Case, entry: str, assets: Assets, tmp: Path) -> tuple[Case, Outcome, object]:
    """Build the case's files in `tmp`, run `entry` on them: the case (with the names its files
    gave), the outcome and the setup."""
    setup, names = case.make(assets, tmp)
    if entry == "cli-train-resume":                      # the checkpoint is read as out_dir/last.pt
        names = tuple(n.replace("best.pt", "last.pt") for n in names)
    if names:
        case = dataclasses.replace(case, names=tuple(names))
    outcome = ENTRIES[case.kind][entry](assets, tmp, setup)
    return case, outcome, setup


# ---------------------------------------------------------------------------------------------
# The test: every (case, entry point) pair
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_assets(tmp_path_factory.mktemp("assets"))
    torch.set_num_threads(threads)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("case,entry", RUNS, ids=[f"{c.name}/{e}" for c, e in RUNS])
def test_bad_input(case, entry, assets, tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "MAX_DECODE_BYTES", BOUND)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        case, outcome, setup = run_case(case, entry, assets, tmp_path)
    except _Hang:
        pytest.fail(f"{case.name} through {entry} hung for {HANG_S} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    verdict = judge(case, outcome, entry, setup)
    assert verdict == "clear", (f"{verdict}: rc {outcome.rc}\nerror: {outcome.error[-2000:]}\n"
                                f"warnings: {outcome.warned}\nout: {outcome.out[-500:]}")
    if case.check is None and entry.startswith("cli"):                 # one line (and a hint), no traceback
        skipped = case.kind == "image"                                   # predict: 1 = files were skipped
        assert outcome.rc == (1 if skipped else 2), outcome.rc
        assert len(outcome.error.strip().splitlines()) <= 3, outcome.error
    if case.name == "pt-pickled-code":
        assert not (tmp_path / "PWNED").exists(), "unpickling ran code"


def test_the_official_nifti_release_reads_like_the_hdf5_files(assets, tmp_path):
    """load_dataset (so train, evaluate and cache) reads acdc/training/patientXXX/*.nii.gz as it
    reads the SSL4MIS HDF5 files: the same slices, and frame numbers 01 / 10 read as frame01 / frame02."""
    kw = dict(img_size=IMG, max_train=2, max_eval=1)
    h5, nifti = load_dataset("acdc", data_dir=assets.acdc, **kw), load_dataset("acdc", data_dir=assets.nifti, **kw)
    assert torch.equal(h5.train_images, nifti.train_images) and torch.equal(h5.train_labels, nifti.train_labels)
    for part in ("val", "test"):
        a, b = getattr(h5, part).volumes[0], getattr(nifti, part).volumes[0]
        assert a.name == b.name and np.array_equal(a.image, b.image) and np.array_equal(a.native_label, b.native_label)
    names = sorted(list_volumes(dataset_dir("acdc", assets.nifti)))
    assert names == sorted(f"{v.split('_')[0]}_frame{k:02d}" for v in ACDC_VOLS.values() for k in (1, 2))
    assert cli(*_train_args("acdc", assets.nifti, tmp_path / "run")).rc == 0
