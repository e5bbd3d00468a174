"""MultiHeadScan's batched heads equal its per-head loop (forward and gradients).

The batched path (rwkvseg.multihead, ``_forward_batched``) stacks the heads' weights at run time,
gathers every head's route in one op and runs one WKV call for all heads; ``_forward_loop`` is the
literal Eq. 11-14. Parameters are randomised (not the init: mu = 0.5, u = 0, pad = 0 would hide
mistakes in which head gets which mu, u or pad).
"""
import time

import pytest
import torch

from rwkvseg.models import create_model
from rwkvseg.multihead import MultiHeadScan


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def _compare(m: MultiHeadScan, x: torch.Tensor, *, atol: float, rtol: float, scaled: bool = False) -> None:
    """Output and every gradient of the batched path against the loop. ``scaled``: float32, where a
    weight gradient sums over all tokens in another order, so the bound is atol * max|reference|."""
    x = x.clone().requires_grad_(True)
    params = [x] + list(m.parameters())
    y_loop = m._forward_loop(x)
    gy = torch.randn_like(y_loop)
    g_loop = torch.autograd.grad(y_loop, params, gy)
    y_b = m(x)                                     # the default path is the batched one
    g_b = torch.autograd.grad(y_b, params, gy)
    names = ["output", "x"] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, (y_b,) + g_b, (y_loop,) + g_loop):
        if scaled:
            err, scale = (a - b).abs().max().item(), b.abs().max().item()
            assert err <= atol * max(scale, 1.0), f"{name}: max |diff| {err:.2e}, max |ref| {scale:.2e}"
        else:
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda s: f"{name}: {s}")


@pytest.mark.parametrize("heads", [3, 4])
@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("hw", [(5, 5), (4, 7), (1, 3)])
@pytest.mark.parametrize("block_index", [0, 1])
def test_batched_equals_loop_float64(heads, pad, hw, block_index):
    torch.manual_seed(0)
    m = MultiHeadScan(dim=4 * heads, heads=heads, pad=pad, block_index=block_index, backend="torch").double()
    _randomise(m)
    assert m.batched and m._batchable()
    _compare(m, torch.randn(2, *hw, 4 * heads, dtype=torch.float64), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("shift", ["q_shift", "omni_shift", "uni_shift", "dynamic_q_shift", "none"])
def test_batched_equals_loop_other_shifts(shift):
    torch.manual_seed(1)
    m = MultiHeadScan(dim=16, heads=4, pad=True, shift=shift, backend="torch").double()
    _randomise(m, seed=1)
    _compare(m, torch.randn(2, 4, 6, 16, dtype=torch.float64), atol=1e-10, rtol=1e-10)


def test_batched_equals_loop_reparameterised_and_zero_pads():
    torch.manual_seed(2)
    m = MultiHeadScan(dim=8, heads=4, pad=True, pad_token="zeros", backend="torch").double()
    _randomise(m, seed=2)
    for mix in m.mixes:
        mix.shift.reparameterize()
    _compare(m, torch.randn(2, 6, 3, 8, dtype=torch.float64), atol=1e-10, rtol=1e-10)


def test_batched_float32_tight():
    torch.manual_seed(3)
    m = MultiHeadScan(dim=32, heads=4, pad=True, backend="torch")
    _randomise(m, seed=3)
    _compare(m, torch.randn(2, 8, 8, 32), atol=3e-5, rtol=0, scaled=True)     # seen: 7.5e-6


def test_state_dict_unchanged():
    """Batching adds no parameter or buffer: the state_dict keys and shapes are the per-head ones."""
    m = MultiHeadScan(dim=8, heads=4, pad=True, backend="torch")
    keys = set(m.state_dict())
    expected = {"norm_in.weight", "norm_in.bias", "norm_out.weight", "norm_out.bias",
                "proj_out.weight", "proj_out.bias"}
    for h in range(4):
        expected |= {f"proj_in.{h}.weight", f"proj_in.{h}.bias"}
        expected |= {f"mixes.{h}.{p}" for p in ("mu_k", "mu_v", "mu_r", "key.weight", "value.weight",
                                               "receptance.weight", "output.weight", "theta", "u",
                                               "pad_token")}
        expected |= {f"mixes.{h}.shift.branches.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert keys == expected
    assert all(v.shape == (2, 2) for k, v in m.state_dict().items() if k.endswith(("key.weight", "output.weight")))


def test_model_batched_equals_loop():
    torch.manual_seed(4)
    model = create_model("ms_rwkv_unet_test", in_chans=1, num_classes=2).double()
    x = torch.randn(1, 1, 64, 32, dtype=torch.float64)         # non-square: unequal head lengths
    y_b = model(x)
    for mod in model.modules():
        if isinstance(mod, MultiHeadScan):
            mod.batched = False
    y_loop = model(x)
    torch.testing.assert_close(y_b, y_loop, atol=1e-10, rtol=1e-10)


def test_batched_equals_loop_triton_interpreter():
    """The Triton WKV under the CPU interpreter, one tiny block (float32)."""
    from rwkvseg.wkv import triton_available

    if not triton_available():
        pytest.skip("triton is not installed")
    torch.manual_seed(5)
    m = MultiHeadScan(dim=8, heads=4, pad=True, backend="triton")
    _randomise(m, seed=5)
    t0 = time.perf_counter()
    _compare(m, torch.randn(1, 3, 4, 8), atol=3e-5, rtol=0, scaled=True)
    assert time.perf_counter() - t0 < 120
