"""A generated corpus of bad inputs: each must raise an error naming the file and the problem,
and `on_error="skip"` must count and report what it left out (never skip silently). The checked
readers (rwkvseg.data.files) and their bounds. tests/test_bad_inputs.py runs these and more through
every entry point."""
import os
import shutil
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from rwkvseg.data import files
from rwkvseg.data import (DataError, DataNotFoundError, DataSkipWarning, find_isic_pairs, load_cache, load_isic,
                          read_h5, read_volume, samples_dir, save_cache)
from rwkvseg.data.acdc import find_acdc_nifti, list_volumes
from rwkvseg.data.isic import isic_samples
from rwkvseg.data.splits import read_split_file

GOOD = find_isic_pairs(samples_dir()).pairs[:3]


def _good_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pair in GOOD:
        shutil.copyfile(pair.image, folder / pair.image.name)
        shutil.copyfile(pair.mask, folder / pair.mask.name)
    return folder


def _png(array: np.ndarray, path: Path, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path)


# Each ISIC case: (id, a function that spoils a good folder and returns the bad file's name, the
# message expected). The bad pair uses the id ISIC_0099999.
def _truncated_jpeg(folder):
    data = GOOD[0].image.read_bytes()
    (folder / "ISIC_0099999.jpg").write_bytes(data[: len(data) // 2])
    shutil.copyfile(GOOD[0].mask, folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999.jpg"


def _garbage_jpeg(folder):
    (folder / "ISIC_0099999.jpg").write_bytes(b"this is not a JPEG at all" * 10)
    shutil.copyfile(GOOD[0].mask, folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999.jpg"


def _mask_other_size(folder):
    shutil.copyfile(GOOD[0].image, folder / "ISIC_0099999.jpg")
    _png(np.zeros((128, 100), np.uint8), folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999_segmentation.png"


def _mask_values(folder):
    shutil.copyfile(GOOD[0].image, folder / "ISIC_0099999.jpg")
    mask = np.zeros((256, 256), np.uint8)
    mask[10:20, 10:20] = 255
    mask[20:22, 10:20] = 128                                   # a bilinear-resized edge
    _png(mask, folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999_segmentation.png"


def _mask_rgb(folder):
    shutil.copyfile(GOOD[0].image, folder / "ISIC_0099999.jpg")
    _png(np.zeros((256, 256, 3), np.uint8), folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999_segmentation.png"


def _image_without_mask(folder):
    shutil.copyfile(GOOD[0].image, folder / "ISIC_0099999.jpg")
    return "ISIC_0099999.jpg"


def _mask_without_image(folder):
    shutil.copyfile(GOOD[0].mask, folder / "ISIC_0099999_segmentation.png")
    return "ISIC_0099999_segmentation.png"


ISIC_CASES = [
    ("truncated-jpeg", _truncated_jpeg, "cannot decode the image"),
    ("garbage-jpeg", _garbage_jpeg, "cannot decode the image"),
    ("mask-other-size", _mask_other_size, "mask is 100x128"),
    ("mask-values-outside-0-255", _mask_values, r"mask values \{128\} outside \{0, 255\}"),
    ("mask-rgb", _mask_rgb, "mode 'RGB'"),
    ("image-without-mask", _image_without_mask, "image has no mask"),
    ("mask-without-image", _mask_without_image, "mask has no image"),
]


@pytest.mark.parametrize("spoil,message", [c[1:] for c in ISIC_CASES], ids=[c[0] for c in ISIC_CASES])
def test_bad_isic_pair_raises_naming_file_and_problem(tmp_path, spoil, message):
    folder = _good_folder(tmp_path / "isic")
    bad_name = spoil(folder)
    with pytest.raises(DataError, match=message) as info:
        load_isic(folder)
    assert bad_name in str(info.value) and info.value.path.endswith(bad_name)


def test_skip_counts_and_reports_every_bad_pair(tmp_path):
    folder = tmp_path / "isic"
    for k, (name, spoil, _) in enumerate(ISIC_CASES):                   # one sub-corpus per case
        sub = _good_folder(tmp_path / f"case{k}")
        spoil(sub)
        for path in sub.iterdir():
            if "0099999" in path.name:
                folder.mkdir(exist_ok=True)
                shutil.move(path, folder / path.name.replace("0099999", f"00999{k:02d}"))
    _good_folder(folder)
    with pytest.warns(DataSkipWarning, match=f"skipped {len(ISIC_CASES)} item"):
        cache = load_isic(folder, on_error="skip")
    assert len(cache) == len(GOOD)
    assert len(cache.meta["skipped"]) == len(ISIC_CASES)
    assert all("ISIC_00999" in path for path, _ in cache.meta["skipped"])


def test_unknown_on_error_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_isic(_good_folder(tmp_path / "isic"), on_error="ignore")


def test_images_of_different_sizes_need_a_size(tmp_path):
    folder = _good_folder(tmp_path / "isic")
    Image.new("RGB", (300, 200)).save(folder / "ISIC_0099999.jpg")
    _png(np.zeros((200, 300), np.uint8), folder / "ISIC_0099999_segmentation.png")
    with pytest.raises(DataError, match="different sizes.*size=") as info:
        load_isic(folder)
    assert str(folder) in str(info.value)
    cache = load_isic(folder, size=(64, 64))
    assert cache.images.shape == (4, 3, 64, 64) and set(np.unique(cache.masks)) <= {0, 1}


@pytest.mark.parametrize("layout", ["empty", "text-only", "missing"])
def test_wrong_isic_folder(tmp_path, layout):
    folder = tmp_path / "wrong"
    if layout != "missing":
        folder.mkdir()
    if layout == "text-only":
        (folder / "notes.txt").write_text("no images here")
    with pytest.raises(DataNotFoundError, match="ISIC_XXXXXXX.jpg") as info:
        find_isic_pairs(folder)
    assert str(folder) in str(info.value)


def test_isic2017_layout_needs_a_split(tmp_path):
    for split in ("Training", "Validation"):
        images = tmp_path / f"ISIC-2017_{split}_Data"
        masks = tmp_path / f"ISIC-2017_{split}_Part1_GroundTruth"
        _good_folder(images)
        masks.mkdir()
        for pair in GOOD:
            shutil.move(images / pair.mask.name, masks / pair.mask.name)
            _png(np.zeros((4, 4), np.uint8), images / pair.mask.name.replace("segmentation", "superpixels"))
    with pytest.raises(DataError, match='split="Training"'):
        find_isic_pairs(tmp_path)
    scan = find_isic_pairs(tmp_path, split="Training")
    assert scan.images_dir.name == "ISIC-2017_Training_Data" and len(scan.pairs) == len(GOOD)


def test_isic2018_official_folder_names(tmp_path):
    images = _good_folder(tmp_path / "ISIC2018_Task1-2_Training_Input")
    masks = tmp_path / "ISIC2018_Task1_Training_GroundTruth"
    masks.mkdir()
    for pair in GOOD:
        shutil.move(images / pair.mask.name, masks / pair.mask.name)
    assert len(load_isic(tmp_path)) == len(GOOD)


# ---------------------------------------------------------------------------------------------
# ACDC
# ---------------------------------------------------------------------------------------------

def _h5(path: Path, image, label=None, *, keys=("image", "label")) -> Path:
    with h5py.File(path, "w") as f:
        if "image" in keys:
            f["image"] = image
        if "label" in keys:
            f["label"] = label
    return path


def _volume(shape=(3, 16, 16)):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, shape).astype(np.float32), rng.integers(0, 4, shape).astype(np.uint8)


def _acdc_case(tmp_path, case):
    image, label = _volume()
    path = tmp_path / "patient001_frame01.h5"
    if case == "label-value-5":
        label[0, 0, 0] = 5
    elif case == "nan":
        image[1, 2, 3] = np.nan
    elif case == "empty":
        image, label = image[:0], label[:0]
    elif case == "constant":
        image[:] = 0.5
    elif case == "range":
        image *= 2
    elif case == "shape":
        label = label[:, :8]
    elif case == "float-label":
        label = label.astype(np.float32)
    elif case == "no-label":
        return _h5(path, image, keys=("image",))
    elif case == "not-hdf5":
        path.write_text("not an HDF5 file")
        return path
    return _h5(path, image, label)


ACDC_CASES = [
    ("label-value-5", r"label values \[5\] outside \{0, 1, 2, 3\}"),
    ("nan", "1 NaN or infinite"),
    ("empty", "empty volume"),
    ("constant", "constant"),
    ("range", r"expected \[0, 1\]"),
    ("shape", "differs from label shape"),
    ("float-label", "integer type"),
    ("no-label", r"no dataset \['label'\]"),
    ("not-hdf5", "not a readable HDF5"),
]


@pytest.mark.parametrize("case,message", ACDC_CASES, ids=[c[0] for c in ACDC_CASES])
def test_bad_acdc_file_raises_naming_file_and_problem(tmp_path, case, message):
    path = _acdc_case(tmp_path, case)
    with pytest.raises(DataError, match=message) as info:
        read_h5(path)
    assert info.value.path == str(path)


def test_acdc_missing_slice(tmp_path):
    image, label = _volume((1, 16, 16))
    for k in (1, 3):
        _h5(tmp_path / f"patient005_frame02_slice_{k}.h5", image[0], label[0])
    with pytest.raises(DataError, match="missing slice 2 of volume patient005_frame02") as info:
        read_volume(tmp_path, "patient005_frame02")
    assert info.value.path.endswith("patient005_frame02_slice_2.h5")


def test_acdc_slices_of_different_shapes(tmp_path):
    image, label = _volume((1, 16, 16))
    _h5(tmp_path / "patient005_frame02_slice_1.h5", image[0], label[0])
    _h5(tmp_path / "patient005_frame02_slice_2.h5", image[0, :8], label[0, :8])
    with pytest.raises(DataError, match="differ in shape"):
        read_volume(tmp_path, "patient005_frame02")


def test_wrong_acdc_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing")
    with pytest.raises(DataNotFoundError, match="no ACDC .h5 file") as info:
        list_volumes(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        list_volumes(tmp_path / "missing")
    _h5(tmp_path / "patient001_frame01.h5", *_volume())
    with pytest.raises(DataNotFoundError, match="no such volume"):
        read_volume(tmp_path, "patient002_frame01")


def test_nifti_frame_without_ground_truth(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    patient = tmp_path / "patient003"
    patient.mkdir()
    nibabel.save(nibabel.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4)), patient / "patient003_frame01.nii.gz")
    with pytest.raises(DataError, match="no ground truth") as info:
        find_acdc_nifti(tmp_path)
    assert info.value.path.endswith("patient003_frame01.nii.gz")


# ---------------------------------------------------------------------------------------------
# Cache files, split lists
# ---------------------------------------------------------------------------------------------

def test_edited_cache_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    save_cache(isic_samples(), path)
    edited = tmp_path / "edited.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:  # valid zip, other pixels
        for name in src.namelist():
            data = src.read(name)
            if name == "images.npy":
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            dst.writestr(name, data)
    with pytest.raises(DataError, match="content hash mismatch") as info:
        load_cache(edited)
    assert str(edited) in str(info.value)


def test_truncated_cache_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    save_cache(isic_samples(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="not a readable cache file"):
        load_cache(path)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_cache(tmp_path / "none.npz")


@pytest.mark.parametrize("text,message", [("a\n\nb\n", "blank line"), ("a\nb\na\n", "duplicate"),
                                          ("a \nb\n", "stray spaces")], ids=["blank", "duplicate", "spaces"])
def test_bad_split_list(tmp_path, text, message):
    path = tmp_path / "split.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_split_file(path)
    assert info.value.path == str(path)


def test_error_message_teaches():
    err = DataError("/x/ISIC_1.png", "mask values {3} outside {0, 255}", hint="resize masks with nearest neighbour")
    assert str(err) == "/x/ISIC_1.png: mask values {3} outside {0, 255}. resize masks with nearest neighbour"
    assert isinstance(DataNotFoundError("/x", "gone"), FileNotFoundError)


# ---------------------------------------------------------------------------------------------
# The checked readers (rwkvseg.data.files): special files, time and memory bounds, bit depths
# ---------------------------------------------------------------------------------------------

def test_special_files_are_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "ISIC_0000001.jpg"
    os.mkfifo(fifo)                                            # opening it for reading would wait forever
    with pytest.raises(DataError, match=r"named pipe \(FIFO\), not a regular file") as info:
        files.read_image(fifo)
    assert info.value.path == str(fifo)
    with pytest.raises(DataError, match="character device"):
        files.read_bytes("/dev/zero")                          # would never end
    with pytest.raises(DataError, match="a directory"):
        files.read_bytes(tmp_path)
    with pytest.raises(DataNotFoundError, match="no such file"):
        files.read_bytes(tmp_path / "missing")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \(0 bytes\)"):
        files.read_image(tmp_path / "empty.png")


def test_a_read_that_does_not_finish_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "slow.h5"
    path.write_bytes(b"x" * 10)
    stall = threading.Event()
    monkeypatch.setattr(files, "_read_regular", lambda p, what: stall.wait(5))   # a stalled network drive
    with pytest.raises(DataError, match=r"did not finish within 0\.2 s") as info:
        files.read_bytes(path, "HDF5 file", timeout=0.2)
    stall.set()
    assert info.value.path == str(path)


def test_16_bit_images_are_scaled_and_said_so(tmp_path):
    grey = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    read = files.read_image(tmp_path / "g.png", mode="L")
    assert np.asarray(read.image).tolist() == [[0, 1, 128, 255]]
    assert "16-bit grey scaled to 8 bits" in read.notes[0]
    assert files.read_image(tmp_path / "g.png").image.mode == "I;16"        # mode=None: as stored (masks)
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="32-bit pixels"):
        files.read_image(tmp_path / "f.tif", mode="RGB")


def test_huge_images_are_decoded_within_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_DECODE_BYTES", 64 * 64 * 4)             # a 64 x 64 RGB image
    Image.fromarray(np.full((256, 200, 3), 90, np.uint8)).save(tmp_path / "big.jpg")
    read = files.read_image(tmp_path / "big.jpg", mode="RGB")
    assert read.size == (200, 256) and read.image.size == (50, 64)          # libjpeg at 1/4 scale
    assert "decoded at 1/4 scale" in read.notes[0]
    Image.fromarray(np.full((256, 200, 3), 90, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"200x256 .*above the 0.0156 MiB decode bound"):
        files.read_image(tmp_path / "big.png", mode="RGB")


def test_ids_that_differ_in_case_or_extension_are_skipped_together(tmp_path):
    folder = _good_folder(tmp_path / "isic")
    other = GOOD[0].image.name.lower().replace(".jpg", ".png")                # the same id
    shutil.copyfile(GOOD[0].image, folder / other)
    with pytest.raises(DataError, match=f"two files for the id {GOOD[0].id}") as info:
        load_isic(folder)
    assert GOOD[0].image.name in str(info.value) and other in str(info.value)
    with pytest.warns(DataSkipWarning, match="two files"):
        cache = load_isic(folder, on_error="skip")
    assert GOOD[0].id not in cache.ids and len(cache) == len(GOOD) - 1
