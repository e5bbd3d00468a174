"""The single-read Gluon forward (rwkvseg/kernels/gluon.py). Gluon does not run under TRITON_INTERPRET=1: on the CPU
the kernel is compiled for an H100 (sm_90) to check that it builds within its shared-memory and register budget; its
numbers are checked on a CUDA GPU against the float64 torch path (skipped elsewhere). Its formulas are the chunked
kernel's, which tests/test_wkv_triton.py checks under the interpreter."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
import triton

from rwkvseg.kernels import chunked, dispatch, tiled, wkv_forward
from rwkvseg.kernels import gluon as gk
from rwkvseg.wkv import wkv_torch_forward

needs_gluon = pytest.mark.skipif(not gk.HAVE_GLUON, reason="this Triton has no Gluon")


def _compile(dtype: str, tp: int):
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    names = ["w_ptr", "u_ptr", "k_ptr", "v_ptr", "y_ptr", "T", "C", "skb", "skt", "svb", "svt", "syb", "syt",
             "TP", "BC", "R", "NW", "VEC"]
    ptr = f"*{dtype}"
    sig = dict(zip(names, ["*fp32", "*fp32", ptr, ptr, ptr] + ["i32"] * 8 + ["constexpr"] * 5))
    vec = gk.BC if dtype == "bf16" else 4
    consts = {(13,): tp, (14,): gk.BC, (15,): gk.R, (16,): gk.NUM_WARPS, (17,): vec}
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(13)}   # as launched at T = 1024, C = 288
    src = GluonASTSource(fn=gk.gluon_forward_kernel, signature=sig, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=gk.NUM_WARPS))


@needs_gluon
@pytest.mark.parametrize("dtype, tp", [("fp32", 1024), ("bf16", 256)])
def test_compiles_for_hopper(dtype, tp, tmp_path, monkeypatch):
    """The kernel builds for sm_90 (no GPU needed) and holds the sequence in the shared memory it was sized for:
    two programs an SM at TP = 1024 in float32 (2 x 8 channels x TP tokens x 4 bytes, plus the scans' scratch).
    An empty Triton cache: the kernel is compiled here, not read back from an earlier run."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton_cache"))
    ck = _compile(dtype, tp)
    size = 2 if dtype == "bf16" else 4
    assert 2 * gk.BC * tp * size <= ck.metadata.shared <= 2 * gk.BC * tp * size + 4096
    assert ".shared" in ck.asm["ptx"] and "cp.async" in ck.asm["ptx"]
    # two programs an SM also need <= 128 registers (2 x 256 threads x 128 = the 64K register file): with R = 8
    # rows a sub-tile it took 134 and ran at 1 program an SM, 1.4x slower
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if ptxas.exists():
        ptx = tmp_path / "k.ptx"
        ptx.write_text(ck.asm["ptx"])
        out = subprocess.run([str(ptxas), "-v", "--gpu-name=sm_90a", str(ptx), "-o", os.devnull],
                             capture_output=True, text=True).stderr
        regs = int(re.search(r"Used (\d+) registers", out).group(1))
        assert regs <= 128 and " 0 bytes spill stores" in out, out


def test_cpu_tensors_never_take_it():
    k = torch.zeros(1, 512, 8)
    assert not gk.usable(k, k)


@pytest.mark.skipif(not torch.cuda.is_available() or not gk.HAVE_GLUON, reason="needs a CUDA GPU and Gluon")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T, C", [(129, 8), (256, 96), (784, 40), (1000, 100), (1024, 288)])
def test_matches_float64_on_gpu(monkeypatch, dtype, T, C):
    """Against the float64 torch path, with one channel block declined (left to the tiled kernel: unwritten when
    the tiled kernel is switched off, so NaN in the poisoned output)."""
    monkeypatch.setattr(dispatch, "POISON_OUTPUTS", True)
    g = torch.Generator().manual_seed(T + C)
    k = (torch.randn(2, T, C, generator=g) * 2).cuda().to(dtype)
    v = torch.randn(2, T, C, generator=g).cuda().to(dtype)
    w, u = (torch.rand(C, generator=g) / T).cuda(), (torch.randn(C, generator=g) / T).cuda()
    w[0] = 3.0 / T                                        # |w| T log2 e > 2: the first block is declined
    gluon = dtype == torch.float32 or C % 16 == 0         # 16-bit inputs need C a multiple of 16 (cp.async)
    assert gk.usable(k, v) == gluon
    ref = wkv_torch_forward(w.double(), u.double(), k.double(), v.double(), False)
    y = wkv_forward(w, u, k, v, causal=False)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() < tol
    monkeypatch.setattr(tiled, "_launch", lambda *a, **kw: None)
    only = wkv_forward(w, u, k, v, causal=False)
    bc = gk.BC if gluon else chunked.chunk_tile(T)[2]
    assert torch.isnan(only[..., :bc]).all() and not torch.isnan(only[..., bc:]).any()
    assert not gk._failed
