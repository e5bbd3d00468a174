"""MS-RWKV blocks (FAA, time mix, channel mix, multi-head scan) and RWKV-SSS's routed spatial mix."""
import pytest
import torch

from rwkvseg.faa import FAA, MCM
from rwkvseg.multihead import MultiHeadScan
from rwkvseg.models.rwkv_sss import window_sides
from rwkvseg.scan import ColumnMajor, RowMajor, WindowScan
from rwkvseg.spatial_mix import RoutedSpatialMix, SpatialMix
from rwkvseg.time_mix import RWKV4ChannelMix, TimeMix


def _all_grads(module, loss):
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reached {missing}"


def test_faa_shape_and_gradients():
    torch.manual_seed(0)
    faa = FAA(channels=8)
    x = torch.randn(2, 8, 6, 10)
    y = faa(x)
    assert y.shape == x.shape
    _all_grads(faa, (y ** 2).mean())


def test_mcm_any_channel_count():
    m = MCM(in_channels=6, out_channels=10, role="expand")
    assert m.sizes == [2, 3, 2, 3]
    assert m(torch.randn(1, 6, 5, 5)).shape == (1, 10, 5, 5)
    with pytest.raises(ValueError, match="four odd"):
        MCM(in_channels=8, out_channels=8, role="restore", kernels=(3, 5))


@pytest.mark.parametrize("triton", [False, True], ids=["conv2d", "triton"])
@pytest.mark.parametrize("role, in_channels, out_channels", [("expand", 6, 18), ("restore", 18, 6)])
def test_mcm_merged_is_the_per_group_loop(role, in_channels, out_channels, triton):
    """MCM.merged (the GPU's two convolutions with zero-padded kernels) against the per-group loop, in float64:
    values and every parameter's gradient; the Triton route under the CPU interpreter."""
    if triton:
        pytest.importorskip("triton")
    torch.manual_seed(0)
    m = MCM(in_channels=in_channels, out_channels=out_channels, role=role).double()
    x = torch.randn(2, in_channels, 7, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for merged in (False, True):
        m.zero_grad()
        h = m.pre(x)
        if merged:
            y = m.post(m.merged(h.contiguous(memory_format=torch.channels_last), triton=triton))
        else:
            y = m(x)                                         # on the CPU: the per-group loop
        (y * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
        outs.append(y)
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-12, atol=1e-12, msg=lambda msg: f"{name}: {msg}")


@pytest.mark.parametrize("shift", ["p_shift", "q_shift", "uni_shift"])
@pytest.mark.parametrize("order", [RowMajor(pad=True), ColumnMajor(reverse=True, pad=True), RowMajor()])
def test_time_mix_shape_and_gradients(shift, order):
    torch.manual_seed(0)
    tm = TimeMix(dim=4, order=order, shift=shift, backend="torch")
    x = torch.randn(2, 4, 5, 3)
    y = tm(x)
    assert y.shape == x.shape
    _all_grads(tm, (y ** 2).mean())


def test_time_mix_decay_init_and_pad_choice():
    tm = TimeMix(dim=5, order=RowMajor(pad=True), backend="torch")
    w = tm.decay()
    assert torch.allclose(w[[0, -1]], torch.exp(torch.tensor([-5.0, 3.0])))
    assert bool((w[1:] > w[:-1]).all())
    zeros = TimeMix(dim=5, order=RowMajor(pad=True), pad_token="zeros", backend="torch")
    zeros.load_state_dict({k: v for k, v in tm.state_dict().items() if k != "pad_token"})
    x = torch.randn(1, 5, 4, 4)
    assert torch.allclose(tm(x), zeros(x), atol=1e-6)          # the learned pad starts at zero


def test_time_mix_is_causal_along_its_scan():
    torch.manual_seed(0)
    for order in (RowMajor(), ColumnMajor(reverse=True, pad=True)):
        tm = TimeMix(dim=3, order=order, shift="uni_shift", backend="torch")
        x = torch.randn(1, 3, 4, 5)
        y = tm(x)
        last = int(order.index(4, 5)[order.index(4, 5) >= 0][-1])        # the last pixel read
        x2 = x.clone()
        x2.view(1, 3, -1)[:, :, last] += 1.0
        y2 = tm(x2)
        changed = (y2 - y).abs().amax(1).flatten() > 0
        assert changed.sum() == 1 and changed[last]


def test_channel_mix_shape_and_gradients():
    torch.manual_seed(0)
    cm = RWKV4ChannelMix(dim=6)
    x = torch.randn(2, 6, 4, 7)
    y = cm(x)
    assert y.shape == x.shape
    _all_grads(cm, (y ** 2).mean())


@pytest.mark.parametrize("heads,pad", [(4, True), (3, True), (4, False)])
def test_multi_head_scan(heads, pad):
    torch.manual_seed(0)
    mhs = MultiHeadScan(dim=12, heads=heads, pad=pad, backend="torch")
    x = torch.randn(2, 4, 6, 12)                                          # (B, H, W, C)
    y = mhs(x)
    assert y.shape == x.shape
    _all_grads(mhs, (y ** 2).mean())


def test_multi_head_rotation_and_errors():
    a = MultiHeadScan(dim=8, block_index=0, backend="torch").orders
    b = MultiHeadScan(dim=8, block_index=1, backend="torch").orders
    assert b == a[1:] + a[:1]
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadScan(dim=10, heads=4)


def test_window_sides_schedule():
    assert [window_sides(i) for i in (1, 2, 3, 4)] == [(8, 2), (8, 2), (8, 4), (8, 4)]


def test_routed_spatial_mix_reduces_to_spatial_mix():
    """Reading A with one window covering the map and plain Q-shift is Vision-RWKV's spatial mix."""
    torch.manual_seed(0)
    ref = SpatialMix(dim=8, backend="torch")
    with torch.no_grad():
        ref.spatial_decay.normal_()
        ref.spatial_first.normal_()
    routed = RoutedSpatialMix(dim=8, order=WindowScan(window=16), shift="q_shift", backend="torch")
    routed.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6 * 7, 8)
    assert torch.allclose(routed(x, (6, 7)), ref(x, (6, 7)), atol=1e-5)


@pytest.mark.parametrize("reading", ["A", "C"])
def test_routed_spatial_mix_readings(reading):
    torch.manual_seed(0)
    mix = RoutedSpatialMix(dim=8, order=WindowScan(window=4), reading=reading, backend="torch")
    x = torch.randn(2, 10 * 6, 8)                                         # 10 x 6: partial windows
    y = mix(x, (10, 6))
    assert y.shape == x.shape
    _all_grads(mix, (y ** 2).mean())
