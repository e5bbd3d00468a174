"""Token shifts (rwkvseg.shift): shapes, what each shift sees, exact re-parameterisation."""
import pytest
import torch

from rwkvseg.scan import ColumnMajor, Diagonal, RowMajor, WindowScan
from rwkvseg.shift import (SHIFTS, DynamicQShift, OmniShift, PShift, QShift, depthwise_branches, dynamic_q_shift,
                           make_shift, mix, on_path_shares, q_shift, uni_shift)


@pytest.mark.parametrize("shape, mu_shape", [((2, 6, 4, 5), (1, 6, 1, 1)),       # (B, C, H, W) maps
                                             ((2, 4, 5, 6), (6,)),               # (B, N, C) tokens
                                             ((2, 3, 4, 2, 3), (3, 1, 2, 3))])   # multihead's (B, 3, P, n, d)
def test_mix_is_the_interpolation_with_its_gradients(shape, mu_shape):
    """mix (one torch.lerp) is mu x + (1 - mu) xs, mu broadcast, values and gradients (float64, mu off [0, 1])."""
    x, xs = (torch.randn(shape, dtype=torch.float64, requires_grad=True) for _ in range(2))
    mu = (torch.rand(mu_shape, dtype=torch.float64) * 3 - 1).requires_grad_()
    ours = mix(x, xs, mu)
    written = mu * x + (1 - mu) * xs
    torch.testing.assert_close(ours, written, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (x, xs, mu), g), torch.autograd.grad(written, (x, xs, mu), g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert mix(x.bfloat16(), xs.bfloat16(), mu).dtype == torch.bfloat16       # mu takes the map's dtype


@pytest.mark.parametrize("kind", SHIFTS)
def test_shapes(kind):
    x = torch.randn(2, 8, 5, 7)
    assert make_shift(kind, channels=8, order=RowMajor()).forward(x).shape == x.shape


def test_qshift_module_is_q_shift_and_sees_neighbours():
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(QShift()(x), q_shift(x))
    y = q_shift(x)
    assert y[0, 0, 1, 1] == x[0, 0, 1, 0] and y[0, 1, 1, 1] == x[0, 1, 1, 2]
    assert y[0, 2, 1, 1] == x[0, 2, 0, 1] and y[0, 3, 1, 1] == x[0, 3, 2, 1]


def test_uni_shift_follows_the_order():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    assert uni_shift(x).flatten().tolist() == [0, 0, 1, 2, 3, 4]
    assert uni_shift(x, ColumnMajor()).flatten().tolist() == [0, 3, 4, 0, 1, 2]
    # padding slots are skipped: the same as the unpadded order
    assert torch.equal(uni_shift(x, RowMajor(pad=True)), uni_shift(x))


def test_dynamic_q_shift_shares():
    x = torch.randn(2, 16, 4, 5)
    assert torch.equal(dynamic_q_shift(x, (0.25,) * 4), q_shift(x))
    assert on_path_shares(WindowScan(window=2)) == (0.125, 0.125, 0.375, 0.375)
    assert on_path_shares(Diagonal()) == (0.25,) * 4
    y = DynamicQShift(order=RowMajor())(x)
    # shares (1/8, 1/8, 3/8, 3/8) of 16 channels: 0-1 left, 2-3 right, 4-9 from above, 10-15 below
    assert torch.equal(y[:, 4:10, 1:], x[:, 4:10, :-1]) and torch.equal(y[:, 0:2, :, 1:], x[:, 0:2, :, :-1])


def _randomise(m):
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return m


@pytest.mark.parametrize("cls", [PShift, OmniShift])
@pytest.mark.parametrize("train", [True, False])
def test_reparameterize_is_exact(cls, train):
    torch.manual_seed(0)
    m = _randomise(cls(channels=6)).train(train)
    x = torch.randn(3, 6, 9, 11)
    before = m(x)
    weight, bias = m.merged_kernel()
    assert weight.shape == (6, 1, 5, 5)
    m.reparameterize()
    assert len(m.branches) == 0 and m.merged is not None
    after = m.train(train)(x)
    assert (before - after).abs().max() < 1e-5 * max(1.0, before.abs().max().item())


def test_pshift_default_init_merge_below_1e6():
    """The merge is exact up to rounding: max |diff| < 1e-6 in fp32, relative to max |output|
    (outputs here reach ~6, where one fp32 ulp is 5e-7)."""
    torch.manual_seed(1)
    m = PShift(channels=8)
    x = torch.randn(2, 8, 16, 16)
    before = m(x)
    assert (before - m.reparameterize()(x)).abs().max() < 1e-6 * before.abs().max()


def test_pshift_identity_at_zero_weights():
    m = PShift(channels=3)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(m(x), x)


def test_unknown_shift_teaches():
    with pytest.raises(ValueError, match="choose one of"):
        make_shift("diagonal_shift", channels=4)


@pytest.mark.parametrize("alpha", [None, "shared", "per_channel"])
def test_merged_branches_match_branches_values_and_gradients(alpha):
    """depthwise_branches(merged=True), the networks' GPU route (one K x K convolution with branch_kernel's
    kernel), against the branches in float64: the output and the gradients of x, every weight, bias and alpha."""
    torch.manual_seed(4)
    C = 6
    x = torch.randn(2, C, 9, 11, dtype=torch.float64, requires_grad=True)
    weights = [(0.3 * torch.randn(C, 1, k, k, dtype=torch.float64)).requires_grad_() for k in (1, 3, 5)]
    biases = [torch.randn(C, dtype=torch.float64, requires_grad=True) for _ in weights]
    a = {None: None, "shared": torch.randn(4, dtype=torch.float64),
         "per_channel": torch.randn(C, 4, dtype=torch.float64)}[alpha]
    if a is not None:
        a.requires_grad_()
    leaves = [x, *weights, *biases] + ([a] if a is not None else [])
    g = torch.randn(2, C, 9, 11, dtype=torch.float64)
    results = []
    for merged in (False, True):
        y = depthwise_branches(x, weights, biases, a, merged=merged)
        results.append((y, torch.autograd.grad(y, leaves, g)))
    torch.testing.assert_close(results[1][0], results[0][0])
    for g_merged, g_branches in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(g_merged, g_branches)
