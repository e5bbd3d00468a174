"""Scan orders (rwkvseg.scan): exact round trips, padding lengths, routes, window scans."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rwkvseg.scan import (ColumnMajor, Diagonal, RowMajor, Snake, WindowScan, ms_rwkv_head_orders,
                          neighbour_distances)

ORDERS = {
    "row": lambda pad: RowMajor(pad=pad),
    "row_rev": lambda pad: RowMajor(reverse=True, pad=pad),
    "col": lambda pad: ColumnMajor(pad=pad),
    "col_rev": lambda pad: ColumnMajor(reverse=True, pad=pad),
    "snake_row": lambda pad: Snake(pad=pad),
    "snake_col": lambda pad: Snake(axis="column", pad=pad),
    "diag": lambda pad: Diagonal(pad=pad),
    "diag_alt_rev": lambda pad: Diagonal(alternate=True, reverse=True, pad=pad),
    "win2": lambda pad: WindowScan(window=2, pad=pad),
    "win3_diag": lambda pad: WindowScan(window=3, inner="diagonal", pad=pad),
    "win8": lambda pad: WindowScan(window=8, pad=pad),
}

sides = st.integers(min_value=1, max_value=11)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(ORDERS)), pad=st.booleans(), H=sides, W=sides, C=st.integers(1, 3))
def test_unscan_scan_is_identity(name, pad, H, W, C):
    order = ORDERS[name](pad)
    x = torch.randn(2, C, H, W)
    token = torch.randn(C) if pad else None
    seq = order.scan(x, token)
    assert seq.shape == (2, order.length(H, W), C)
    assert torch.equal(order.unscan(seq, H, W), x)
    idx = order.index(H, W)
    assert idx.dtype == torch.int64
    assert torch.equal(idx[idx >= 0].sort().values, torch.arange(H * W))
    if pad:                                     # padding slots hold the pad token
        assert torch.equal(seq[:, idx < 0], token.expand(2, int((idx < 0).sum()), C))


@settings(max_examples=40, deadline=None)
@given(H=sides, W=sides)
def test_padding_lengths_and_reversal(H, W):
    assert RowMajor(pad=True).length(H, W) == H * (W + 1)
    assert ColumnMajor(pad=True).length(H, W) == W * (H + 1)
    assert RowMajor().length(H, W) == H * W
    for cls in (RowMajor, ColumnMajor):
        fwd, rev = cls(pad=True).index(H, W), cls(reverse=True, pad=True).index(H, W)
        assert torch.equal(rev, fwd.flip(0))    # head 2 / 4: the exact reverse of head 1 / 3
    # a pad after every row end: slots W, 2W+1, ... in row-major order
    idx = RowMajor(pad=True).index(H, W)
    assert torch.equal(torch.nonzero(idx < 0).flatten(), torch.arange(1, H + 1) * (W + 1) - 1)


def test_known_small_orders():
    assert RowMajor(pad=True).index(2, 3).tolist() == [0, 1, 2, -1, 3, 4, 5, -1]
    assert ColumnMajor().index(2, 3).tolist() == [0, 3, 1, 4, 2, 5]
    assert Snake().index(3, 2).tolist() == [0, 1, 3, 2, 4, 5]
    assert Diagonal().index(3, 3).tolist() == [0, 1, 3, 2, 4, 6, 5, 7, 8]
    assert Diagonal(alternate=True).index(3, 3).tolist() == [0, 3, 1, 2, 4, 6, 7, 5, 8]
    assert WindowScan(window=2).index(2, 4).tolist() == [0, 1, 4, 5, 2, 3, 6, 7]


@settings(max_examples=30, deadline=None)
@given(g=st.integers(1, 4), stage=st.sampled_from([(8, 2), (8, 4)]))
def test_window_scan_branch_sizes(g, stage):
    """Global (w_g = 8) and local (w_l = 2 or 4) windows: each window's pixels are contiguous."""
    for w in stage:
        H, W = 8 * g, 8 * (g + 1)
        idx = WindowScan(window=w).index(H, W)
        blocks = idx.view(-1, w * w)                           # one row per window
        rows, cols = blocks // W, blocks % W
        assert bool(((rows.amax(1) - rows.amin(1)) == w - 1).all())
        assert bool(((cols.amax(1) - cols.amin(1)) == w - 1).all())
        assert blocks.shape[0] == (H // w) * (W // w)


def test_window_larger_than_map_is_inner_order():
    assert torch.equal(WindowScan(window=8).index(5, 7), RowMajor().index(5, 7))
    assert torch.equal(WindowScan(window=8, inner="diagonal").index(5, 7), Diagonal().index(5, 7))


def test_scan_is_differentiable_and_pad_token_gets_gradient():
    x = torch.randn(1, 2, 3, 4, requires_grad=True)
    token = torch.zeros(2, requires_grad=True)
    order = ColumnMajor(reverse=True, pad=True)
    (order.scan(x, token) * torch.arange(order.length(3, 4)).view(1, -1, 1)).sum().backward()
    assert x.grad.abs().sum() > 0 and token.grad.abs().sum() > 0


def test_heads_and_distances():
    names = [repr(o) for o in ms_rwkv_head_orders(heads=3)]
    assert len(names) == 3 and "ColumnMajor(reverse=False" in names[2]
    d = neighbour_distances(RowMajor(pad=True), 4, 5)
    assert d["horizontal"].max() == 1 and d["vertical"].min() == 6     # W + 1 with the pad
    d = neighbour_distances(RowMajor(), 4, 5)
    assert d["vertical"].min() == 5


def test_bad_inputs_teach():
    with pytest.raises(ValueError, match="pad_token"):
        RowMajor(pad=True).scan(torch.randn(1, 3, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="unscan expects"):
        RowMajor().unscan(torch.randn(1, 5, 3), 2, 2)
    with pytest.raises(ValueError, match="window"):
        WindowScan(window=0)


def test_wkv_receptive_field():
    from rwkvseg.scan import wkv_receptive_field

    grid, pad_share = wkv_receptive_field(RowMajor(pad=True), 4, 5, pixel=(2, 2), w=0.5)
    assert abs(float(grid.sum()) + pad_share - 1) < 1e-12
    assert grid[2, 3:].abs().sum() == 0 and grid[3].abs().sum() == 0      # causal: nothing ahead
    grid, pad_share = wkv_receptive_field(WindowScan(window=2), 4, 4, pixel=(1, 1), w=0.5, causal=False)
    assert pad_share == 0 and bool((grid > 0).all())


def test_routes_cached_per_device_and_usable_for_training():
    """The route tensors are built once per (order, size, device), also when first asked for under
    inference mode, and a model trained afterwards can still save them for its backward."""
    order = RowMajor(pad=True)
    with torch.inference_mode():
        order.scan(torch.randn(1, 2, 3, 5))
    x = torch.randn(2, 4, 3, 5, requires_grad=True)
    seq = order.scan(x, pad_token=torch.zeros(4))
    assert seq.shape == (2, order.length(3, 5), 4)
    order.unscan(seq, 3, 5).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert order.index(3, 5) is order.index(3, 5, "cpu")
