"""Multiply-accumulates (MACs) of a network forward pass, split by kind.

The papers' "FLOPs" (RWKV-UNet Tables 1, 2, 5, Fig. A1) are MACs counted thop-style
(convolutions and linear layers, plus norms) with Vision-RWKV's per-token charge for the WKV.
`count_macs(model, input_shape)` reports:

    conv_linear   convolutions, matrix products (linear layers, bmm, einsum): exact, from
                  torch.utils.flop_counter.FlopCounterMode, whose FLOPs are 2 x MACs.
    wkv           every call of the rwkvseg::wkv_forward custom op (Bi-WKV and causal WKV):
                  29 * B * T * C, the charge of Vision-RWKV's FLOP script (rwkvseg.wkv.wkv_macs).
                  FlopCounterMode does not see inside the custom op, so its calls are counted
                  here by a dispatch mode. The causal WKV is charged the same (an upper bound).
    norm          estimate: 2 per output element of batch/layer/group norm (scale and shift;
                  the statistics are O(elements) too and are left out, as in thop's eval count).
    elementwise   estimate: 1 per output element of point-wise arithmetic and activations
                  (add, mul, sigmoid, ReLU, SiLU, ...), 4 per output element of bilinear
                  resampling (F.interpolate or rwkvseg.layers.resize_bilinear), 1 per input
                  element of mean pooling. Copies, shifts, reshapes, concatenations and padding
                  count 0.
    total         the sum.
    with_attention()  the total with each WKV call replaced by softmax attention (2 T^2 C MACs):
                  the contrast of RWKV-UNet's Fig. A1.

Only conv_linear is exact and comparable across tools; thop, fvcore and the papers differ in how
they count the rest (the exact counts of every network: book appendix, *Derivations*). By default
the passes run on a copy of the model on the "meta" device (shapes only, no arithmetic: a second
on a CPU even for RWKV-UNet-B); `meta=False` runs the real model on its device. Always eval mode,
under torch.no_grad().
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from rwkvseg import layers  # noqa: F401  (registers the rwkvseg::resize_bilinear op counted below)
from rwkvseg.wkv import wkv_macs

__all__ = ["MACs", "count_macs"]

_aten = torch.ops.aten

_NORM_OPS = {
    _aten.native_batch_norm.default, _aten._native_batch_norm_legit.default,
    _aten._native_batch_norm_legit_no_training.default, _aten.native_layer_norm.default,
    _aten.native_group_norm.default,
}
_POINTWISE_OPS = {
    _aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor, _aten.rsub.Scalar,
    _aten.add.Scalar, _aten.sub.Scalar, _aten.mul.Scalar, _aten.div.Scalar, _aten.lerp.Tensor,
    _aten.sigmoid.default, _aten.relu.default, _aten.silu.default, _aten.gelu.default,
    _aten.tanh.default, _aten.exp.default, _aten.pow.Tensor_Scalar, _aten.square.default,
    _aten.hardswish.default, _aten.softmax.int, _aten._softmax.default,
    _aten.add_.Tensor, _aten.mul_.Tensor, _aten.relu_.default, _aten.silu_.default,
}
_BILINEAR_OPS = {_aten.upsample_bilinear2d.default, _aten.upsample_bilinear2d.vec,
                 torch.ops.rwkvseg.resize_bilinear.default}
_MEAN_OPS = {_aten.mean.dim, _aten.mean.default}


@dataclass(frozen=True)
class MACs:
    """Multiply-accumulates of one forward pass, by kind (see the module docstring)."""

    conv_linear: int
    wkv: int
    norm: int
    elementwise: int
    wkv_calls: int
    wkv_shapes: tuple[tuple[int, int, int], ...] = ()   # (B, T, C) of every WKV call, in order

    @property
    def total(self) -> int:
        return self.conv_linear + self.wkv + self.norm + self.elementwise

    def with_attention(self) -> int:
        """Total MACs if every WKV call became softmax self-attention over its T tokens.

        Attention's token mixing costs 2 T^2 C MACs per call and batch item (Q K^T: T^2 C,
        A V: T^2 C); every projection stays as counted, so the WKV's 29 T C is swapped for it.
        A lower bound for a real attention block (softmax and scaling left out).
        """
        return self.total - self.wkv + sum(2 * B * T * T * C for B, T, C in self.wkv_shapes)

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    def __str__(self) -> str:
        g = 1e9
        return (
            f"conv+linear {self.conv_linear / g:.3f} G, WKV {self.wkv / g:.3f} G ({self.wkv_calls} calls), "
            f"norm {self.norm / g:.3f} G, element-wise {self.elementwise / g:.3f} G, total {self.total / g:.3f} G"
        )


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else sum(_numel(t) for t in x) if isinstance(x, (tuple, list)) else 0


class _OtherWork(TorchDispatchMode):
    """Counts the WKV custom op and estimates norm / element-wise work from aten calls."""

    def __init__(self) -> None:
        super().__init__()
        self.wkv = self.wkv_calls = self.norm = self.elementwise = 0
        self.wkv_shapes: list[tuple[int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet is torch.ops.rwkvseg.wkv_forward:
            B, T, C = args[2].shape                                             # k: (B, T, C)
            self.wkv += wkv_macs(T, C, B)
            self.wkv_calls += 1
            self.wkv_shapes.append((B, T, C))
        elif func in _NORM_OPS:
            self.norm += 2 * _numel(out[0] if isinstance(out, (tuple, list)) else out)
        elif func in _POINTWISE_OPS:
            self.elementwise += _numel(out)
        elif func in _BILINEAR_OPS:
            self.elementwise += 4 * _numel(out)
        elif func in _MEAN_OPS:
            self.elementwise += _numel(args[0])
        return out


def count_macs(model: nn.Module, input_shape: tuple[int, ...], *, meta: bool = True) -> MACs:
    """MACs of model(torch.zeros(input_shape)), e.g. count_macs(create_model("rwkv_unet_t"), (1, 3, 256, 256)).

    Returns a MACs record (conv_linear exact; wkv by Vision-RWKV's convention; norm and
    elementwise estimated; .total the sum; .as_dict() for JSON). One forward pass runs under
    FlopCounterMode and, inside it, a dispatch mode that counts everything else.
    """
    if meta:
        model = copy.deepcopy(model).to("meta")
        device = torch.device("meta")
    else:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    x = torch.zeros(tuple(input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            counter, other = FlopCounterMode(display=False), _OtherWork()
            with counter, other:                                                # `other` sees each op first, then passes it on
                model(x)
    finally:
        model.train(was_training)
    return MACs(
        conv_linear=counter.get_total_flops() // 2, wkv=other.wkv, norm=other.norm,
        elementwise=other.elementwise, wkv_calls=other.wkv_calls, wkv_shapes=tuple(other.wkv_shapes),
    )
