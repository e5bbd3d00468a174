"""A plain U-Net baseline (Ronneberger et al., MICCAI 2015) for comparison in training.

[choose] Five levels of widths 32-64-128-256-512 (half the original 64..1024, close to the
RWKV-UNets' size at ~7.8M parameters), each level two 3x3 conv -> BatchNorm -> ReLU layers with
'same' padding (the original uses unpadded convs and crops; padding keeps logits at input size),
2x2 max-pooling down, 2x2 transposed convolution up (halving the width), skip concatenated as
(upsampled, skip), 1x1 head. Any H, W divisible by 16.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.layers import check_image
from rwkvseg.models.registry import register_model

__all__ = ["UNetConfig", "UNet", "DoubleConv"]


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2, 'same' padding. (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, *, in_chans: int, out_chans: int) -> None:
        super().__init__(
            nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """2x2 transposed conv (Cin -> Cin / 2), concat (upsampled, skip), DoubleConv -> Cout."""

    def __init__(self, *, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_chans, in_chans // 2, 2, stride=2)
        self.conv = DoubleConv(in_chans=in_chans // 2 + out_chans, out_chans=out_chans)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


@dataclass(frozen=True)
class UNetConfig:
    in_chans: int = 3                                          # [choose] RGB (ISIC)
    num_classes: int = 1                                       # [choose] binary: one logit, BCE
    widths: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)  # [choose] half of [paper] 64..1024

    def __post_init__(self) -> None:
        if len(self.widths) != 5:
            raise ValueError(f"UNetConfig.widths needs five levels, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))


class UNet(nn.Module):
    """U-Net: forward(x (B, in_chans, H, W)) -> logits (B, num_classes, H, W), H, W divisible by 16."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        w0, w1, w2, w3, w4 = config.widths
        self.enc0 = DoubleConv(in_chans=config.in_chans, out_chans=w0)
        self.enc1 = DoubleConv(in_chans=w0, out_chans=w1)
        self.enc2 = DoubleConv(in_chans=w1, out_chans=w2)
        self.enc3 = DoubleConv(in_chans=w2, out_chans=w3)
        self.bottleneck = DoubleConv(in_chans=w3, out_chans=w4)
        self.pool = nn.MaxPool2d(2)
        self.up3 = Up(in_chans=w4, out_chans=w3)
        self.up2 = Up(in_chans=w3, out_chans=w2)
        self.up1 = Up(in_chans=w2, out_chans=w1)
        self.up0 = Up(in_chans=w1, out_chans=w0)
        self.head = nn.Conv2d(w0, config.num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = check_image(x, model="UNet", in_chans=self.config.in_chans, multiple=16,
                        why="four 2x2 poolings")
        e0 = self.enc0(x)                                                       # (B, w0, H, W)
        e1 = self.enc1(self.pool(e0))                                           # (B, w1, H/2, W/2)
        e2 = self.enc2(self.pool(e1))                                           # (B, w2, H/4, W/4)
        e3 = self.enc3(self.pool(e2))                                           # (B, w3, H/8, W/8)
        b = self.bottleneck(self.pool(e3))                                      # (B, w4, H/16, W/16)
        d3 = self.up3(b, e3)                                                    # (B, w3, H/8, W/8)
        d2 = self.up2(d3, e2)                                                   # (B, w2, H/4, W/4)
        d1 = self.up1(d2, e1)                                                   # (B, w1, H/2, W/2)
        d0 = self.up0(d1, e0)                                                   # (B, w0, H, W)
        return self.head(d0)                                                    # (B, classes, H, W)


@register_model
def unet(**overrides) -> UNet:
    """Plain U-Net, widths 32-64-128-256-512 (7.76M parameters at 3 channels, 1 class)."""
    return UNet(replace(UNetConfig(), **overrides))
