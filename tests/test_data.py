"""Data: the real data files, splits, the uint8 cache, the device loader and the augmentations.

Real-data tests skip (saying why) only when no data root is set ($RWKVSEG_DATA); everything else runs on
the shipped ISIC samples and on generated data.
"""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rwkvseg.data import (AcdcAugment, AugmentParams, DataNotFoundError, GpuLoader, IsicAugment,
                          NORMALIZATIONS, acdc_cache_name, apply_augment, build_acdc_cache, cache_volumes,
                          find_data_root, find_isic_pairs, isic2018_cache_name, isic_samples, load_cache, load_isic,
                          read_h5, read_volume, resize_label, save_cache, samples_dir, split_ids, split_info,
                          synthetic_acdc, synthetic_acdc_volumes, synthetic_volume)
from rwkvseg.data import paths as paths_module
from rwkvseg.data.acdc import find_acdc_nifti, list_volumes, read_nifti_frame, volume_slice_ids
from rwkvseg.data.augment import REFLECTIONS
from rwkvseg.data.cache import SegCache
from rwkvseg.data.normalize import ISIC2018, UNIT
from rwkvseg.data.splits import (SPLITS_DIR, make_isic2018_7_3, random_split, read_split_file, seeded_order,
                                 split_sha256)

ROOT = find_data_root(required=False)
HAS_ISIC = ROOT is not None and (ROOT / "isic2018" / "images").is_dir()
HAS_ACDC = ROOT is not None and (ROOT / "acdc" / "data").is_dir()
WHERE = "set $RWKVSEG_DATA to the data root"


def needs_isic(test):
    """Marked `data` (CI's data leg selects it) and skipped without the ISIC 2018 files."""
    return pytest.mark.data(pytest.mark.skipif(not HAS_ISIC, reason=f"ISIC 2018 data not found ({WHERE})")(test))


def needs_acdc(test):
    """Marked `data` (CI's data leg selects it) and skipped without the ACDC files."""
    return pytest.mark.data(pytest.mark.skipif(not HAS_ACDC, reason=f"ACDC data not found ({WHERE})")(test))


# ---------------------------------------------------------------------------------------------
# Where the data live
# ---------------------------------------------------------------------------------------------

def test_data_root_argument_then_env(tmp_path, monkeypatch):
    (tmp_path / "isic2018").mkdir()
    assert find_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("RWKVSEG_DATA", str(tmp_path))
    assert find_data_root() == tmp_path


def test_data_root_missing_names_the_layout_and_what_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv("RWKVSEG_DATA", raising=False)
    monkeypatch.setattr(paths_module, "DEFAULT_ROOT", tmp_path / "rwkvseg-data")      # nothing searched beyond it
    assert find_data_root(required=False) is None
    with pytest.raises(DataNotFoundError, match="isic2018/images/ISIC_XXXXXXX.jpg") as err:
        find_data_root()
    assert "Lesion Boundary Segmentation" in str(err.value) and "Automated Cardiac Diagnosis" in str(err.value)
    (tmp_path / "rwkvseg-data" / "acdc").mkdir(parents=True)                 # the documented default folder
    assert find_data_root() == tmp_path / "rwkvseg-data"
    (tmp_path / "rwkvseg-data" / "acdc").rmdir()
    monkeypatch.setenv("RWKVSEG_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="RWKVSEG_DATA"):
        find_data_root()


# ---------------------------------------------------------------------------------------------
# ISIC 2018: the real files and the shipped samples
# ---------------------------------------------------------------------------------------------

@needs_isic
def test_isic2018_pairs_are_complete():
    scan = find_isic_pairs(ROOT / "isic2018")
    assert len(scan.pairs) == 2594
    assert scan.ids[0] == "ISIC_0000000" and scan.ids[-1] == "ISIC_0016072"
    assert (scan.images_dir.name, scan.masks_dir.name) == ("images", "masks")
    assert len(scan.skipped) == 0


@needs_isic
def test_load_isic_subset_shapes_and_values():
    ids = split_ids("isic2018", "7-3_seed0", "test")[:24]
    cache = load_isic(ROOT / "isic2018", ids=ids)
    assert cache.images.shape == (24, 3, 256, 256) and cache.images.dtype == np.uint8
    assert cache.masks.shape == (24, 256, 256) and set(np.unique(cache.masks)) == {0, 1}
    assert cache.ids == tuple(ids)
    raw = np.asarray(Image.open(ROOT / "isic2018" / "masks" / f"{ids[3]}_segmentation.png"))
    assert np.array_equal(cache.masks[3], raw == 255)
    assert (cache.masks.reshape(24, -1).mean(1) > 0).all()          # no empty mask in ISIC 2018


def test_samples_are_shipped_with_attribution():
    cache = isic_samples()
    assert 12 <= len(cache) <= 16
    assert cache.images.shape[1:] == (3, 256, 256)
    text = (samples_dir() / "ATTRIBUTION.md").read_text()
    for needle in ("CC BY-NC 4.0", "Codella", "Tschandl", "komour/diploma"):
        assert needle in text


@needs_isic
def test_samples_are_byte_identical_to_the_shared_files():
    manifest = dict(line.split()[::-1] for line in (ROOT / "isic2018" / "MANIFEST.sha256").read_text().splitlines())
    for path in samples_dir().iterdir():
        if path.suffix in (".jpg", ".png"):
            folder = "images" if path.suffix == ".jpg" else "masks"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest[f"{folder}/{path.name}"]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

def test_isic_split_sizes_disjoint_and_hashed():
    parts = {p: split_ids("isic2018", "7-3_seed0", p) for p in ("train", "test", "train-sub", "val")}
    assert {p: len(v) for p, v in parts.items()} == {"train": 1816, "test": 778, "train-sub": 1634, "val": 182}
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["train-sub"]) & set(parts["val"])
    assert set(parts["train-sub"]) | set(parts["val"]) == set(parts["train"])
    for part, ids in parts.items():
        file_bytes = (SPLITS_DIR / f"isic2018_7-3_seed0_{part}.txt").read_bytes()
        assert split_info("isic2018", "7-3_seed0", part)["sha256"] == hashlib.sha256(file_bytes).hexdigest()
    assert split_info("isic2018", None, "test")["split"] == "7-3_seed0"


@needs_isic
def test_isic_split_is_rebuilt_from_the_data():
    ids = find_isic_pairs(ROOT / "isic2018").ids
    rebuilt = make_isic2018_7_3(ids, seed=0)
    for part, expected in rebuilt.items():
        assert split_ids("isic2018", "7-3_seed0", part) == expected
    assert set(rebuilt["train"]) | set(rebuilt["test"]) == set(ids)


def test_isic_8_1_1_option():
    a = {p: split_ids("isic2018", "8-1-1_seed1", p) for p in ("train", "val", "test")}
    b = split_ids("isic2018", "8-1-1_seed2", "test")
    assert [len(v) for v in a.values()] == [2075, 259, 260]
    assert len(set().union(*a.values())) == 2594
    assert set(b) != set(a["test"])


def test_seeded_order_is_pinned():
    # sha256-based: this order must never change (committed lists depend on it)
    assert seeded_order(["a", "b", "c", "d"], seed=0) == sorted(
        ["a", "b", "c", "d"], key=lambda i: hashlib.sha256(f"0:{i}".encode()).hexdigest())
    assert random_split([str(i) for i in range(10)], (0.7, 0.3), seed=0)[1] == sorted(
        seeded_order([str(i) for i in range(10)], seed=0)[7:])


def _patients(names):
    return {n[:10] for n in names}


def test_acdc_splits_and_their_overlap():
    ssl = {p: split_ids("acdc", "ssl4mis", p) for p in ("train", "val", "test")}
    code = {p: split_ids("acdc", "authors", p) for p in ("train", "val", "test")}
    assert [len(v) for v in ssl.values()] == [140, 20, 40]
    assert [len(v) for v in code.values()] == [140, 20, 40]
    for split in (ssl, code):
        assert not _patients(split["train"]) & _patients(split["test"])
        assert not _patients(split["val"]) & _patients(split["test"])
        assert len(_patients(sum(split.values(), []))) == 100
    # the two ACDC test sets share only five patients
    shared = sorted(_patients(ssl["test"]) & _patients(code["test"]))
    assert shared == [f"patient{i:03d}" for i in (1, 7, 8, 11, 13)]
    assert code["test"][0] == "patient001_frame01" and code["val"][-1] == "patient030_frame02"


@needs_acdc
def test_acdc_lists_are_copies_of_the_shared_ones():
    for part in ("train", "val", "test"):
        assert (SPLITS_DIR / f"acdc_ssl4mis_{part}.list").read_bytes() == (ROOT / "acdc" / f"{part}.list").read_bytes()
    assert "byte-identical copy" in (SPLITS_DIR / "README.md").read_text()


def test_split_files_are_clean():
    for path in SPLITS_DIR.iterdir():
        if path.suffix in (".txt", ".list"):
            ids = read_split_file(path)
            assert path.read_text() == "".join(i + "\n" for i in ids)
            assert split_sha256(ids) == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# ACDC files
# ---------------------------------------------------------------------------------------------

@needs_acdc
def test_read_acdc_volume_and_slice():
    image, label = read_h5(ROOT / "acdc" / "data" / "patient001_frame01.h5")
    assert image.shape == label.shape == (10, 256, 216) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and set(np.unique(label)) <= {0, 1, 2, 3}
    name = split_ids("acdc", "ssl4mis", "train")[0]
    files = list_volumes(ROOT / "acdc")[name]
    volume, vlabel = read_volume(ROOT / "acdc", name)
    assert volume.shape[0] == len(files) > 1
    first, first_label = read_h5(files[0])
    assert np.array_equal(volume[0], first) and np.array_equal(vlabel[0], first_label)


@needs_acdc
def test_acdc_cache_round_trip(tmp_path):
    names = ["patient001_frame01", split_ids("acdc", "ssl4mis", "train")[0]]   # a volume file, a sliced one
    cache = build_acdc_cache(ROOT / "acdc", volumes=names)
    report = save_cache(cache, tmp_path / "acdc.npz", compression="bzip2")
    back = load_cache(report.path)
    assert np.array_equal(back.images, cache.images) and np.array_equal(back.masks, cache.masks)
    assert back.ids == cache.ids and back.meta["sha256"] == report.sha256
    assert back.images.shape[1:] == (1, 224, 224) and back.masks.shape[1:] == (224, 224)
    q = back.meta["quantization"]
    assert q["max_abs_error_uint8"] <= 0.5 / 255 + 1e-6          # uint8: half a step at most
    assert q["clamped_fraction"] < 0.05
    for vol in cache_volumes(back, names):
        _, native = read_volume(ROOT / "acdc", vol.name)
        assert np.array_equal(vol.native_label, native)
        assert np.array_equal(vol.label, resize_label(native, (224, 224)).numpy())
        assert vol.image.shape == (native.shape[0], 1, 224, 224)
    assert len(volume_slice_ids(back, names)) == len(back)


def test_nifti_layout(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    patient = tmp_path / "training" / "patient007"
    patient.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 400, (12, 10, 3)).astype(np.float32)            # NIfTI order (x, y, z)
    gt = rng.integers(0, 4, (12, 10, 3)).astype(np.uint8)
    affine = np.diag([1.5, 1.25, 10.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(xyz, affine), patient / "patient007_frame01.nii.gz")
    nibabel.save(nibabel.Nifti1Image(gt, affine), patient / "patient007_frame01_gt.nii.gz")
    nibabel.save(nibabel.Nifti1Image(xyz[..., None], np.eye(4)), patient / "patient007_4d.nii.gz")
    (patient / "Info.cfg").write_text("ED: 1\n")
    frames = find_acdc_nifti(tmp_path)
    assert [f[0] for f in frames] == ["patient007_frame01"]
    image, label, spacing = read_nifti_frame(*frames[0][1:])
    assert image.shape == label.shape == (3, 10, 12)                     # (D, H, W)
    assert np.array_equal(label, gt.transpose(2, 1, 0))
    assert image.min() == 0 and image.max() == 1
    assert spacing == (10.0, 1.25, 1.5)


# ---------------------------------------------------------------------------------------------
# The cache file
# ---------------------------------------------------------------------------------------------

def test_cache_round_trip_and_take(tmp_path):
    cache = isic_samples()
    report = save_cache(cache, tmp_path / "s.npz")
    assert report.size_bytes == os.path.getsize(tmp_path / "s.npz") and "MiB" in str(report)
    back = load_cache(tmp_path / "s.npz")
    assert np.array_equal(back.images, cache.images) and np.array_equal(back.masks, cache.masks)
    assert back.ids == cache.ids and back.meta["dataset"] == "isic2018_samples"
    again = save_cache(back, tmp_path / "t.npz")                         # loaded meta: same content
    assert again.sha256 == report.sha256
    part = back.take([cache.ids[3], cache.ids[0]])
    assert np.array_equal(part.images[0], cache.images[3])
    with pytest.raises(KeyError, match="not in this cache"):
        back.take(["ISIC_9999999"])


def test_cache_names_are_the_shipped_ones():
    """Caches built earlier (and the dev scripts that carry them) are found by these exact names."""
    assert isic2018_cache_name((256, 256)) == isic2018_cache_name() == "isic2018_256x256.npz"
    assert isic2018_cache_name((192, 256)) == "isic2018_192x256.npz"
    assert acdc_cache_name(224) == acdc_cache_name() == "acdc_224.npz"


def test_isic2018_cache_rebuilds_when_source_changes(tmp_path, capsys):
    from rwkvseg.data import isic2018_cache

    root = tmp_path / "data"
    (root / "isic2018").mkdir(parents=True)
    for pair in find_isic_pairs(samples_dir()).pairs[:3]:
        for path in (pair.image, pair.mask):
            (root / "isic2018" / path.name).write_bytes(path.read_bytes())
    first = isic2018_cache(root, cache_dir=tmp_path / "cache")
    assert "wrote isic2018_256x256.npz" in capsys.readouterr().out
    second = isic2018_cache(root, cache_dir=tmp_path / "cache")
    assert capsys.readouterr().out == "" and second.meta["sha256"] == first.meta["sha256"]
    victim = next((root / "isic2018").glob("*.jpg"))
    os.utime(victim, ns=(1, 1))
    isic2018_cache(root, cache_dir=tmp_path / "cache")
    assert "source data changed" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Synthetic ACDC-like slices
# ---------------------------------------------------------------------------------------------

def test_synthetic_slices_look_like_acdc():
    a = synthetic_acdc(n_slices=12, size=96, seed=3)
    b = synthetic_acdc(n_slices=12, size=96, seed=3)
    assert np.array_equal(a.images, b.images) and a.images.shape == (12, 1, 96, 96)
    assert set(np.unique(a.masks)) == {0, 1, 2, 3}
    lv = a.masks == 3
    for axis, shift in ((1, 1), (1, -1), (2, 1), (2, -1)):                 # LV is walled in by Myo
        neighbours = np.roll(a.masks, shift, axis=axis)[lv]
        assert set(np.unique(neighbours)) <= {2, 3}
    assert not np.array_equal(a.images, synthetic_acdc(n_slices=12, size=96, seed=4).images)


def test_synthetic_volume_shrinks_to_the_apex():
    image, label = synthetic_volume(np.random.default_rng(0), depth=6, size=96)
    assert image.shape == label.shape == (6, 96, 96) and image.min() == 0 and image.max() == 1
    areas = (label > 0).reshape(6, -1).sum(1)
    assert areas[0] > areas[-1] and 1 not in label[-1]
    volumes = synthetic_acdc_volumes(2, depth=4, size=64, seed=1)
    assert [v.name for v in volumes] == ["synthetic_volume_0", "synthetic_volume_1"]
    assert volumes[0].image.shape == (4, 1, 64, 64) and volumes[0].image.dtype == np.uint8
    assert np.array_equal(volumes[0].label, volumes[0].native_label)


# ---------------------------------------------------------------------------------------------
# The loader on the device (here: the CPU)
# ---------------------------------------------------------------------------------------------

def _indexed(n=20, size=8):
    """Images whose first pixel is their row number, masks = row number mod 2."""
    images = np.zeros((n, 3, size, size), np.uint8)
    images[:, :, 0, 0] = np.arange(n)[:, None]
    masks = np.repeat((np.arange(n) % 2).astype(np.uint8)[:, None, None], size, 1).repeat(size, 2)
    return images, masks


def _rows(x):
    return torch.round(x[:, 0, 0, 0] * 255).long().tolist()


def test_loader_epoch_visits_every_sample_once():
    images, masks = _indexed()
    loader = GpuLoader(images=images, masks=masks, batch_size=6, device="cpu", normalization=UNIT, seed=0)
    assert len(loader) == 4
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(y[:, 0, 0], torch.tensor(_rows(x)) % 2)
        seen += _rows(x)
    assert sorted(seen) == list(range(20)) and seen != list(range(20))
    drop = GpuLoader(images=images, masks=masks, batch_size=6, device="cpu", normalization=UNIT, drop_last=True)
    assert len(drop) == 3 and sum(x.shape[0] for x, _ in drop) == 18


def test_loader_is_seeded_and_epochs_differ():
    images, masks = _indexed()
    kw = dict(images=images, masks=masks, batch_size=5, device="cpu", normalization=UNIT, augment=IsicAugment())
    a, b = GpuLoader(seed=1, **kw), GpuLoader(seed=1, **kw)
    first_a, first_b = [_rows(x) for x, _ in a], [_rows(x) for x, _ in b]
    assert first_a == first_b
    assert [_rows(x) for x, _ in a] != first_a                                   # epoch 1 differs
    assert [_rows(x) for x, _ in b.iter_epoch(1)] == [_rows(x) for x, _ in a.iter_epoch(1)]


def test_loader_ranks_split_the_global_batch():
    cache = isic_samples()
    kw = dict(images=cache.images, masks=cache.masks, batch_size=8, device="cpu",
              normalization=ISIC2018, augment=IsicAugment(), seed=5, drop_last=True)
    whole = list(GpuLoader(**kw))
    parts = [list(GpuLoader(rank=r, world_size=2, **kw)) for r in (0, 1)]
    for k, (x, y) in enumerate(whole):
        assert torch.allclose(torch.cat([parts[0][k][0], parts[1][k][0]]), x, atol=1e-5)
        assert torch.equal(torch.cat([parts[0][k][1], parts[1][k][1]]), y)
    with pytest.raises(ValueError, match="drop_last"):
        GpuLoader(**{**kw, "drop_last": False}, rank=0, world_size=2)


def test_loader_normalises_with_the_documented_statistics():
    cache = isic_samples()
    loader = GpuLoader(images=cache.images, masks=cache.masks, batch_size=16, device="cpu",
                       normalization=ISIC2018, shuffle=False)
    x, y = next(iter(loader))
    mean = torch.tensor(ISIC2018.mean)[:, None, None]
    std = torch.tensor(ISIC2018.std)[:, None, None]
    assert torch.allclose(x * std + mean, torch.from_numpy(cache.images).float() / 255, atol=1e-5)
    assert NORMALIZATIONS["acdc"] is UNIT and ISIC2018.to_dict()["source"]


@needs_isic
def test_isic_normalisation_constants_match_the_train_split():
    from rwkvseg.data.stats import channel_mean_std

    train = load_isic(ROOT / "isic2018", ids=split_ids("isic2018", "7-3_seed0", "train")[::4])
    mean, std = channel_mean_std(train.images)
    # every 4th training image: within 0.01 of the constants computed on all 1816
    assert np.allclose(mean, ISIC2018.mean, atol=0.01) and np.allclose(std, ISIC2018.std, atol=0.01)


# ---------------------------------------------------------------------------------------------
# Augmentations
# ---------------------------------------------------------------------------------------------

def _batch(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n, size, size), generator=g)


def _params(n, **flags):
    base = AugmentParams.identity(n)
    return AugmentParams(**{**base.__dict__, **flags})


def test_flips_and_transpose_twice_are_identity():
    x, y = _batch()
    g = torch.Generator().manual_seed(0)
    p = _params(6, transpose=torch.rand(6, generator=g) < 0.5, hflip=torch.rand(6, generator=g) < 0.5,
                vflip=torch.rand(6, generator=g) < 0.5)
    for flags in ("hflip", "vflip", "transpose"):
        q = _params(6, **{flags: getattr(p, flags)})
        x2, y2 = apply_augment(*apply_augment(x, y, q), q)
        assert torch.equal(x2, x) and torch.equal(y2, y)


@pytest.mark.parametrize("k,axis", sorted(REFLECTIONS))
def test_rot_flip_table_matches_numpy(k, axis):
    x, y = _batch(n=1)
    t, h, v = REFLECTIONS[(k, axis)]
    p = _params(1, transpose=torch.tensor([t]), hflip=torch.tensor([h]), vflip=torch.tensor([v]))
    xa, ya = apply_augment(x, y, p)
    expect = np.flip(np.rot90(y[0].numpy(), k), axis)
    assert np.array_equal(ya[0].numpy(), expect)
    assert np.array_equal(xa[0, 1].numpy(), np.flip(np.rot90(x[0, 1].numpy(), k), axis))


def test_rotation_by_90_degrees_is_counter_clockwise_rot90():
    x, y = _batch(n=2)
    p = _params(2, rotate=torch.tensor([True, True]), angle=torch.tensor([90.0, -90.0]))
    xa, ya = apply_augment(x, y, p)
    assert torch.allclose(xa[0], torch.rot90(x[0], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.equal(ya[1], torch.rot90(y[1], -1, dims=(-2, -1)))


@pytest.mark.parametrize("recipe", [IsicAugment(), AcdcAugment()], ids=["isic", "acdc"])
def test_rotation_keeps_labels_and_moves_image_and_mask_together(recipe):
    g = torch.Generator().manual_seed(0)
    cache = synthetic_acdc(n_slices=8, size=64, seed=0)
    y = torch.from_numpy(cache.masks).long()
    x = (y[:, None].float() / 3).repeat(1, 3, 1, 1)                     # the image shows its label
    for _ in range(3):
        p = recipe.draw(8, g)
        p = AugmentParams(p.transpose, p.hflip, p.vflip, torch.ones(8, dtype=torch.bool), p.angle)
        xa, ya = apply_augment(x, y, p)
        assert set(ya.unique().tolist()) <= {0, 1, 2, 3}
        agree = (torch.round(xa[:, 0] * 3).long() == ya).float().mean()
        assert agree > 0.97                                             # only edge pixels blend


def test_isic_draw_matches_the_recipe():
    p = IsicAugment().draw(20000, torch.Generator().manual_seed(0))
    for flag in (p.hflip, p.vflip, p.rotate):
        assert abs(flag.float().mean() - 0.5) < 0.02
    assert not p.transpose.any() and 0 <= p.angle.min() and p.angle.max() < 360


def test_acdc_draw_matches_the_recipe():
    p = AcdcAugment().draw(20000, torch.Generator().manual_seed(0))
    parity = p.transpose.long() + p.hflip.long() + p.vflip.long()
    rot_flip = parity > 0
    assert torch.all(parity[rot_flip] % 2 == 1)                            # always a reflection
    assert abs(rot_flip.float().mean() - 0.5) < 0.02
    assert abs(p.rotate.float().mean() - 0.25) < 0.02 and not (p.rotate & rot_flip).any()
    angles = p.angle[p.rotate]
    assert torch.equal(angles, angles.round()) and angles.min() == -20 and angles.max() == 19


def test_augmentation_is_the_same_for_a_seed():
    x, y = _batch(n=8, size=32)
    a = apply_augment(x, y, IsicAugment().draw(8, torch.Generator().manual_seed(9)))
    b = apply_augment(x, y, IsicAugment().draw(8, torch.Generator().manual_seed(9)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hf_imagefolder_matches_the_files(tmp_path):
    pytest.importorskip("datasets")
    from rwkvseg.data import export_imagefolder, load_hf

    scan = find_isic_pairs(samples_dir())
    export_imagefolder(scan.pairs[:4], tmp_path / "folder")
    via_hf = load_hf(tmp_path / "folder", cache_dir=tmp_path / "hf")
    direct = load_isic(scan, ids=scan.ids[:4])
    assert via_hf.ids == direct.ids
    assert np.array_equal(via_hf.images, direct.images) and np.array_equal(via_hf.masks, direct.masks)


def test_hf_hub_name_offline_says_so(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    from rwkvseg.data import load_hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="offline"):
        load_hf("nobody/no-such-isic-dataset", cache_dir=tmp_path / "hf")


def test_segcache_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        SegCache(images=np.zeros((2, 3, 4, 4), np.float32), masks=np.zeros((2, 4, 4), np.uint8), ids=("a", "b"))
    with pytest.raises(ValueError, match="unique"):
        SegCache(images=np.zeros((2, 3, 4, 4), np.uint8), masks=np.zeros((2, 4, 4), np.uint8), ids=("a", "a"))


def test_samples_dir_is_inside_the_package():
    assert samples_dir().is_dir() and Path(samples_dir()).parts[-3:] == ("rwkvseg", "samples", "isic2018")
