"""RWKV-UNet networks: exact parameter counts, forward/backward, MACs (book appendix, Derivations)."""
import pytest
import torch

from rwkvseg.macs import count_macs
from rwkvseg.models import create_model, list_models
from rwkvseg.models.rwkv_unet import RWKVUNet, RWKVUNetConfig


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,kwargs,expected",
    [
        ("rwkv_unet_t", {}, 3_145_761),
        ("rwkv_unet_s", {}, 9_701_945),
        ("rwkv_unet_b", {}, 17_125_513),
        ("rwkv_unet_encoder_t", {"num_classes": 0}, 2_938_472),
        ("rwkv_unet_encoder_s", {"num_classes": 0}, 9_416_048),
        ("rwkv_unet_encoder_b", {"num_classes": 0}, 16_694_040),
        ("rwkv_unet_encoder_t", {}, 3_099_792),
        ("rwkv_unet_encoder_s", {}, 9_609_432),
        ("rwkv_unet_encoder_b", {}, 16_935_520),
        ("rwkv_unet_b", {"num_classes": 9}, 17_125_513 + 200),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={x}" for k, x in v.items()) or "default",
)
def test_parameter_counts_exact(name, kwargs, expected):
    with torch.device("meta"):                                             # counts need no storage
        assert n_params(create_model(name, **kwargs)) == expected


def test_components_add_up_for_t():
    with torch.device("meta"):
        m = create_model("rwkv_unet_t")
    assert n_params(m.encoder) == 2_938_472
    assert n_params(m.ccm) == 58_384
    assert n_params(m) - n_params(m.encoder) - n_params(m.ccm) == 148_905


def test_registry_and_overrides():
    names = set(list_models("rwkv_unet*"))
    assert {"rwkv_unet_t", "rwkv_unet_s", "rwkv_unet_b", "rwkv_unet_test",
            "rwkv_unet_encoder_t", "rwkv_unet_encoder_s", "rwkv_unet_encoder_b"} <= names
    with torch.device("meta"):
        m = create_model("rwkv_unet_t", in_chans=1, num_classes=4)
        assert isinstance(m, RWKVUNet) and m.config.in_chans == 1 and m.config.num_classes == 4
        assert create_model("rwkv_unet_t").config == RWKVUNetConfig()      # the registry entry is not mutated


def test_init_follows_authors_code():
    m = create_model("rwkv_unet_test")
    mix = m.encoder.stage3[1].mix
    assert torch.all(mix.mu_k == 0.5) and torch.all(mix.spatial_decay == 0)
    assert mix.key.weight.std() < 0.05                                     # truncated normal, std 0.02
    assert m.encoder.stage3[0].mix is None                                  # first blocks have no mix
    assert m.encoder.stage3[1].drop_path.drop_prob > 0


@pytest.mark.parametrize("in_chans", [1, 3])
def test_tiny_forward_backward_non_square(in_chans):
    torch.manual_seed(0)
    m = create_model("rwkv_unet_test", in_chans=in_chans, num_classes=2, wkv_backend="torch",
                     drop_path_rate=0.0, ccm_drop_path=0.0)
    x = torch.randn(2, in_chans, 32, 48)
    y = m(x)
    assert y.shape == (2, 2, 32, 48)
    y.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_t_forward_backward_32x48():
    """RWKV-UNet-T on a gray 32x48 input (stage IV is a 2x3 grid); the tiny net covers 3 channels."""
    torch.manual_seed(1)
    m = create_model("rwkv_unet_t", in_chans=1, wkv_backend="torch", drop_path_rate=0.0, ccm_drop_path=0.0)
    y = m(torch.randn(1, 1, 32, 48))
    assert y.shape == (1, 1, 32, 48) and torch.isfinite(y).all()
    y.mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_classifier_forward():
    m = create_model("rwkv_unet_encoder_t", num_classes=5, wkv_backend="torch").eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    feats = m.forward_features(torch.randn(1, 3, 32, 48))
    assert [f.shape[1:] for f in feats] == [(32, 16, 24), (48, 8, 12), (96, 4, 6), (160, 2, 3)]


def test_input_errors_teach():
    m = create_model("rwkv_unet_test", wkv_backend="torch")
    with pytest.raises(ValueError, match="pad or resize to 48x48"):
        m(torch.randn(1, 3, 40, 48))
    with pytest.raises(ValueError, match="in_chans=1"):
        m(torch.randn(1, 1, 32, 32))
    g = create_model("rwkv_unet_test", wkv_backend="torch", gray_to_rgb=True).eval()
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(g(x), g(x.repeat(1, 3, 1, 1)))


# MACs (rwkvseg.macs). Built and counted on the "meta" device: shapes only, fast.

def meta_model(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize(
    "name,kwargs,shape,conv_linear,paper",
    [
        ("rwkv_unet_t", {}, (1, 3, 256, 256), 3.585e9, 3.78e9),
        ("rwkv_unet_b", {"num_classes": 9, "gray_to_rgb": True}, (1, 1, 224, 224), 10.968e9, 11.22e9),
        ("rwkv_unet_s", {}, (1, 3, 256, 256), 7.493e9, 7.75e9),
        ("rwkv_unet_encoder_b", {}, (1, 3, 224, 224), 8.851e9, 9.0e9),
    ],
    ids=["T-256", "B-224-9cls", "S-256", "EncB-224"],
)
def test_macs(name, kwargs, shape, conv_linear, paper):
    m = meta_model(name, **kwargs)
    r = count_macs(m, shape)
    assert abs(r.conv_linear / conv_linear - 1) < 1e-3, r
    assert abs(r.total / paper - 1) < 0.05, r
    assert r.wkv_calls == sum(m.config.depths[2:]) - 2                      # IR-RWKV blocks


def test_macs_pin_the_spatial_mix():
    """Removing every spatial mix removes exactly 4 C^2 N conv+linear MACs per IR-RWKV block."""
    full = count_macs(meta_model("rwkv_unet_b", num_classes=9), (1, 3, 224, 224))
    plain = count_macs(meta_model("rwkv_unet_b", num_classes=9, mix_stages=(False,) * 4), (1, 3, 224, 224))
    removed = 5 * 4 * 576**2 * 28**2 + 2 * 4 * 960**2 * 14**2
    assert full.conv_linear - plain.conv_linear == removed
    assert abs(removed / 6.65e9 - 1) < 1e-3
    assert plain.wkv == 0 and full.wkv == 5 * 29 * 784 * 576 + 2 * 29 * 196 * 960


def test_macs_meta_equals_real_pass():
    m = create_model("rwkv_unet_test", wkv_backend="torch")
    a, b = count_macs(m, (1, 3, 32, 48)), count_macs(m, (1, 3, 32, 48), meta=False)
    assert a == b and a.wkv_calls == 2 and a.wkv_shapes == ((1, 24, 48), (1, 6, 64))
    assert m.training                                                       # mode restored
