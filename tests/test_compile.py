"""torch.compile captures whole networks in one graph: the WKV is a custom op with a fake
implementation, and no module leaves Python-side data-dependent control flow in forward.
(backend="aot_eager": graph capture and autograd tracing without a C++ build on the CPU.)"""
import pytest
import torch

import rwkvseg


@pytest.mark.parametrize(
    "name, shape",
    [("rwkv_unet_test", (2, 3, 32, 48)), ("ms_rwkv_unet_test", (2, 3, 32, 32)), ("rwkv_sss_test", (2, 1, 32, 32)),
     ("unet", (1, 3, 32, 32))],
)
def test_whole_network_compiles_without_graph_breaks(name, shape):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = rwkvseg.create_model(name, in_chans=shape[1], num_classes=2).train()
    x = torch.randn(*shape)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.square().mean().backward()
    assert y.shape == (shape[0], 2, shape[2], shape[3])
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
