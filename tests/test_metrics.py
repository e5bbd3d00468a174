"""Metrics against hand-computed values and independent implementations (MONAI, brute force)."""
import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from rwkvseg.metrics import (BinaryMetrics, VolumeMetrics, binary_confusion, binary_metrics, case_scores,
                             confusion_matrix, dice_per_class, hd95, surface, surface_distances)


def _blobs(shape, seed, threshold=0.6, sigma=2.0):
    """Random smooth boolean masks: thresholded blurred noise (several components, holes)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field > threshold * field.std()


# ---------------------------------------------------------------------------------------------
# Binary conventions, by hand
# ---------------------------------------------------------------------------------------------

def test_binary_conventions_by_hand():
    pred = torch.zeros(2, 4, 4, dtype=torch.bool)
    target = torch.zeros(2, 4, 4, dtype=torch.bool)
    pred[0, :2, :2] = True                        # image 0: TP 4, FP 0, FN 4, TN 8
    target[0, :2, :] = True
    pred[1, 3, 3] = True                          # image 1: TP 0, FP 1, FN 1, TN 14
    target[1, 0, 0] = True
    assert binary_confusion(pred, target).tolist() == [[4, 0, 4, 8], [0, 1, 1, 14]]
    m = binary_metrics(pred, target)
    assert m["pooled"]["dsc"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 5))
    assert m["pooled"]["iou"] == pytest.approx(4 / (4 + 1 + 5))
    assert m["pooled"]["acc"] == pytest.approx((4 + 22) / 32)
    assert m["per_image"]["dsc"] == pytest.approx((8 / 12 + 0) / 2)
    assert m["per_image"]["iou"] == pytest.approx((4 / 8 + 0) / 2)
    assert m["per_image"]["acc"] == pytest.approx((12 / 16 + 14 / 16) / 2)


def test_per_image_empty_rules():
    pred = torch.zeros(3, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 4, 4, dtype=torch.bool)
    pred[1, 0, 0] = True                          # 1: prediction only
    target[2, 0, 0] = True                        # 2: ground truth only
    m = BinaryMetrics()
    m.update(pred, target)
    out = m.compute()
    assert out["per_image"]["dsc"] == pytest.approx(1 / 3)      # both empty 1, one empty 0
    assert out["per_image"]["iou"] == pytest.approx(1 / 3)
    assert out["n_empty_target"] == 2 and out["n_empty_pred"] == 2


def test_threshold_and_batching_do_not_change_pooled_or_per_image():
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(10, 16, 16, generator=g)
    target = torch.rand(10, 16, 16, generator=g) > 0.6
    one = BinaryMetrics()
    one.update(prob, target)
    many = BinaryMetrics()
    for k in range(0, 10, 3):
        many.update(prob[k:k + 3], target[k:k + 3].long())
    a, b = one.compute(), many.compute()
    assert a["pooled"] == b["pooled"] and a["per_image"] == pytest.approx(b["per_image"])
    assert a["per_batch"] != b["per_batch"]                      # the U-KAN convention depends on batching
    assert a == {**a, **binary_metrics(prob >= 0.5, target)}    # >= 0.5 is lesion
    edge = BinaryMetrics()
    edge.update(torch.full((1, 2, 2), 0.5), torch.ones(1, 2, 2))
    assert edge.compute()["pooled"]["dsc"] == 1.0


def test_per_batch_ukan_convention():
    pred = torch.zeros(2, 2, 2, dtype=torch.bool)
    target = torch.zeros(2, 2, 2, dtype=torch.bool)
    pred[0, 0] = True                                            # intersection 2, union 4
    target[0] = True
    m = BinaryMetrics()
    m.update(pred, target)
    iou = (2 + 1e-5) / (4 + 1e-5)
    assert m.compute()["per_batch"]["iou"] == pytest.approx(iou)
    assert m.compute()["per_batch"]["dsc"] == pytest.approx(2 * iou / (1 + iou))


def test_binary_dice_matches_monai():
    from monai.metrics import DiceMetric

    pred = torch.from_numpy(np.stack([_blobs((32, 32), s) for s in range(6)]))
    target = torch.from_numpy(np.stack([_blobs((32, 32), s + 100) for s in range(6)]))
    pred[0] = False                                              # one empty prediction
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metric(pred[:, None].float(), target[:, None].float())[:, 0]
    m = BinaryMetrics()
    m.update(pred, target)
    assert m.compute()["per_image"]["dsc"] == pytest.approx(float(ref.mean()), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Surfaces and HD95
# ---------------------------------------------------------------------------------------------

def test_surface_by_hand():
    square = np.zeros((5, 5), bool)
    square[1:4, 1:4] = True
    expected = square.copy()
    expected[2, 2] = False                                       # the face-connected erosion keeps the centre
    assert np.array_equal(surface(square), expected)
    full = surface(np.ones((3, 3), bool))                        # outside the array is background
    assert full.sum() == 8 and not full[1, 1]


def _face_surface(mask):
    """Independent surface: a voxel with a face neighbour outside the mask (or the array)."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (1, -1):
            inner &= np.roll(padded, shift, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return mask & ~inner


def _hd95_brute_force(a, b):
    pa, pb = np.argwhere(_face_surface(a)), np.argwhere(_face_surface(b))
    d = cdist(pa, pb)
    return float(np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)), float(max(d.min(1).max(), d.min(0).max()))


@pytest.mark.parametrize("shape,seed", [((40, 40), 0), ((40, 40), 1), ((64, 48), 2), ((6, 30, 30), 3),
                                        ((5, 24, 40), 4)], ids=["2d-a", "2d-b", "2d-rect", "3d-a", "3d-b"])
def test_hd95_matches_brute_force(shape, seed):
    a, b = _blobs(shape, seed), _blobs(shape, seed + 50)
    assert np.array_equal(surface(a), _face_surface(a))
    expected95, expected_max = _hd95_brute_force(a, b)
    assert hd95(a, b) == pytest.approx(expected95, abs=1e-9)
    d_ab, d_ba = surface_distances(a, b)
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(expected_max)


def test_hausdorff_max_matches_monai():
    from monai.metrics import compute_hausdorff_distance

    for seed in range(3):
        a, b = _blobs((6, 32, 32), seed), _blobs((6, 32, 32), seed + 9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = compute_hausdorff_distance(torch.from_numpy(b)[None, None].float(),
                                             torch.from_numpy(a)[None, None].float(), include_background=True)
        d_ab, d_ba = surface_distances(a, b)
        assert max(d_ab.max(), d_ba.max()) == pytest.approx(float(ref), abs=1e-5)


def test_hd95_simple_shift():
    a = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    assert hd95(a, a) == 0.0
    assert hd95(a, np.roll(a, 3, axis=1)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="non-empty"):
        hd95(a, np.zeros_like(a))


# ---------------------------------------------------------------------------------------------
# Empty-mask rules and multi-class volumes
# ---------------------------------------------------------------------------------------------

FULL, EMPTY = np.ones((2, 3, 3), bool), np.zeros((2, 3, 3), bool)
RULE_CASES = [
    ("authors", FULL, FULL, 1.0, 0.0, "both"),
    ("authors", FULL, EMPTY, 1.0, 0.0, "pred_only"),
    ("authors", EMPTY, FULL, 0.0, 0.0, "label_only"),
    ("authors", EMPTY, EMPTY, 0.0, 0.0, "neither"),
    ("strict", FULL, EMPTY, 0.0, None, "pred_only"),
    ("strict", EMPTY, FULL, 0.0, None, "label_only"),
    ("strict", EMPTY, EMPTY, 1.0, None, "neither"),
]


@pytest.mark.parametrize("rules,pred,label,dice,hd,status", RULE_CASES,
                         ids=[f"{r[0]}-{r[5]}" for r in RULE_CASES])
def test_empty_mask_rules(rules, pred, label, dice, hd, status):
    score = case_scores(pred, label, rules=rules)
    assert score.dice == dice and score.status == status
    assert np.isnan(score.hd95) if hd is None else score.hd95 == hd


def test_volume_metrics_authors_and_strict():
    label = np.zeros((2, 8, 8), np.uint8)
    label[:, 1:4, 1:4] = 1
    label[:, 5:7, 5:7] = 3                                        # class 2 (Myo) absent from the label
    pred = label.copy()
    pred[0, 0, 7] = 2                                             # a false Myo pixel in volume 0
    authors, strict = VolumeMetrics(rules="authors"), VolumeMetrics(rules="strict")
    for m in (authors, strict):
        m.update(pred, label, name="v0")
        m.update(label, label, name="v1")                         # a perfect volume
    a, s = authors.compute(), strict.compute()
    assert a["per_class"]["RV"]["dice"] == 1.0 and a["per_class"]["LV"]["hd95"] == 0.0
    assert a["per_class"]["Myo"]["dice"] == pytest.approx((1.0 + 0.0) / 2)   # pred-only -> 1; neither -> 0
    assert s["per_class"]["Myo"]["dice"] == pytest.approx((0.0 + 1.0) / 2)   # pred-only -> 0; neither -> 1
    assert s["per_class"]["Myo"]["n_hd95_excluded"] == 2 and np.isnan(s["per_class"]["Myo"]["hd95"])
    assert a["dice"] == pytest.approx((1 + 0.5 + 1) / 3) and a["n_volumes"] == 2
    assert s["hd95"] == 0.0 and a["rules"] == "authors"


def test_volume_dice_matches_monai_and_confusion():
    from monai.metrics import DiceMetric

    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (4, 16, 16))
    pred = np.where(rng.random((4, 16, 16)) < 0.7, label, rng.integers(0, 4, (4, 16, 16)))
    m = VolumeMetrics(hd95=False)
    m.update(pred, label)
    ours = [m.cases[c][0].dice for c in ("RV", "Myo", "LV")]
    onehot = lambda x: torch.nn.functional.one_hot(torch.from_numpy(x), 4).permute(3, 0, 1, 2)[None].float()
    ref = DiceMetric(include_background=False, reduction="none")(onehot(pred), onehot(label))[0]
    assert np.allclose(ours, ref.numpy(), atol=1e-6)
    assert np.allclose(ours, dice_per_class(torch.from_numpy(pred), torch.from_numpy(label), 4).numpy())
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 4)
    ref_cm, _, _ = np.histogram2d(label.ravel(), pred.ravel(), bins=4, range=[[0, 4], [0, 4]])
    assert np.array_equal(cm.numpy(), ref_cm.astype(np.int64))


def test_binary_hd95_per_image():
    a = np.zeros((3, 20, 20), bool)
    a[:, 5:10, 5:10] = True
    b = np.roll(a, 2, axis=2)
    b[2] = False                                                  # label empty in image 2
    m = BinaryMetrics(hd95=True, rules="strict")
    m.update(torch.from_numpy(a), torch.from_numpy(b))
    out = m.compute()
    assert out["hd95"] == pytest.approx(2.0) and out["n_hd95_excluded"] == 1


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="rules"):
        VolumeMetrics(rules="lenient")
    with pytest.raises(ValueError, match="differ in shape"):
        VolumeMetrics().update(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), name="v")
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        BinaryMetrics().update(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([5]), torch.tensor([0]), 4)


def test_metrics_module_imports_no_model_and_no_data():
    tree = ast.parse((Path(__file__).parents[1] / "rwkvseg" / "metrics.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith(("rwkvseg.models", "rwkvseg.data"))]
