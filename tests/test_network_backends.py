"""Whole small networks give the same outputs and gradients with the torch and the Triton WKV
(on a GPU, or the CPU interpreter that tests/conftest.py enables without one)."""
import os

import pytest
import torch

import rwkvseg
from rwkvseg.spatial_mix import set_wkv_backend
from rwkvseg.wkv import triton_available

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not triton_available() or not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="Triton (or its CPU interpreter) is not available",
)


@pytest.mark.parametrize(
    "name, shape",
    [("rwkv_unet_test", (1, 3, 32, 48)), ("ms_rwkv_unet_test", (1, 3, 32, 32)), ("rwkv_sss_test", (1, 1, 32, 32))],
)
def test_torch_and_triton_backends_agree_on_a_network(name, shape):
    torch.manual_seed(0)
    model = rwkvseg.create_model(name, in_chans=shape[1], num_classes=2).to(DEVICE).eval()
    x = torch.randn(*shape, device=DEVICE)
    results = {}
    for backend in ("torch", "triton"):
        assert set_wkv_backend(model, backend) > 0
        model.zero_grad(set_to_none=True)
        y = model(x)
        y.square().mean().backward()
        grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
        results[backend] = (y.detach(), grads)
    (y_t, g_t), (y_k, g_k) = results["torch"], results["triton"]
    torch.testing.assert_close(y_k, y_t, rtol=1e-4, atol=1e-5)
    assert len(g_t) == len(g_k)
    for a, b in zip(g_k, g_t):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
