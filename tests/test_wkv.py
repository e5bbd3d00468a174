"""The WKV operators: every path against the float64 oracle."""
import pytest
import torch

from rwkvseg.wkv import bi_wkv, uni_wkv, wkv_dense, wkv_loop, wkv_torch_backward, wkv_torch_forward

OPS = {"bi": (bi_wkv, False), "causal": (uni_wkv, True)}


def make(B, T, C, *, k_scale=1.0, w_lo=0.0, w_hi=1.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, T, C, generator=g, dtype=dtype) * k_scale
    v = torch.randn(B, T, C, generator=g, dtype=dtype)
    w = w_lo + (w_hi - w_lo) * torch.rand(C, generator=g, dtype=dtype)
    u = torch.randn(C, generator=g, dtype=dtype)
    return w, u, k, v


def rel(a, b, floor=0.0):
    a, b = a.double(), b.double()
    return ((a - b).norm() / max(b.norm().item(), floor)).item()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 63, 100, 257])
def test_torch_path_matches_oracle_float64(op, T):
    w, u, k, v = make(2, T, 5, k_scale=3.0, seed=T)
    ref = wkv_dense(w, u, k, v, causal=OPS[op][1])
    assert rel(OPS[op][0](w, u, k, v, backend="torch"), ref) < 1e-12


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "regime",
    [
        dict(k_scale=1.0, w_lo=0.0, w_hi=1.0 / 100),      # Vision-RWKV calls: w = spatial_decay / T
        dict(k_scale=20.0, w_lo=1e-4, w_hi=1e-3),         # k up to ~60
        dict(k_scale=1.0, w_lo=1.0, w_hi=10.0),           # huge decay
        dict(k_scale=1.0, w_lo=-0.05, w_hi=0.0),          # negative decay (weights grow)
        dict(k_scale=3.0, w_lo=-0.5, w_hi=2.0),           # both signs
    ],
    ids=["vrwkv", "large-k", "huge-w", "negative-w", "mixed"],
)
@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_float32_paths_within_1e5(op, regime, backend):
    w, u, k, v = make(2, 100, 7, **regime, seed=1)
    ref = wkv_dense(w, u, k, v, causal=OPS[op][1])
    y = OPS[op][0](w.float(), u.float(), k.float(), v.float(), backend=backend)
    assert y.dtype == torch.float32
    assert rel(y, ref) < 1e-5


def test_extreme_k_range_matches_float64():
    w, u, k, v = make(1, 200, 4, k_scale=1.0, seed=3)
    k = torch.linspace(-60, 60, 200, dtype=torch.float64)[None, :, None].repeat(1, 1, 4)
    k = k[:, torch.randperm(200)]
    for causal in (False, True):
        ref = wkv_dense(w, u, k, v, causal=causal)
        y = wkv_torch_forward(w.float(), u.float(), k.float(), v.float(), causal)
        assert rel(y, ref) < 1e-5


@pytest.mark.parametrize("op", OPS)
def test_long_sequence_4096(op):
    """Beyond the dense oracle's reach: the float32 path against the float64 torch path."""
    w, u, k, v = make(1, 4096, 3, k_scale=2.0, w_lo=0.0, w_hi=2.0 / 4096, seed=4)
    causal = OPS[op][1]
    ref = wkv_torch_forward(w, u, k, v, causal)
    y = OPS[op][0](w.float(), u.float(), k.float(), v.float(), backend="torch")
    assert rel(y, ref) < 1e-5


def test_loop_ties_dense_and_scans():
    w, u, k, v = make(2, 40, 3, seed=5, w_lo=-0.1, w_hi=0.5)
    for causal in (False, True):
        ref = wkv_dense(w, u, k, v, causal=causal)
        assert rel(wkv_loop(w, u, k, v, causal=causal), ref) < 1e-12


def test_identities():
    w, u, k, v = make(2, 37, 4, seed=6, w_lo=-0.2, w_hi=0.8)
    y = bi_wkv(w, u, k, v, backend="torch")
    assert rel(bi_wkv(w, u, k.flip(1), v.flip(1), backend="torch"), y.flip(1)) < 1e-12     # reversal
    assert rel(bi_wkv(w, u, k + 17.0, v, backend="torch"), y) < 1e-12                       # shift of k
    assert (y <= v.amax(1, keepdim=True) + 1e-12).all() and (y >= v.amin(1, keepdim=True) - 1e-12).all()
    y1 = bi_wkv(w, u, k[:, :1], v[:, :1], backend="torch")
    assert torch.equal(y1, v[:, :1])                                                        # T = 1
    # at w = 0 the |t-i| and |t-i|-1 forms agree: every weight off the diagonal is e^{k_i}
    z = torch.zeros_like(w)
    logits = k[:, None, :, :].expand(-1, 37, -1, -1).clone()
    idx = torch.arange(37)
    logits[:, idx, idx] = (u + k)
    ref = (torch.softmax(logits, 2) * v[:, None]).sum(2)
    assert rel(bi_wkv(z, u, k, v, backend="torch"), ref) < 1e-12


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("w_range", [(0.0, 0.3), (-0.3, 0.0), (1.0, 4.0)], ids=["pos", "neg", "huge"])
def test_gradcheck_torch_path(op, w_range):
    w, u, k, v = make(2, 37, 3, w_lo=w_range[0], w_hi=w_range[1], seed=7)
    args = [t.clone().requires_grad_() for t in (w, u, k, v)]
    fn = OPS[op][0]
    assert torch.autograd.gradcheck(lambda *a: fn(*a, backend="torch"), args)


@pytest.mark.parametrize("op", OPS)
def test_closed_form_gradients_match_autograd_of_oracle(op):
    causal = OPS[op][1]
    w, u, k, v = make(3, 100, 4, k_scale=4.0, w_lo=-0.1, w_hi=0.6, seed=8)
    g = torch.randn(3, 100, 4, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
    ref = torch.autograd.grad(wkv_dense(*leaves, causal=causal), leaves, g)
    ours = wkv_torch_backward(w, u, k, v, g, causal)
    for a, b in zip(ours, ref):
        assert rel(a, b) < 1e-10
    ours32 = wkv_torch_backward(w.float(), u.float(), k.float(), v.float(), g.float(), causal)
    for a, b in zip(ours32, ref):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(dtype):
    w, u, k, v = make(2, 64, 8, seed=9, w_hi=0.05)
    ref = wkv_dense(w, u, k, v, causal=False)
    kh, vh = k.to(dtype).requires_grad_(), v.to(dtype).requires_grad_()
    y = bi_wkv(w.float(), u.float(), kh, vh, backend="torch")
    assert y.dtype == dtype and rel(y, ref) < 1e-2
    y.float().sum().backward()
    assert kh.grad.dtype == dtype and vh.grad.dtype == dtype


def test_strided_inputs_and_BCT_view():
    w, u, k, v = make(2, 50, 6, seed=10)
    ref = bi_wkv(w, u, k, v, backend="torch")
    k_bct, v_bct = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()   # (B, C, T) storage
    assert rel(bi_wkv(w, u, k_bct.transpose(1, 2), v_bct.transpose(1, 2), backend="torch"), ref) < 1e-12
    k2 = torch.randn(2, 100, 6, dtype=torch.float64)
    k2[:, ::2] = k
    assert rel(bi_wkv(w, u, k2[:, ::2], v, backend="torch"), ref) < 1e-12


def test_deterministic():
    w, u, k, v = make(4, 300, 8, seed=11, dtype=torch.float32)
    outs = []
    for _ in range(2):
        leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
        y = bi_wkv(*leaves, backend="torch")
        y.sum().backward()
        outs.append([y] + [t.grad for t in leaves])
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(4), torch.zeros(4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 3)), "v must have the shape"),
        ((torch.zeros(4), torch.zeros(4), torch.zeros(5, 4), torch.zeros(5, 4)), "rank 2"),
        ((torch.zeros(4), torch.zeros(4), torch.zeros(2, 5, 4, dtype=torch.int64), torch.zeros(2, 5, 4)), "floating"),
        ((torch.zeros(4), torch.zeros(4), torch.zeros(2, 0, 4), torch.zeros(2, 0, 4)), "T = 0"),
        ((torch.zeros(3), torch.zeros(4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 4)), r"w must have shape \(C,\)"),
    ],
    ids=["shape-mismatch", "wrong-rank", "integer", "empty", "w-shape"],
)
def test_bad_input_raises(args, match):
    with pytest.raises(ValueError, match=match):
        bi_wkv(*args)


def test_unknown_backend_and_triton_on_cpu_without_interpreter(monkeypatch):
    w, u, k, v = make(1, 4, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend must be one of"):
        bi_wkv(w, u, k, v, backend="cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        bi_wkv(w, u, k, v, backend="triton")


def test_torch_compile_captures_one_graph():
    """The custom op keeps torch.compile from breaking the graph (aot_eager: no C++ build)."""
    w, u, k, v = make(2, 16, 4, dtype=torch.float32)

    def block(w, u, k, v):
        return torch.sigmoid(k) * bi_wkv(w, u, k, v) + uni_wkv(w, u, k, v)

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    assert rel(compiled(w, u, k, v), block(w, u, k, v)) < 1e-6
    leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
    compiled(*leaves).sum().backward()
    assert all(t.grad is not None for t in leaves)
