"""The Triton depthwise convolution (rwkvseg.depthwise) against F.conv2d(..., groups=C): values, d/dx and d/dw
on fresh random channels-last inputs, in float64 (ours accumulates in float64 there), float32 and bfloat16, and
the inputs it refuses. Under the CPU interpreter the tiles are 8 columns x 16 channels, so the shapes below
cross column and channel blocks, and some maps are smaller than the kernel."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
from rwkvseg.depthwise import depthwise_conv2d  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(B, C, H, W, K, dtype, seed):
    """x (B, C, H, W) channels_last and w (C, 1, K, K), or (C, 1, KH, KW) for K = (KH, KW)."""
    KH, KW = K if isinstance(K, tuple) else (K, K)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    w = torch.randn(C, 1, KH, KW, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    return x.contiguous(memory_format=torch.channels_last), w


def _ours_and_reference(x, w, stride, padding, seed, split=False):
    """(y, dx, dw) of ours in x's dtype and of F.conv2d in float64 on the same (rounded) inputs."""
    C = x.shape[1]
    xo, wo = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = depthwise_conv2d(xo, wo, stride, padding, split=split)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(DEVICE)
    dx, dw = torch.autograd.grad(y, (xo, wo), dy.to(y.dtype))          # dy in NCHW: backward makes it NHWC
    xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
    yr = F.conv2d(xr, wr, stride=stride, padding=padding, groups=C)
    dxr, dwr = torch.autograd.grad(yr, (xr, wr), dy)
    assert y.shape == yr.shape and y.dtype == x.dtype and dx.dtype == x.dtype and dw.dtype == w.dtype
    for t in (y, dx):
        assert t.is_contiguous(memory_format=torch.channels_last)
    return (y, dx, dw), (yr, dxr, dwr)


# (K, stride, padding, B, C, H, W): the networks' padding ceil((K - stride) / 2) and others; odd and even sizes;
# rectangular kernels (KH, KW) with padding (PH, PW), as MS-RWKV-UNet's MCM runs them
CASES = [
    (3, 1, 1, 2, 1, 5, 6),
    (3, 2, 1, 1, 3, 7, 4),
    (3, 2, 0, 1, 7, 6, 9),
    (5, 1, 2, 1, 7, 9, 10),      # two column blocks
    (5, 2, 2, 1, 19, 8, 11),     # two channel blocks
    (5, 2, 1, 2, 3, 3, 4),       # map smaller than the kernel
    (9, 1, 4, 1, 3, 6, 5),       # map smaller than the kernel
    (9, 2, 4, 1, 2, 4, 11),
    ((1, 9), 1, (0, 4), 2, 19, 5, 11),   # MCM's row convolution, two channel blocks
    ((9, 1), 1, (4, 0), 1, 7, 11, 5),    # MCM's column convolution, map shorter than the kernel's width
    ((3, 5), 2, (1, 2), 1, 5, 7, 10),
]


@pytest.mark.parametrize("split", [False, True], ids=["triton", "split"])
@pytest.mark.parametrize("K,stride,padding,B,C,H,W", CASES)
def test_matches_conv2d_float64(K, stride, padding, B, C, H, W, split):
    """split=True: each part on our kernel or cuDNN's (runs_on_triton), the same values."""
    x, w = _inputs(B, C, H, W, K, torch.float64, seed=C * 100 + H * 10 + W)
    ours, ref = _ours_and_reference(x, w, stride, padding, seed=C, split=split)
    for name, a, b in zip(("y", "dx", "dw"), ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_matches_conv2d_float32():
    x, w = _inputs(2, 5, 7, 6, 5, torch.float32, seed=1)
    ours, ref = _ours_and_reference(x, w, 2, 2, seed=2)
    for name, a, b in zip(("y", "dx", "dw"), ours, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5 * b.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")


def test_bfloat16_and_deterministic_weight_grad():
    """bfloat16 in and out (float32 accumulation): errors within a few bf16 roundings of the largest value;
    the weight gradient is the same bits on a second run."""
    x, w = _inputs(1, 17, 8, 9, 5, torch.bfloat16, seed=3)
    ours, ref = _ours_and_reference(x, w, 2, 2, seed=4)
    for name, a, b in zip(("y", "dx", "dw"), ours, ref):
        torch.testing.assert_close(a.double(), b, rtol=1.6e-2, atol=1.6e-2 * b.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")
    again, _ = _ours_and_reference(x, w, 2, 2, seed=4)
    assert torch.equal(ours[2], again[2])


def test_autocast_casts_like_conv2d():
    x, w = _inputs(1, 3, 6, 6, 3, torch.float32, seed=5)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        y = depthwise_conv2d(x, w, 1, 1)
        yr = F.conv2d(x, w, padding=1, groups=3)
    assert y.dtype == yr.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), yr.float(), rtol=1.6e-2, atol=1.6e-2 * yr.abs().max().item())


@pytest.mark.parametrize("change,message", [
    (lambda x, w: (x.contiguous(), w, 1, 1), "channels_last"),
    (lambda x, w: (x, w.reshape(2, 2, 3, 3), 1, 1), "groups == channels"),
    (lambda x, w: (x, torch.cat([w, w]), 1, 1), "groups == channels"),
    (lambda x, w: (x, w, 3, 1), "stride must be 1 or 2"),
    (lambda x, w: (x, w, (1, 2), 1), "two equal ints"),
    (lambda x, w: (x, w, 1, -1), "padding"),
    (lambda x, w: (x, w, 1, (1, 1, 1)), "one int or two ints"),
    (lambda x, w: (x, w.double(), 1, 1), "dtype"),
    (lambda x, w: (x[:, :, :1, :1], w, 1, 0), "does not fit"),
    (lambda x, w: (x[0], w, 1, 1), "(B, C, H, W)"),
])
def test_refuses_what_it_does_not_handle(change, message):
    x, w = _inputs(1, 4, 5, 5, 3, torch.float32, seed=0)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        depthwise_conv2d(*change(x, w))


def test_benchmark_quick_mode(tmp_path):
    """benchmarks/depthwise.py --quick (the accuracy check at two tiny shapes, interpreter) runs and writes its
    JSON: the real run happens only on a GPU, where a crash costs device time."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}   # the script must set it itself
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "depthwise.py"), "--quick",
                          "--out", str(tmp_path / "dw.json")], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "dw.json").read_text())
    assert record["max_rel_err"] < 1e-5 and record["provenance"]["mode"] == "quick"


_COMPILE_FOR_HOPPER = """
import inspect, itertools, json, os, re, subprocess, sys
from pathlib import Path
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rwkvseg.kernels import depthwise as d

ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
report = {}
# (KH, KW, S, PH, PW): the networks' 5 x 5 stride 2, and MCM's 9 x 1 and 1 x 9 (a weight-gradient tile of one tap)
for (KH, KW, S, PH, PW), (fn, ptrs) in itertools.product(
        [(5, 5, 2, 2, 2), (9, 1, 1, 4, 0), (1, 9, 1, 0, 4)],
        [(d.depthwise_forward_kernel, ["*bf16"] * 3), (d.depthwise_input_grad_kernel, ["*bf16"] * 3),
         (d.depthwise_weight_grad_kernel, ["*bf16", "*bf16", "*fp32"])]):
    names = list(inspect.signature(fn.fn).parameters)
    extra = {"KP": triton.next_power_of_2(KW)} if "KP" in names else {}
    consts = {"KH": KH, "KW": KW, "S": S, "PH": PH, "PW": PW, "F64": False, "BW": 16, "BC": 32, "sxc": 1, "syc": 1,
              **extra}
    sig = {n: "constexpr" if n in consts else ptrs[i] if i < 3 else "i32" for i, n in enumerate(names)}
    src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(n),): v for n, v in consts.items()},
                    attrs={(i,): [["tt.divisibility", 16]] for i in range(3)})
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4))
    spill = None
    if ptxas.exists():
        ptx = Path(sys.argv[1]) / "k.ptx"
        ptx.write_text(ck.asm["ptx"])
        out = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", str(ptx), "-o", os.devnull],
                             capture_output=True, text=True).stderr
        spill = int(re.search(r"(\\d+) bytes spill stores", out).group(1))
    report[f"{fn.fn.__name__} {KH}x{KW}"] = spill
print(json.dumps(report))
"""


def test_kernels_compile_for_hopper(tmp_path):
    """The three kernels build for an H100 (sm_90, no GPU needed; the interpreter never compiles them) at a
    5 x 5 stride-2 shape and MCM's 9 x 1 and 1 x 9, in bfloat16 with a 16 x 32 tile, without register spills
    (where ptxas is present)."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(root), TRITON_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", _COMPILE_FOR_HOPPER, str(tmp_path)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    spills = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(spills) == 9 and all(s in (None, 0) for s in spills.values()), spills


def test_layer_matches_conv2d_and_keeps_the_state_dict():
    """DepthwiseConv2d: nn.Conv2d's parameters and state dict; the same values as nn.Conv2d on any device (the
    Triton path on CUDA channels-last maps, F.conv2d elsewhere)."""
    from rwkvseg.depthwise import DepthwiseConv2d

    torch.manual_seed(0)
    ours = DepthwiseConv2d(6, 5, stride=2, padding=2).to(DEVICE, torch.float64)
    ref = torch.nn.Conv2d(6, 6, 5, 2, 2, groups=6, bias=False).to(DEVICE, torch.float64)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    ref.load_state_dict(ours.state_dict())
    for memory_format in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(2, 6, 9, 10, dtype=torch.float64, device=DEVICE).contiguous(memory_format=memory_format)
        torch.testing.assert_close(ours(x), ref(x))


def test_custom_ops_pass_opcheck():
    """The depthwise custom ops: fake shapes and strides (what a compiled graph asserts), autograd, schema."""
    x, w = _inputs(2, 5, 7, 6, 5, torch.float32, seed=3)
    dy = torch.randn(2, 5, 4, 3, device=DEVICE).contiguous(memory_format=torch.channels_last)
    for split in (False, True):
        torch.library.opcheck(torch.ops.rwkvseg.depthwise_forward.default,
                              (x.detach().requires_grad_(), w.detach().requires_grad_(), 2, 2, 2, split))
        torch.library.opcheck(torch.ops.rwkvseg.depthwise_backward.default,
                              (dy, x.detach(), w.detach(), 2, 2, 2, split))
