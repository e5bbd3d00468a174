"""rwkvseg.engine.GraphedStep: a training step replayed from a CUDA graph does train_step's arithmetic
(losses, weights and the learning-rate schedule), eager and compiled. The GPU tests are skipped
without CUDA; on the CPU, TrainConfig.cuda_graph is ignored, as compile is."""
from functools import partial

import pytest
import torch

import rwkvseg
from rwkvseg.engine import GraphedStep, TrainConfig, make_optimizer, prepare, train_step
from rwkvseg.losses import binary_bce_dice

STEPS = 8


def _train(model_name: str, graphed: bool, compiled: bool = False):
    """STEPS steps of one model from one init on fixed batches at a falling learning rate."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = rwkvseg.create_model(model_name, in_chans=3, num_classes=1).to(dev)
    model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, lr=1e-3, weight_decay=1e-4, capturable=graphed)
    net = torch.compile(model) if compiled else model
    options = dict(bf16=True, channels_last=True, grad_clip=1.0)
    step = (GraphedStep(net, opt, binary_bce_dice, **options) if graphed
            else partial(train_step, net, opt, binary_bce_dice, **options))
    g = torch.Generator(device=dev).manual_seed(1)
    losses = []
    for i in range(STEPS):
        x = torch.rand(4, 3, 64, 64, device=dev, generator=g)
        y = (torch.rand(4, 1, 64, 64, device=dev, generator=g) > 0.6).float()
        torch.manual_seed(100 + i)                               # drop-path draws, as fit_epoch seeds them
        losses.append(step(x, y, lr=1e-3 * (1 - i / STEPS)).item())
    return losses, {k: v.float() for k, v in model.state_dict().items()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("model_name, compiled", [("rwkv_unet_test", False), ("ms_rwkv_unet_test", False),
                                                  ("rwkv_unet_test", True)])
def test_graphed_steps_match_eager_steps(model_name, compiled):
    torch._dynamo.reset()
    eager_losses, eager_state = _train(model_name, graphed=False, compiled=compiled)
    torch._dynamo.reset()
    graph_losses, graph_state = _train(model_name, graphed=True, compiled=compiled)
    assert graph_losses[:3] == pytest.approx(eager_losses[:3], rel=1e-2)     # the eager warm-up steps
    assert graph_losses == pytest.approx(eager_losses, rel=2e-2)              # then the replays
    assert len(set(graph_losses)) == STEPS                                    # each replay saw its own batch
    # The graphed step (capturable AdamW, a learning rate on the device) differs from the eager one in the last
    # bits of bfloat16, and eight steps at lr 1e-3 grow that apart: each tensor within 5 % of its own scale
    # (an element near zero, such as a running mean deep in MS-RWKV-UNet, can differ by more than 5 % of itself).
    for k, v in eager_state.items():
        assert (graph_state[k] - v).abs().max() <= 0.05 * v.abs().max() + 5e-3, k


def test_cuda_graph_is_ignored_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.delenv("RWKVSEG_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    run = prepare(TrainConfig(model="rwkv_unet_test", img_size=32, batch_size=2, epochs=1, max_train_images=4,
                              max_eval_items=2, mode="quick", device="cpu", cuda_graph=True,
                              out_dir=str(tmp_path / "q")))
    assert not isinstance(run.step_fn, GraphedStep)
    assert run.step_fn(*next(iter(run.loader.iter_epoch(0))), lr=1e-3).isfinite()
