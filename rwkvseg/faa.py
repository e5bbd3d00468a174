"""FAA, the Feature Aggregation Attention of MS-RWKV (MS-RWKV Sec. 2, Eq. 10, Fig. 2).

    x_hat = MCM_2( DWC_3x3( MCM_1(x) * AM(x) ) ) + x                          (Eq. 10)

modelled on the GhostNetV2 bottleneck (expand, gate with an attention map, restore):

* MCM (multi-scale convolution module): the channels split into four groups, group g runs a
  depthwise 1 x K_g convolution then a depthwise K_g x 1 one (asymmetric kernels, K = 3, 5, 7, 9),
  and the groups are concatenated. The first MCM "expands" (a 1x1 conv C -> rC + BN + GELU before
  the paths), the second "restores" (the paths on rC channels, then a 1x1 conv rC -> C + BN).
* AM (attention map): "two linear layers and an activation" -> sigmoid(W2 GELU(W1 x)), 1x1 convs
  C -> C -> rC: a gate, like GhostNetV2's DFC attention.
* DWC: depthwise 3x3 + BN on the rC gated channels.

Everything except Eq. 10 itself (kernels, r, the 1x1 convs, BN, the sigmoid) is our reading of
the figure and the GhostNetV2 pattern [choose]; the paper gives no code.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.depthwise import depthwise_conv2d, triton_route

__all__ = ["MCM", "AM", "FAA"]


def _groups(channels: int, parts: int = 4) -> list[int]:
    """Sizes of `parts` channel groups [floor(jC/4), floor((j+1)C/4)) (as Q-shift splits)."""
    bounds = [(j * channels) // parts for j in range(parts + 1)]
    return [b - a for a, b in zip(bounds, bounds[1:])]


class MCM(nn.Module):
    """Multi-scale asymmetric depthwise convolutions on four channel groups (FAA, Fig. 2).

    ``role='expand'``: 1x1 conv in -> out + BN + GELU, then the four paths on `out` channels.
    ``role='restore'``: the four paths on `in` channels, then 1x1 conv in -> out + BN.
    Group g (channels split into four nearly equal groups): DW 1 x K_g, then DW K_g x 1.
    (B, in, H, W) -> (B, out, H, W).

    On a GPU the four groups run as two depthwise convolutions over all channels (``merged``): 1 x K then
    K x 1 with K the largest K_g, each group's kernel zero-padded to K (a zero tap adds nothing, and the
    padded taps' gradients are dropped), on the Triton kernels of rwkvseg.depthwise for channels-last maps.
    Same parameters, same function, two launches instead of eight plus a split and a concatenation.
    Elsewhere (CPU, the meta device of rwkvseg.macs) the per-group loop runs: the literal figure, and the
    MAC count of the paper's kernels rather than of the padded ones.
    """

    def __init__(self, *, in_channels: int, out_channels: int, role: str,
                 kernels: tuple[int, ...] = (3, 5, 7, 9)) -> None:
        super().__init__()
        if role not in ("expand", "restore"):
            raise ValueError(f"MCM role must be 'expand' or 'restore', got {role!r}")
        if len(kernels) != 4 or any(k % 2 == 0 for k in kernels):
            raise ValueError(f"MCM needs four odd kernel sizes (one per group), got {kernels}")
        self.role = role
        path_channels = out_channels if role == "expand" else in_channels
        if path_channels < 4:
            raise ValueError(f"MCM splits channels into 4 groups: need >= 4 channels, got {path_channels}")
        self.sizes = _groups(path_channels)
        self.paths = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, c, (1, k), padding=(0, k // 2), groups=c),    # along W (rows)
                nn.Conv2d(c, c, (k, 1), padding=(k // 2, 0), groups=c),    # along H (columns)
            )
            for c, k in zip(self.sizes, kernels)
        )
        if role == "expand":
            self.pre = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.GELU())
            self.post = nn.Identity()
        else:
            self.pre = nn.Identity()
            self.post = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        if x.is_cuda:
            x = self.merged(x, triton=triton_route(x))
        else:
            parts = torch.split(x, self.sizes, dim=1)
            x = torch.cat([path(p) for path, p in zip(self.paths, parts)], dim=1)
        return self.post(x)

    def merged(self, x: Tensor, *, triton: bool) -> Tensor:
        """The four paths as one 1 x K and one K x 1 depthwise convolution (with bias) over all channels;
        triton: on rwkvseg.depthwise's kernels (channels-last x), else F.conv2d."""
        K = max(path[0].kernel_size[1] for path in self.paths)
        rows = torch.cat([F.pad(path[0].weight, [(K - path[0].kernel_size[1]) // 2] * 2) for path in self.paths])
        cols = torch.cat([F.pad(path[1].weight, [0, 0] + [(K - path[1].kernel_size[0]) // 2] * 2)
                          for path in self.paths])
        for weight, bias, padding in ((rows, [p[0].bias for p in self.paths], (0, K // 2)),
                                      (cols, [p[1].bias for p in self.paths], (K // 2, 0))):
            bias = torch.cat(bias)
            if triton:
                x = depthwise_conv2d(x, weight, 1, padding, split=True)
                x = x + bias.to(x.dtype)[:, None, None]
            else:
                x = F.conv2d(x, weight, bias, padding=padding, groups=x.shape[1])
        return x


class AM(nn.Module):
    """Attention map: sigmoid(W2 GELU(W1 x)), 1x1 convs C -> C -> rC. (B, C, H, W) -> (B, rC, H, W)."""

    def __init__(self, *, channels: int, out_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(x))))


class FAA(nn.Module):
    """Feature Aggregation Attention, MS-RWKV Eq. 10: MCM_2(DWC(MCM_1(x) * AM(x))) + x.

    x: (B, C, H, W) -> (B, C, H, W); ``expansion`` r (default 2), ``kernels`` K_g of the four
    asymmetric depthwise paths (default 3, 5, 7, 9) [choose].
    """

    def __init__(self, *, channels: int, expansion: int = 2, kernels: tuple[int, ...] = (3, 5, 7, 9)) -> None:
        super().__init__()
        hidden = expansion * channels
        self.mcm1 = MCM(in_channels=channels, out_channels=hidden, role="expand", kernels=kernels)
        self.am = AM(channels=channels, out_channels=hidden)
        self.dwc = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
                                 nn.BatchNorm2d(hidden))
        self.mcm2 = MCM(in_channels=hidden, out_channels=channels, role="restore", kernels=kernels)

    def forward(self, x: Tensor) -> Tensor:
        gated = self.mcm1(x) * self.am(x)                                   # (B, rC, H, W)
        return self.mcm2(self.dwc(gated)) + x                               # (B, C, H, W)
