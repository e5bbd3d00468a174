"""The papers' losses against loop-written references (RWKV-UNet Eq. 12; U-KAN's and VM-UNet's Dice)."""
import pytest
import torch
import torch.nn.functional as F

from rwkvseg.losses import (
    LossConfig, binary_bce_dice, build_loss, multiclass_ce_dice, soft_dice_binary, soft_dice_multiclass,
)


def _binary_case(seed=0, B=3, H=8, W=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, 1, H, W, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(B, 1, H, W, generator=g) > 0.6).double()
    return logits, target


@pytest.mark.parametrize("smooth", [1e-5, 1.0])
def test_binary_dice_is_per_image_then_mean(smooth):
    logits, target = _binary_case()
    ref = []
    for b in range(logits.shape[0]):
        p, t = torch.sigmoid(logits[b]), target[b]
        ref.append(1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth))
    got = soft_dice_binary(logits, target, smooth=smooth)
    assert torch.allclose(got.double(), torch.stack(ref).mean(), atol=1e-6)


@pytest.mark.parametrize("style,smooth,w", [("ukan", 1e-5, (0.5, 1.0)), ("vmunet", 1.0, (1.0, 1.0))])
def test_binary_bce_dice_matches_probability_form(style, smooth, w):
    logits, target = _binary_case(1)
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy(p, target)      # VM-UNet's form: BCE on probabilities
    dice = soft_dice_binary(logits, target, smooth=smooth)
    got = binary_bce_dice(logits, target, bce_weight=w[0], dice_weight=w[1], style=style)
    assert torch.allclose(got.double(), w[0] * bce + w[1] * dice.double(), atol=1e-6)


def test_binary_bce_on_logits_is_finite_for_saturated_logits():
    logits = torch.tensor([[[[80.0, -80.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 1.0]]]])
    loss = binary_bce_dice(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_multiclass_dice_sums_over_the_batch_background_included():
    g = torch.Generator().manual_seed(2)
    B, C, H, W = 2, 4, 5, 7
    logits = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    target = torch.randint(0, C, (B, H, W), generator=g)
    p = torch.softmax(logits, 1)
    per_class = []
    for c in range(C):
        pc, gc = p[:, c], (target == c).double()
        per_class.append(1 - (2 * (pc * gc).sum() + 1e-5) / ((pc * pc).sum() + (gc * gc).sum() + 1e-5))
    ref_dice = torch.stack(per_class).mean()
    assert torch.allclose(soft_dice_multiclass(logits, target).double(), ref_dice, atol=1e-6)
    ref = 0.3 * F.cross_entropy(logits, target) + 0.7 * ref_dice
    assert torch.allclose(multiclass_ce_dice(logits, target).double(), ref, atol=1e-6)


def test_perfect_prediction_gives_small_loss():
    target = torch.randint(0, 4, (2, 6, 6))
    logits = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 40
    assert multiclass_ce_dice(logits, target) < 1e-4
    mask = (torch.rand(2, 1, 6, 6) > 0.5).float()
    assert binary_bce_dice((mask * 2 - 1) * 40, mask) < 1e-4


def test_build_loss_and_teaching_errors():
    logits, target = _binary_case()
    f = build_loss(LossConfig(kind="bce_dice", ce_weight=0.5, dice_weight=1.0))
    assert torch.allclose(f(logits, target), binary_bce_dice(logits, target))
    with pytest.raises(ValueError, match="num_classes=1"):
        binary_bce_dice(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="bce_dice"):
        build_loss(LossConfig(kind="focal"))
