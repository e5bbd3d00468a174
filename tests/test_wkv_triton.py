"""The Triton kernels against the float64 oracle: on a GPU, or on the CPU under TRITON_INTERPRET=1
(tests/conftest.py sets it without a GPU). Small shapes: the interpreter runs step by step."""
import os

import pytest
import torch

from rwkvseg.wkv import bi_wkv, uni_wkv, wkv_dense

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU and TRITON_INTERPRET is not set", allow_module_level=True)

from rwkvseg.kernels import chunked, dispatch, single_pass, tiled  # noqa: E402  (after the interpreter flag is settled)
from rwkvseg.kernels.dispatch import backward_variant, forward_variant  # noqa: E402

OPS = {"bi": (bi_wkv, False), "causal": (uni_wkv, True)}


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    monkeypatch.setattr(dispatch, "POISON_OUTPUTS", True)


def check(op, B, T, C, *, k_scale=2.0, w_lo=0.0, w_hi=0.5, dtype=torch.float32, tol=1e-5, dw_tol=None, seed=0,
          layout="btc"):
    fn, causal = OPS[op]
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, T, C, generator=g, dtype=torch.float64) * k_scale
    v = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    w = w_lo + (w_hi - w_lo) * torch.rand(C, generator=g, dtype=torch.float64)
    u = torch.randn(C, generator=g, dtype=torch.float64)
    gy = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
    y_ref = wkv_dense(*leaves, causal=causal)
    grads_ref = torch.autograd.grad(y_ref, leaves, gy)

    def dev(t, dt):
        t = t.to(DEVICE, dt)
        if layout == "bct":                      # a (B, C, T) tensor seen as (B, T, C)
            t = t.transpose(1, 2).contiguous().transpose(1, 2)
        return t.requires_grad_()

    kk, vv = dev(k, dtype), dev(v, dtype)
    ww, uu = w.to(DEVICE, torch.float32).requires_grad_(), u.to(DEVICE, torch.float32).requires_grad_()
    y = fn(ww, uu, kk, vv, backend="triton")
    assert y.dtype == dtype and not torch.isnan(y).any()
    grads = torch.autograd.grad(y, (ww, uu, kk, vv), gy.to(DEVICE, dtype))
    # dw, du are exactly 0 at T = 1 (and dw at T = 2): there the float32 rounding of y - v is
    # compared with the size of the incoming gradient instead
    floor = (1e-1 if T <= 2 else 1e-2) * gy.norm().item()
    for name, a, b in zip(["y", "dw", "du", "dk", "dv"], (y, *grads), (y_ref, *grads_ref)):
        err = (a.double().cpu() - b).norm().item() / max(b.norm().item(), floor)
        limit = dw_tol if (name == "dw" and dw_tol) else tol
        assert err < limit, f"{name}: relative error {err:.2e} >= {limit:g}"


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("T", [1, 2, 17, 33, 64])
def test_against_oracle(op, T):
    check(op, 2, T, 6, seed=T)                   # C = 6: not a multiple of the channel tile


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "regime",
    # With w in [1, 10] the true dw is ~e^{-w} times the terms it is summed from: the cancellation
    # costs float32 a factor of a few, hence the looser dw bound there.
    # tiny-w: |w| BT log2 e <= 2 everywhere, so the suffix sums come from total - prefix ("tight").
    [dict(k_scale=20.0), dict(w_lo=1.0, w_hi=10.0, dw_tol=1e-4), dict(w_lo=-0.3, w_hi=0.0),
     dict(w_lo=0.0, w_hi=0.05), dict(w_lo=-0.05, w_hi=0.05, k_scale=8.0)],
    ids=["large-k", "huge-w", "negative-w", "tiny-w", "tiny-w-large-k"],
)
def test_hard_inputs(op, regime):
    check(op, 1, 40, 4, **regime, seed=3)


def test_scan_path_matches_fast_path():
    """The segment scan (large |w|) and the separable fast path compute the same sums."""
    g = torch.Generator().manual_seed(12)
    k, v, gy = (torch.randn(2, 40, 6, generator=g).to(DEVICE) for _ in range(3))
    w, u = (torch.rand(6, generator=g) * 0.3).to(DEVICE), torch.randn(6, generator=g).to(DEVICE)
    for causal in (False, True):
        a = [forward_variant(w, u, k, v, causal=causal, allow_fast=f) for f in (True, False)]
        ga = [backward_variant(w, u, k, v, gy, causal=causal, allow_fast=f) for f in (True, False)]
        assert torch.allclose(a[0], a[1], rtol=1e-5, atol=1e-6)
        for x, y in zip(*ga):
            assert torch.allclose(x, y, rtol=1e-4, atol=1e-5)


def test_tight_switch_and_fixed_tile():
    """The benchmark switches change the arithmetic path, not the result: suffix sums by total -
    prefix (tight) or by reversed scans, and a fixed tile instead of the autotuned one."""
    g = torch.Generator().manual_seed(13)
    k, v, gy = (torch.randn(2, 50, 6, generator=g).to(DEVICE) for _ in range(3))
    w, u = (torch.rand(6, generator=g) * 0.02).to(DEVICE), torch.randn(6, generator=g).to(DEVICE)  # tight
    for causal in (False, True):
        ref = forward_variant(w, u, k, v, causal=causal)
        gref = backward_variant(w, u, k, v, gy, causal=causal)
        for kw in (dict(allow_tight=False), dict(tile=(16, 4, 1)), dict(tile=(32, 8, 1), allow_tight=False)):
            assert torch.allclose(forward_variant(w, u, k, v, causal=causal, **kw), ref, rtol=1e-5, atol=1e-6)
            for a, b in zip(backward_variant(w, u, k, v, gy, causal=causal, **kw), gref):
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bct_view_and_bf16():
    check("bi", 2, 24, 8, layout="bct", seed=4)
    check("bi", 2, 24, 8, dtype=torch.bfloat16, tol=1e-2, seed=5)


def test_associative_scan_pair_combine_regression():
    """Triton's associative_scan with a non-commutative combine, both directions, vs a loop."""
    import triton.language as tl

    @triton.jit
    def kernel(z_ptr, out_ptr, rho, BT: tl.constexpr, REVERSE: tl.constexpr):
        j = tl.arange(0, BT)
        z = tl.load(z_ptr + j)[:, None]
        ex, _ = tiled._exclusive_sums(tl.full((BT, 1), rho, tl.float32), z, z, REVERSE)
        tl.store(out_ptr + j[:, None], ex)

    z = torch.randn(16, device=DEVICE)
    for reverse in (False, True):
        out = torch.empty(16, 1, device=DEVICE)
        kernel[(1,)](z, out, 0.9, BT=16, REVERSE=reverse)
        zz = z.cpu().double()
        if reverse:
            ref = [sum(0.9 ** (i - 1 - t) * zz[i] for i in range(t + 1, 16)) for t in range(16)]
        else:
            ref = [sum(0.9 ** (t - 1 - i) * zz[i] for i in range(t)) for t in range(16)]
        assert torch.allclose(out[:, 0].cpu().double(), torch.tensor(ref, dtype=torch.float64), atol=1e-5)


def test_deterministic():
    g = torch.Generator().manual_seed(9)
    k, v = (torch.randn(1, 20, 4, generator=g).to(DEVICE) for _ in range(2))
    w, u = torch.rand(4, generator=g).to(DEVICE), torch.randn(4, generator=g).to(DEVICE)
    runs = []
    for _ in range(2):
        leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
        bi_wkv(*leaves, backend="triton").sum().backward()
        runs.append([t.grad for t in leaves])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("T", [1, 2, 17, 64])
def test_single_pass_forward(T):
    """The single-pass Bi-WKV forward (whole sequence on chip) against the oracle in its regime
    (|w| T log2 e <= 2: Vision-RWKV's w = decay / T), with large keys."""
    check("bi", 2, T, 8, k_scale=20.0, w_lo=-1.0 / T, w_hi=1.3 / T, seed=20 + T)


@pytest.mark.parametrize("T, C, tile", [(1, 13, None), (17, 13, None), (40, 13, None), (70, 13, None),
                                         (32, 8, None), (24, 130, (8, 4, 128, 1, 1))])
def test_chunked_forward_backward(T, C, tile):
    """The chunked forward and backward against the oracle in their regime (|w| T log2 e <= 2),
    with large keys: several chunks and sub-tiles (8 and 4 tokens under the interpreter), T not a
    multiple of either, channel blocks with padding (C = 13), and nothing left to the tiled kernel;
    T and C multiples of the tile (no masks: T = 32, C = 8); 128-channel blocks (C = 130)."""
    g = torch.Generator().manual_seed(40 + T)
    k = torch.randn(2, T, C, generator=g, dtype=torch.float64) * 20
    v = torch.randn(2, T, C, generator=g, dtype=torch.float64)
    w = (-1.0 + 2.3 * torch.rand(C, generator=g, dtype=torch.float64)) / T
    u = torch.randn(C, generator=g, dtype=torch.float64)
    gy = torch.randn(2, T, C, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
    y_ref = wkv_dense(*leaves, causal=False)
    grads_ref = torch.autograd.grad(y_ref, leaves, gy)
    f32 = [t.to(DEVICE, torch.float32) for t in (w, u, k, v)]
    gy32 = gy.to(DEVICE, torch.float32)
    y = forward_variant(*f32, causal=False, impl="chunked", impl_tile=tile)
    assert (y.double().cpu() - y_ref).norm() / y_ref.norm() < 1e-5
    grads = backward_variant(*f32, gy32, causal=False, impl="chunked", impl_tile=tile)
    floor = (1e-1 if T <= 2 else 1e-2) * gy.norm().item()      # dw, du, dk are ~0 at T = 1 (see check)
    for name, a, b in zip(["dw", "du", "dk", "dv"], grads, grads_ref):
        err = (a.double().cpu() - b).norm().item() / max(b.norm().item(), floor)
        assert err < (3e-5 if name == "dw" else 1e-5), f"{name}: relative error {err:.2e}"
    with pytest.MonkeyPatch.context() as mp:                   # the tiled kernel switched off: nothing unwritten
        mp.setattr(tiled, "_launch", lambda *a, **kw: None)
        assert not torch.isnan(forward_variant(*f32, causal=False, impl="chunked", impl_tile=tile)).any()
        _, _, dk, dv = backward_variant(*f32, gy32, causal=False, impl="chunked", impl_tile=tile)
        assert not (torch.isnan(dk).any() or torch.isnan(dv).any())
    assert all(int(c.abs().sum()) == 0 for c in chunked._COUNTERS.values())   # left zeroed for the next call


@pytest.mark.parametrize("impl", ["single_pass", "chunked"])
@pytest.mark.parametrize("tile", [None, (16, 8, 1)])
def test_single_pass_partition(monkeypatch, impl, tile):
    """The single-pass kernel takes exactly the channel blocks inside its bounds and the tiled kernel
    the others: with the tiled kernel switched off, only the declined blocks stay unwritten. The tiled
    kernel's programs either lie inside one such block (default tile) or span several (8 channels). The
    chunked backward splits the channels the same way."""
    g = torch.Generator().manual_seed(21)
    B, T, C = 2, 30, 14                       # blocks of 4 channels under the interpreter
    k, v = (torch.randn(B, T, C, generator=g).to(DEVICE) for _ in range(2))
    w, u = (torch.rand(C, generator=g) * 0.02).to(DEVICE), (torch.randn(C, generator=g) * 0.1).to(DEVICE)
    w[1] = 2.0                                # |w| T log2 e > 2: block 0 declined
    u[9] = -6.0                               # u log2 e < -8: block 2 declined
    bs = single_pass.single_pass_tile(T)[1] if impl == "single_pass" else chunked.chunk_tile(T)[2]
    full = forward_variant(w, u, k, v, causal=False, impl=impl, tile=tile)
    tiled_only = forward_variant(w, u, k, v, causal=False, impl="none")
    assert torch.allclose(full, tiled_only, rtol=1e-5, atol=1e-6)
    gy = torch.randn(B, T, C, generator=g).to(DEVICE)
    if impl == "chunked":
        gfull = backward_variant(w, u, k, v, gy, causal=False, impl="chunked", tile=tile)
        gtiled = backward_variant(w, u, k, v, gy, causal=False, impl="none")
        for a, b in zip(gfull, gtiled):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(tiled, "_launch", lambda *a, **kw: None)
    only_single = forward_variant(w, u, k, v, causal=False, impl=impl)
    declined = torch.zeros(C, dtype=torch.bool)
    for c in (1, 9):
        declined[c // bs * bs:(c // bs + 1) * bs] = True
    assert torch.isnan(only_single[..., declined]).all()
    assert torch.allclose(only_single[..., ~declined], full[..., ~declined], rtol=1e-5, atol=1e-6)
    if impl == "chunked":                       # the backward splits the channels the same way
        _, _, dk, dv = backward_variant(w, u, k, v, gy, causal=False, impl="chunked")
        for got, ref in ((dk, gfull[2]), (dv, gfull[3])):
            assert torch.isnan(got[..., declined]).all()
            assert torch.allclose(got[..., ~declined], ref[..., ~declined], rtol=1e-5, atol=1e-6)


def test_the_fallback_after_a_one_reference_kernel_is_built_with_its_segment_scan_alone(monkeypatch):
    """After the single pass or the chunked kernels, the tiled kernel redoes only the declined blocks, compiled
    without its fast path (half the build); alone (impl="none") it keeps the fast path."""
    seen = []
    monkeypatch.setattr(dispatch, "tiled_forward", lambda *a, **kw: seen.append(("fwd", kw["skip"], kw["allow_fast"])))
    monkeypatch.setattr(dispatch, "tiled_backward",
                        lambda *a, **kw: seen.append(("bwd", kw["skip"], kw["allow_fast"])))
    g = torch.Generator().manual_seed(3)
    B, T, C = 1, 30, 8
    k, v, gy = (torch.randn(B, T, C, generator=g).to(DEVICE) for _ in range(3))
    w, u = (torch.rand(C, generator=g) * 0.02).to(DEVICE), (torch.randn(C, generator=g) * 0.1).to(DEVICE)
    forward_variant(w, u, k, v, causal=False, impl="chunked")
    backward_variant(w, u, k, v, gy, causal=False, impl="chunked")
    forward_variant(w, u, k, v, causal=False, impl="none")
    assert [s[0] for s in seen] == ["fwd", "bwd", "fwd"]
    assert seen[0][1] > 0 and seen[1][1] > 0 and not seen[0][2] and not seen[1][2]
    assert seen[2] == ("fwd", 0, True)
