"""Without Triton (macOS, Windows: it ships Linux wheels only) the package imports and the CPU
path works: backend="auto" falls back to the PyTorch scans, and a network runs forward and backward.

The check runs in a fresh interpreter where `import triton` fails (sys.modules["triton"] = None),
whether or not Triton is installed here.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["triton"] = None                      # `import triton` raises ImportError
    import torch
    import rwkvseg
    from rwkvseg.wkv import triton_available

    assert not triton_available()
    from rwkvseg.depthwise import DepthwiseConv2d, triton_available as depthwise_triton_available
    assert not depthwise_triton_available()
    conv = DepthwiseConv2d(4, 5, stride=2, padding=2)
    assert conv(torch.randn(1, 4, 9, 9)).shape == (1, 4, 5, 5)  # F.conv2d
    torch.manual_seed(0)
    k, v = torch.randn(2, 64, 8, requires_grad=True), torch.randn(2, 64, 8)
    w, u = torch.rand(8), torch.randn(8)
    for op in (rwkvseg.bi_wkv, rwkvseg.uni_wkv):
        y = op(w, u, k, v)                            # backend="auto" on the CPU
        ref = op(w, u, k, v, backend="naive")
        assert torch.allclose(y, ref, atol=1e-5, rtol=1e-4), (y - ref).abs().max()
        y.sum().backward()
    model = rwkvseg.create_model("rwkv_unet_test").eval()
    x = torch.randn(1, 3, 64, 64)
    out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    assert out.shape[0] == 1 and out.shape[-2:] == (64, 64), out.shape
    assert "triton" not in {m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}
    print("ok", rwkvseg.__version__)
""")


def test_import_and_cpu_path_without_triton():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok"), run.stdout
