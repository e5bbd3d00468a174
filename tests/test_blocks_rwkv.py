"""RWKV-UNet's building blocks: spatial mix, channel mix, IR / IR-RWKV block, CCM (RWKV-UNet Sec. 3.2, 3.4)."""
import os

import pytest
import torch

from rwkvseg.ccm import CCM
from rwkvseg.ir import IRBlock
from rwkvseg.layers import CNA, DropPath, LayerNorm2d, map_to_tokens, resize_bilinear, tokens_to_map
from rwkvseg.shift import q_shift
from rwkvseg.spatial_mix import SpatialMix, VRWKVChannelMix, set_wkv_backend
from rwkvseg.wkv import bi_wkv


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def assert_all_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient at {name}"


def randomise(module, seed=0):
    """Move every parameter off its init so gradients are generic (e.g. mu != 0.5, decay != 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------------------------
# Spatial mix
# --------------------------------------------------------------------------------------------

def test_spatial_mix_matches_equations_non_square():
    torch.manual_seed(0)
    C, H, W = 8, 3, 5
    m = SpatialMix(dim=C, backend="torch").double()
    randomise(m)
    x = torch.randn(2, H * W, C, dtype=torch.float64)
    y = m(x, (H, W))
    assert y.shape == (2, H * W, C)
    xs = map_to_tokens(q_shift(tokens_to_map(x, (H, W))))
    lerp = lambda mu: x * mu + xs * (1 - mu)  # noqa: E731
    k, v, r = m.key(lerp(m.mu_k)), m.value(lerp(m.mu_v)), m.receptance(lerp(m.mu_r))
    wkv = bi_wkv(m.spatial_decay / (H * W), m.spatial_first / (H * W), k, v, backend="naive")
    ref = m.output(torch.sigmoid(r) * torch.nn.functional.layer_norm(wkv, (C,), m.key_norm.weight, m.key_norm.bias, 1e-5))
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_spatial_mix_init_and_params():
    C = 12
    m = SpatialMix(dim=C)
    assert n_params(m) == 4 * C * C + 7 * C
    for mu in (m.mu_k, m.mu_v, m.mu_r):
        assert torch.all(mu == 0.5)
    assert torch.all(m.spatial_decay == 0) and torch.all(m.spatial_first == 0)
    assert m.backend == "auto" and m.key_norm.eps == 1e-5


def test_spatial_mix_gradients_reach_every_parameter():
    torch.manual_seed(1)
    m = SpatialMix(dim=8, backend="torch")
    randomise(m)
    x = torch.randn(2, 4 * 6, 8, requires_grad=True)
    (m(x, (4, 6)) ** 2).sum().backward()
    assert_all_grads(m)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_spatial_mix_backend_is_passed_down():
    torch.manual_seed(2)
    m = SpatialMix(dim=4, backend="torch")
    randomise(m)
    x = torch.randn(1, 6, 4)
    y_torch = m(x, (2, 3))
    m.backend = "naive"
    torch.testing.assert_close(m(x, (2, 3)), y_torch, rtol=1e-5, atol=1e-5)
    m.backend = "no-such-backend"
    with pytest.raises(ValueError, match="backend"):
        m(x, (2, 3))
    blk = IRBlock(in_chans=4, out_chans=4, expansion=1.0, mix=True)
    assert set_wkv_backend(blk, "torch") == 1 and blk.mix.backend == "torch"


def test_spatial_mix_triton_backend_if_available():
    from rwkvseg.wkv import triton_available

    if not triton_available() or not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("Triton (or its CPU interpreter) is not available")
    torch.manual_seed(3)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    m = SpatialMix(dim=4, backend="torch").to(dev)
    randomise(m)
    x = torch.randn(1, 6, 4, device=dev)
    y_torch = m(x, (2, 3))
    m.backend = "triton"
    torch.testing.assert_close(m(x, (2, 3)), y_torch, rtol=1e-4, atol=1e-4)


def test_spatial_mix_rejects_wrong_grid():
    m = SpatialMix(dim=4, backend="torch")
    with pytest.raises(ValueError, match="grid"):
        m(torch.randn(1, 6, 4), (2, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 4\)"):
        m(torch.randn(1, 6, 5), (2, 3))


def test_spatial_mix_compiles_fullgraph():
    """Graph capture without breaks, forward and backward (aot_eager: no C++ compile needed)."""
    torch._dynamo.reset()
    m = SpatialMix(dim=8, backend="torch")
    x = torch.randn(2, 12, 8, requires_grad=True)
    cm = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = cm(x, (3, 4))
    y.sum().backward()
    torch.testing.assert_close(y, m(x, (3, 4)))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RWKVSEG_RUN_SLOW") != "1", reason="inductor on this CPU takes ~50 s; set RWKVSEG_RUN_SLOW=1")
def test_spatial_mix_compiles_fullgraph_inductor():
    torch._dynamo.reset()
    m = SpatialMix(dim=8, backend="torch")
    x = torch.randn(2, 12, 8)
    cm = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(cm(x, (3, 4)), m(x, (3, 4)), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Channel mix
# --------------------------------------------------------------------------------------------

def test_channel_mix_equations_params_grads():
    torch.manual_seed(4)
    C, hid, H, W = 6, 12, 2, 5
    m = VRWKVChannelMix(dim=C, hidden_dim=hid)
    assert n_params(m) == 2 * C + C * hid + 2 * hid + hid * C + C * C
    randomise(m)
    x = torch.randn(2, H * W, C, requires_grad=True)
    y = m(x, (H, W))
    xs = map_to_tokens(q_shift(tokens_to_map(x, (H, W))))
    xk = x * m.mu_k + xs * (1 - m.mu_k)
    xr = x * m.mu_r + xs * (1 - m.mu_r)
    ref = torch.sigmoid(m.receptance(xr)) * m.value(m.key_norm(torch.relu(m.key(xk)) ** 2))
    torch.testing.assert_close(y, ref)
    (y ** 2).sum().backward()
    assert_all_grads(m)


# --------------------------------------------------------------------------------------------
# CNA, LayerNorm2d, DropPath
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,s", [(1, 1), (5, 1), (5, 2), (9, 1)])
def test_cna_padding_and_shape(k, s):
    m = CNA(in_chans=4, out_chans=6, kernel_size=k, stride=s)
    conv, bn = m[0], m[1]
    assert conv.bias is None and conv.padding[0] == -(-(k - s) // 2) and bn.eps == 1e-6
    assert m(torch.randn(2, 4, 8, 12)).shape == (2, 6, 8 // s, 12 // s)


def test_layernorm2d_matches_layernorm_over_channels():
    torch.manual_seed(5)
    m = LayerNorm2d(5)
    randomise(m)
    x = torch.randn(2, 5, 3, 4)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (5,), m.weight, m.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), ref)


def test_drop_path():
    x = torch.ones(4000, 3)
    dp = DropPath(0.25)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    y = dp(x)
    rows = y[:, 0]
    assert torch.all((rows == 0) | torch.isclose(rows, torch.tensor(1 / 0.75)))
    assert torch.all(y == y[:, :1])                      # whole samples are dropped
    assert abs(rows.mean().item() - 1.0) < 0.05          # expectation preserved
    with pytest.raises(ValueError):
        DropPath(1.0)


# --------------------------------------------------------------------------------------------
# IR and IR-RWKV blocks
# --------------------------------------------------------------------------------------------

def ir_params(cin, cout, e, k=5, pre=True, mix=False):
    mid = int(cin * e)
    n = (2 * cin if pre else 0) + cin * mid + 2 * mid + mid * k * k + 2 * mid + mid * cout
    if mix:
        n += 4 * mid * mid + 7 * mid + 2 * mid
    return n


def test_ir_block_parameter_formula():
    assert n_params(IRBlock(in_chans=32, out_chans=48, expansion=5.0, stride=2, pre_norm="bn")) == ir_params(32, 48, 5.0)
    assert n_params(IRBlock(in_chans=96, out_chans=96, expansion=3.0, pre_norm="ln", mix=True)) == ir_params(96, 96, 3.0, mix=True)
    stem = IRBlock(in_chans=3, out_chans=24, expansion=1.0, se=True, skip=False)
    assert n_params(stem) == 192                          # 15 + 81 + SE 24 + 72


def test_ir_rwkv_block_follows_the_code_order():
    torch.manual_seed(6)
    blk = IRBlock(in_chans=6, out_chans=6, expansion=2.0, pre_norm="ln", mix=True, wkv_backend="torch").eval()
    randomise(blk)
    x = torch.randn(2, 6, 3, 5)
    assert blk.skip
    e = blk.expand(blk.norm(x))
    z = map_to_tokens(e)
    z = z + blk.mix_norm(blk.mix(z, (3, 5)))              # post-norm on the mix's output
    e = tokens_to_map(z, (3, 5))
    e = e + blk.local(e)
    ref = x + blk.project(e)
    torch.testing.assert_close(blk(x), ref)


def test_ir_block_paper_norm_order():
    torch.manual_seed(7)
    blk = IRBlock(in_chans=6, out_chans=6, expansion=2.0, pre_norm="ln", mix=True, wkv_backend="torch",
                  paper_norm_order=True).eval()
    randomise(blk)
    x = torch.randn(1, 6, 2, 3)
    e = blk.expand(x)                                     # no pre-norm
    z = map_to_tokens(e)
    z = z + blk.mix(blk.mix_norm(z), (2, 3))              # LN on the mix's input (Eq. 3)
    e = tokens_to_map(z, (2, 3))
    torch.testing.assert_close(blk(x), x + blk.project(e + blk.local(e)))


@pytest.mark.parametrize("mix", [False, True], ids=["IR", "IR-RWKV"])
@pytest.mark.parametrize("stride", [1, 2])
def test_ir_blocks_shapes_and_gradients(mix, stride):
    torch.manual_seed(8)
    cout = 8 if stride == 1 else 12
    blk = IRBlock(in_chans=8, out_chans=cout, expansion=2.0, stride=stride, pre_norm="bn",
                  mix=mix and stride == 1, wkv_backend="torch", drop_path=0.0)
    randomise(blk)
    x = torch.randn(2, 8, 4, 6, requires_grad=True)
    y = blk(x)
    assert y.shape == (2, cout, 4 // stride, 6 // stride)
    assert blk.skip == (stride == 1)
    (y ** 2).sum().backward()
    assert_all_grads(blk)


def test_stem_block_with_se_gradients():
    torch.manual_seed(9)
    stem = IRBlock(in_chans=3, out_chans=24, expansion=1.0, se=True, skip=False)
    y = stem(torch.randn(2, 3, 8, 10))
    assert y.shape == (2, 24, 8, 10)
    (y ** 2).sum().backward()
    assert_all_grads(stem)


# --------------------------------------------------------------------------------------------
# CCM
# --------------------------------------------------------------------------------------------

def test_ccm_params_shapes_gradients_non_square():
    torch.manual_seed(10)
    ccm = CCM(widths=(32, 48, 96), drop_path=0.0)
    assert n_params(ccm) == 58_384                        # RWKV-UNet-T (book appendix, Derivations)
    ccm = CCM(widths=(4, 6, 8), drop_path=0.0)
    randomise(ccm)
    f1, f2, f3 = torch.randn(2, 4, 8, 12), torch.randn(2, 6, 4, 6), torch.randn(2, 8, 2, 3)
    out = ccm(f1, f2, f3)
    assert [o.shape for o in out] == [f1.shape, f2.shape, f3.shape]
    sum((o ** 2).sum() for o in out).backward()
    assert_all_grads(ccm)
    with pytest.raises(ValueError, match="f2"):
        ccm(f1, f3, f3)


def test_ccm_sizes_follow_the_input():
    ccm = CCM(widths=(4, 6, 8)).eval()
    for h, w in [(8, 8), (16, 24)]:
        out = ccm(torch.randn(1, 4, h, w), torch.randn(1, 6, h // 2, w // 2), torch.randn(1, 8, h // 4, w // 4))
        assert out[2].shape == (1, 8, h // 4, w // 4)


@pytest.mark.parametrize("src,dst", [((8, 8), (16, 16)), ((8, 8), (32, 32)), ((32, 32), (8, 8)), ((5, 7), (13, 4)),
                                     ((1, 3), (4, 9)), ((6, 6), (6, 12)), ((17, 9), (3, 2))])
def test_resize_bilinear_matches_interpolate(src, dst):
    """resize_bilinear = F.interpolate(bilinear, align_corners=False) up and down, any ratio, value and
    gradient in float64; the result is channels-last."""
    g = torch.Generator().manual_seed(sum(src) + sum(dst))
    x = torch.randn(2, 3, *src, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ref = torch.nn.functional.interpolate(x, dst, mode="bilinear", align_corners=False)
    got = resize_bilinear(x, dst)
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(got, x, dy)[0], torch.autograd.grad(ref, x, dy)[0],
                               rtol=0, atol=1e-12)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_resize_bilinear_op_passes_opcheck():
    """The custom ops behind resize_bilinear: fake shapes and strides, autograd registration, schema."""
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.rwkvseg.resize_bilinear.default, (x.requires_grad_(), 10, 14))
    dy = torch.randn(2, 3, 10, 14, dtype=torch.float64)
    torch.library.opcheck(torch.ops.rwkvseg.resize_bilinear_backward.default, (dy, 5, 7))
