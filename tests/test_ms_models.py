"""MS-RWKV-UNet and RWKV-SSS (experimental, follows an unfinished draft): forward, backward, counts."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rwkvseg.models import create_model, list_models

# (name, side, in_chans, classes) -> (parameters, MACs of conv + linear layers), measured with
# torch.utils.flop_counter.FlopCounterMode / 2 (the WKV itself is not counted)
COUNTS = {
    # MS-RWKV-UNet (rwkvseg.multihead): k, v, r are projected on the H*W pixels plus one pad
    # "pixel", and o after the unscan, not on every padding slot.
    ("ms_rwkv_unet", 256, 3, 1): (61_176_073, 11_308_089_600),
    ("ms_rwkv_unet", 224, 1, 4): (61_173_076, 8_652_284_160),
    ("rwkv_sss", 256, 3, 1): (13_552_066, 2_834_989_056),
    ("rwkv_sss", 224, 1, 4): (13_550_437, 2_164_517_376),
    ("ms_rwkv_unet_test", 256, 3, 1): (818_429, 173_457_280),
    ("rwkv_sss_test", 256, 3, 1): (504_530, 124_690_432),
}


def test_registered():
    assert {"ms_rwkv_unet", "ms_rwkv_unet_test", "rwkv_sss", "rwkv_sss_test"} <= set(list_models())


@pytest.mark.parametrize("key", sorted(COUNTS), ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}ch-{k[3]}cls")
def test_counts(key):
    """Counted on the meta device: no memory, no arithmetic, same shapes."""
    name, side, chans, classes = key
    with torch.device("meta"):
        model = create_model(name, in_chans=chans, num_classes=classes).eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(torch.empty(1, chans, side, side))
    assert out.shape == (1, classes, side, side)
    assert (params, counter.get_total_flops() // 2) == COUNTS[key]


@pytest.mark.parametrize("name", ["ms_rwkv_unet_test", "rwkv_sss_test"])
@pytest.mark.parametrize("chans,classes", [(1, 4), (3, 1)])
def test_forward_backward_non_square(name, chans, classes):
    torch.manual_seed(0)
    model = create_model(name, in_chans=chans, num_classes=classes, wkv_backend="torch")
    x = torch.randn(2, chans, 32, 64)
    y = model(x)
    assert y.shape == (2, classes, 32, 64) and torch.isfinite(y).all()
    y.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead, f"no gradient reached {dead[:5]}"


@pytest.mark.parametrize("override", [dict(heads=3, embed_dim=24), dict(padding=False), dict(shift="uni_shift"),
                                      dict(shift="q_shift"), dict(faa=False, shift="none"),
                                      dict(pad_token="zeros")], ids=str)
def test_ms_rwkv_ablations_build_and_run(override):
    model = create_model("ms_rwkv_unet_test", wkv_backend="torch", **override).eval()  # BN at 1x1, batch 1
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("override", [dict(reading="C"), dict(inner_order="diagonal"), dict(shift="q_shift")], ids=str)
def test_rwkv_sss_options(override):
    model = create_model("rwkv_sss_test", wkv_backend="torch", **override).eval()
    assert model(torch.randn(1, 1, 64, 32)).shape == (1, 4, 64, 32)


def test_ms_rwkv_reparameterize_keeps_outputs():
    torch.manual_seed(0)
    model = create_model("ms_rwkv_unet_test", wkv_backend="torch").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = model.reparameterize()(x)
    assert (before - after).abs().max() < 1e-4 * before.abs().max()


@pytest.mark.parametrize("name", ["ms_rwkv_unet_test", "rwkv_sss_test"])
def test_sizes_not_divisible_by_32_teach(name):
    model = create_model(name, in_chans=1)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 1, 48, 64))
