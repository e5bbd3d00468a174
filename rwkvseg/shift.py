"""Token shifts: how each token sees its neighbours before the WKV.

Q-shift (Vision-RWKV; RWKV-UNet's spatial and channel mix). Further shifts (Uni-shift, Omni-shift,
P-Shift) sit beside it in this module.
"""
from __future__ import annotations

import torch
from torch import Tensor


def q_shift(x: Tensor, shift: int = 1) -> Tensor:
    """Q-shift of a (B, C, H, W) map by `shift` pixels (spec rwkv-unet.md §5.1).

    Channel group j = [floor((j-1)C/4), floor(jC/4)), j = 1..4. Output pixel (h, w) of group 1
    takes the input at (h, w-shift), group 2 at (h, w+shift), group 3 at (h-shift, w), group 4
    at (h+shift, w); zero where the source lies outside the map. Returns (B, C, H, W).
    """
    B, C, H, W = x.shape
    b = [(j * C) // 4 for j in range(5)]
    s = shift
    out = torch.zeros_like(x)
    out[:, b[0]:b[1], :, s:] = x[:, b[0]:b[1], :, : W - s]        # from the left neighbour
    out[:, b[1]:b[2], :, : W - s] = x[:, b[1]:b[2], :, s:]        # from the right neighbour
    out[:, b[2]:b[3], s:, :] = x[:, b[2]:b[3], : H - s, :]        # from the neighbour above
    out[:, b[3]:b[4], : H - s, :] = x[:, b[3]:b[4], s:, :]        # from the neighbour below
    return out
