"""Every registered network: forward and backward on the CPU at a small non-square size, with 1 or
3 input channels, logits at the input size (classifiers: one row per image)."""
import pytest
import torch

from rwkvseg.models import create_model, list_models


@pytest.mark.parametrize("index, name", list(enumerate(list_models())), ids=lambda x: str(x))
def test_forward_backward_non_square(index, name):
    torch.manual_seed(0)
    in_chans = (1, 3)[index % 2]
    model = create_model(name, in_chans=in_chans, num_classes=3)
    x = torch.randn(2, in_chans, 64, 96)                       # divisible by every network's stride (32)
    y = model(x)
    expected = (2, 3) if "encoder" in name else (2, 3, 64, 96)
    assert y.shape == expected and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
