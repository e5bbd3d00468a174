"""Token shifts: what a token sees of its neighbours before the WKV.

All shifts map a (B, C, H, W) map to a (B, C, H, W) map; the mixes then interpolate
mix = mu * x + (1 - mu) * shift(x) (MS-RWKV Eq. 1-3, 7-8: shift(x) plays x_{t-1}).

    name        source                       what pixel (h, w) receives
    Uni-shift   RWKV-4                       the previous token of the scan order
    Q-shift     Vision-RWKV (MS-RWKV's       a quarter of the channels from each 4-neighbour
                "Quad-shift", Table 4)
    Omni-shift  Restore-RWKV                 a learned weighted sum of identity and depthwise
                                             1x1, 3x3, 5x5 convolutions
    P-Shift     MS-RWKV Eq. 15               identity + depthwise 1x1 + 3x3 + 5x5 (with biases)
    Dynamic     RWKV-SSS draft (experimental)  Q-shift with more channels from off-path neighbours
    Q-shift

Omni-shift and P-Shift are re-parameterisable: ``reparameterize()`` folds the branches into one
depthwise 5x5 convolution with the same output (MS-RWKV Sec. 2, after Eq. 15). The functions are
q_shift, uni_shift and dynamic_q_shift; the modules are QShift, UniShift, OmniShift, PShift,
DynamicQShift, and make_shift builds one by its config name; mix interpolates a map and its shift.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.scan import ColumnMajor, Diagonal, RowMajor, ScanOrder, WindowScan


def mix(x: Tensor, xs: Tensor, mu: Tensor) -> Tensor:
    """mu * x + (1 - mu) * xs (MS-RWKV Eq. 1-3, 7-8; Vision-RWKV's spatial mix) with mu broadcast
    against x (a per-channel mu viewed onto x's channel axis). One torch.lerp, xs + mu (x - xs): one
    kernel where the two products and their sum take three, and mu's gradient sums one product
    instead of two. mu takes x's dtype, so bf16 maps stay bf16 under autocast."""
    return torch.lerp(xs, x, mu.to(x.dtype))


def q_shift(x: Tensor, shift: int = 1) -> Tensor:
    """Vision-RWKV's Q-shift of a (B, C, H, W) map by `shift` pixels.

    Channel group j = [floor((j-1)C/4), floor(jC/4)), j = 1..4. Output pixel (h, w) of group 1
    takes the input at (h, w-shift), group 2 at (h, w+shift), group 3 at (h-shift, w), group 4
    at (h+shift, w); zero where the source lies outside the map. Returns (B, C, H, W).
    """
    C = x.shape[1]
    return _shift_groups(x, [(j * C) // 4 for j in range(5)], shift)


def _shift_groups(x: Tensor, b: list[int], s: int) -> Tensor:
    """Channels [b0, b1) from the left neighbour, [b1, b2) from the right, [b2, b3) from above,
    [b3, b4) from below, s pixels away; zeros outside the map. (B, C, H, W) -> (B, C, H, W)."""
    H, W = x.shape[-2:]
    out = torch.zeros_like(x)
    out[:, b[0]:b[1], :, s:] = x[:, b[0]:b[1], :, : W - s]        # from the left neighbour
    out[:, b[1]:b[2], :, : W - s] = x[:, b[1]:b[2], :, s:]        # from the right neighbour
    out[:, b[2]:b[3], s:, :] = x[:, b[2]:b[3], : H - s, :]        # from the neighbour above
    out[:, b[3]:b[4], : H - s, :] = x[:, b[3]:b[4], s:, :]        # from the neighbour below
    return out


def uni_shift(x: Tensor, order: ScanOrder | None = None) -> Tensor:
    """Uni-shift (RWKV-4's token shift): each token takes the previous token in scan order.

    x: (B, C, H, W); ``order``: a rwkvseg.scan order (default row-major, RWKV's flattening).
    The first token of the sequence receives zeros. Padding slots are skipped [choose]: the
    shift runs on the unpadded order, so MS-RWKV's pads enter only through the WKV.
    Returns (B, C, H, W).
    """
    plain = RowMajor() if order is None else copy.copy(order)
    plain.pad = False
    B, C, H, W = x.shape
    seq = plain.scan(x)                                                     # (B, H*W, C)
    prev = torch.cat([seq.new_zeros(B, 1, C), seq[:, :-1]], dim=1)         # x_{t-1}
    return plain.unscan(prev, H, W)                                         # (B, C, H, W)


class UniShift(nn.Module):
    """Uni-shift as a module (no parameters); ``order`` is the scan order it follows."""

    def __init__(self, *, order: ScanOrder | None = None) -> None:
        super().__init__()
        self.order = order

    def forward(self, x: Tensor) -> Tensor:
        return uni_shift(x, self.order)


class QShift(nn.Module):
    """Q-shift of Vision-RWKV as a module (no parameters); see q_shift. The MS-RWKV paper
    calls it "Quad-shift" (Table 4): the same operation."""

    def __init__(self, *, shift: int = 1) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: Tensor) -> Tensor:
        return q_shift(x, self.shift)


def dynamic_q_shift(x: Tensor, shares: tuple[float, float, float, float], shift: int = 1) -> Tensor:
    """Q-shift with unequal channel shares per direction (left, right, up, down): RWKV-SSS's
    "Dynamic Q-shift" as we read the draft (Sec. III-D; experimental, follows an
    unfinished draft). Group j takes channels [floor(S_{j-1} C), floor(S_j C)) with S the running
    sum of ``shares``; equal shares give q_shift exactly. (B, C, H, W) -> (B, C, H, W)."""
    if len(shares) != 4 or any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError(f"shares must be 4 non-negative fractions summing to 1, got {shares}")
    C = x.shape[1]
    cum = [0.0]
    for s_ in shares:
        cum.append(cum[-1] + s_)
    return _shift_groups(x, [min(C, int(c * C + 1e-9)) for c in cum], shift)   # floor(S_j C)


def on_path_shares(order: ScanOrder) -> tuple[float, float, float, float]:
    """Dynamic Q-shift shares for a scan order [choose; RWKV-SSS draft Sec. III-D]: directions whose
    neighbour is adjacent in the route are "on path" and get 1/8 of the channels each, the others
    3/8 each. Raster rows (and raster windows): left/right on path. Columns: up/down on path.
    Diagonal orders: no 4-neighbour is on path, so equal shares (plain Q-shift)."""
    if isinstance(order, Diagonal) or (isinstance(order, WindowScan) and order.inner == "diagonal"):
        return (0.25, 0.25, 0.25, 0.25)
    if isinstance(order, ColumnMajor):
        return (0.375, 0.375, 0.125, 0.125)
    return (0.125, 0.125, 0.375, 0.375)


class DynamicQShift(nn.Module):
    """Dynamic Q-shift as a module: q_shift with the channel shares of ``on_path_shares(order)``
    (experimental, follows an unfinished draft)."""

    def __init__(self, *, order: ScanOrder, shift: int = 1) -> None:
        super().__init__()
        self.shares, self.shift = on_path_shares(order), shift

    def forward(self, x: Tensor) -> Tensor:
        return dynamic_q_shift(x, self.shares, self.shift)


def branch_kernel(weights: list[Tensor], biases: list[Tensor | None],
                  alpha: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The one depthwise kernel (C, 1, K, K), K the largest k, and bias (C,) (or None) whose convolution
    equals depthwise_branches(x, weights, biases, alpha): sum_i alpha_i pad(weights[i]) + alpha_0 delta
    (1 at the centre), bias sum_i alpha_i biases[i]. Differentiable in every argument."""
    C, K = weights[0].shape[0], max(wt.shape[-1] for wt in weights)
    ones = weights[0].new_ones(C, 1, 1, 1)
    coef = ([alpha[..., i].reshape(-1, 1, 1, 1) for i in range(alpha.shape[-1])] if alpha is not None
            else [1.0] * (len(weights) + 1))
    weight = coef[0] * F.pad(ones, [K // 2] * 4)                                 # the identity
    bias = None
    for c, wt, b in zip(coef[1:], weights, biases):
        weight = weight + c * F.pad(wt, [(K - wt.shape[-1]) // 2] * 4)
        if b is not None:
            b = c.reshape(-1) * b if alpha is not None else b
            bias = b if bias is None else bias + b
    return weight, bias


def depthwise_branches(x: Tensor, weights: list[Tensor], biases: list[Tensor | None],
                       alpha: Tensor | None = None, *, merged: bool | None = None) -> Tensor:
    """Identity + depthwise convolutions of x (B, C, H, W) with weights[i] (C, 1, k, k) (same padding)
    and biases[i] (C,) or None: summed (alpha None: P-Shift) or weighted, alpha[..., 0] on the identity
    and alpha[..., i + 1] on branch i; alpha (K + 1,) for all channels or (C, K + 1) per channel.

    merged: one K x K depthwise convolution with branch_kernel's kernel instead of one per branch plus
    the sums: the same function, and on a GPU one launch and one pass over x instead of six. None (the
    networks' choice): merged on CUDA; the CPU and the meta device of rwkvseg.macs run the branches, so
    the MAC count is the paper's 1x1 + 3x3 + 5x5."""
    if merged is None:
        merged = x.is_cuda
    if merged:
        weight, bias = branch_kernel(weights, biases, alpha)
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])
    convs = [F.conv2d(x, wt, b, padding=wt.shape[-1] // 2, groups=x.shape[1]) for wt, b in zip(weights, biases)]
    if alpha is None:
        return x + sum(convs)
    coef = [alpha[..., i].reshape(-1, 1, 1) for i in range(alpha.shape[-1])]
    out = coef[0] * x
    for c, conv in zip(coef[1:], convs):
        out = out + c * conv
    return out


class DepthwiseBranches(nn.Module):
    """Identity + depthwise k x k branches (k in ``kernels``), mergeable into one depthwise
    conv of the largest size. Subclasses fix biases and branch weights."""

    def __init__(self, *, channels: int, kernels: tuple[int, ...], bias: bool, weighted: bool) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"depthwise shift kernels must be odd (same padding), got {kernels}")
        self.channels, self.kernels, self.size = channels, tuple(kernels), max(kernels)
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, bias=bias) for k in kernels
        )
        # alpha[0] weighs the identity, alpha[1:] the branches (Omni-shift); fixed ones for P-Shift
        self.alpha = nn.Parameter(torch.ones(len(kernels) + 1)) if weighted else None
        self.merged: nn.Conv2d | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.merged is not None:
            return self.merged(x)
        return depthwise_branches(x, [c.weight for c in self.branches], [c.bias for c in self.branches], self.alpha)

    @torch.no_grad()
    def merged_kernel(self) -> tuple[Tensor, Tensor | None]:
        """The single depthwise kernel (C, 1, K, K) and bias (C,) (or None) equal to the branches:
        sum_k alpha_k * pad(K_k) + alpha_0 * delta (1 at the centre), bias sum_k alpha_k b_k."""
        if self.merged is not None:
            return self.merged.weight.clone(), None if self.merged.bias is None else self.merged.bias.clone()
        return branch_kernel([c.weight for c in self.branches], [c.bias for c in self.branches], self.alpha)

    @torch.no_grad()
    def reparameterize(self) -> "DepthwiseBranches":
        """Replace the branches by one depthwise K x K conv with the same output (in place)."""
        if self.merged is None:
            weight, bias = self.merged_kernel()
            K = self.size
            merged = nn.Conv2d(self.channels, self.channels, K, padding=K // 2, groups=self.channels,
                               bias=bias is not None).to(weight)
            merged.weight.copy_(weight)
            if bias is not None:
                merged.bias.copy_(bias)
            self.merged = merged
            self.branches = nn.ModuleList()
            self.alpha = None
        return self


class PShift(DepthwiseBranches):
    """P-Shift, the panoramic token shift of MS-RWKV (MS-RWKV Eq. 15):

        z_hat = z + DW_1x1(z) + DW_3x3(z) + DW_5x5(z)     on (B, C, H, W), "same" padding

    depthwise, with biases and without BatchNorm, so ``reparameterize()`` folds it exactly into
    one depthwise 5x5 (kernel K5 + pad(K3, 1) + pad(K1, 2) + delta, bias b1 + b3 + b5). The
    paper does not say whether BN follows the convs: without BN the merge is exact in train
    and eval mode [choose].
    """

    def __init__(self, *, channels: int, kernels: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__(channels=channels, kernels=kernels, bias=True, weighted=False)


class OmniShift(DepthwiseBranches):
    """Omni-shift of Restore-RWKV: alpha_0 z + alpha_1 DW_1x1(z) + alpha_2 DW_3x3(z) + alpha_3 DW_5x5(z)
    with learnable scalars alpha (init 1 [choose]) and bias-free depthwise convs; re-parameterisable
    into one depthwise 5x5 like PShift (which is this without the alphas, plus biases)."""

    def __init__(self, *, channels: int, kernels: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__(channels=channels, kernels=kernels, bias=False, weighted=True)


SHIFTS = ("p_shift", "q_shift", "uni_shift", "omni_shift", "dynamic_q_shift", "none")


def make_shift(kind: str, *, channels: int, order: ScanOrder | None = None) -> nn.Module:
    """Build a shift module by config name: 'p_shift' (MS-RWKV default), 'q_shift' (Vision-RWKV,
    the paper's "Quad-shift"), 'uni_shift' (RWKV-4; follows ``order``), 'omni_shift',
    'dynamic_q_shift' (RWKV-SSS draft; shares follow ``order``), or 'none'
    (no shift: the mixes then see x itself, an ablation)."""
    if kind == "p_shift":
        return PShift(channels=channels)
    if kind == "q_shift":
        return QShift()
    if kind == "uni_shift":
        return UniShift(order=order)
    if kind == "omni_shift":
        return OmniShift(channels=channels)
    if kind == "dynamic_q_shift":
        return DynamicQShift(order=order)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown token shift {kind!r}; choose one of {SHIFTS}")
