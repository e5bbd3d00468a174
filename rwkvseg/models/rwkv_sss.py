"""RWKV-SSS, the stage-scan network of an unfinished draft. EXPERIMENTAL, FOLLOWS AN UNFINISHED DRAFT.

Source: the RWKV-SSS draft, a Stage Scan Segmentation network on Vision-RWKV (Ningxia University;
unfinished, in Chinese).
The draft fixes the stem (Sec. III-A), the global/local window sides and their stage schedule
(Sec. III-B, Eq. 1-7); nearly everything else is our reading (every [choose] below). No code of the
draft exists anywhere; this is built from rwkvseg's own scans, shifts and Bi-WKV.

Data flow for an input of side H x W (both divisible by 32):

    stem: (3x3/2 conv, BN, GELU) x 2  + w * (avgpool 4, 3x3 conv, BN)    (H/4, C1)
    stage 1 = s1 (H/4, C1) -> merge -> stage 2 = s2 (H/8, C2) -> merge -> stage 3 = s3 (H/16, C3)
    -> merge -> stage 4 = s4 (H/32, C4)
    up1(s4) (H/16, C3); up2([., s3]) (H/8, C2); up3([., s2]) (H/4, C1); up4x4([., s1]) (H, d)
    1x1 head -> logits (B, classes, H, W)

A stage block (pre-norm residual sub-blocks, tokens (B, N, C) on an (H, W) grid):

    x = x + DropPath(SpatialMix_global(LN(x)))     Bi-WKV along w_g x w_g windows
    x = x + DropPath(SpatialMix_local(LN(x)))      Bi-WKV along w_l x w_l windows
    x = x + DropPath(ChannelMix(LN(x)))            hidden 4C

Windows (draft Eq. 1-7): w_g = 8 at every stage, w_l(i) = w_g / kappa(i), kappa = 4 for
i <= i* = 2 and 2 after (w_l = 2, 2, 4, 4). "Window" is read as
    reading A (default): one Bi-WKV over all H_i W_i tokens in window-major order
                         (rwkvseg.scan.WindowScan), T = H_i W_i;
    reading C (``reading='C'``, the draft's "low-resolution WKV", Sec. III-C): each window average-pooled to
                         one token, Bi-WKV over the G_i^2 window tokens, nearest upsampling back.
Maps whose side is not a multiple of the window get partial border windows (WindowScan's rule;
ceil-mode pooling in reading C). The "Dynamic Q-shift" (Sec. III-D) is Q-shift with 3/8 of the channels from
each off-path neighbour and 1/8 from each on-path one (rwkvseg.shift.DynamicQShift);
``shift='q_shift'`` is the ablation. The decoder is RWKV-UNet's c -> d -> c up-block (the draft's
"dynamic upsampling", Sec. III-E, is not defined).

Counts (tests pin them; MACs = conv + linear via torch.utils.flop_counter / 2, WKV not counted):
    rwkv_sss, 256 x 256, 3 channels, 1 class: 13,552,066 parameters, 2.83 GMACs
    rwkv_sss, 224 x 224, 1 channel, 4 classes: 13,550,437 parameters, 2.16 GMACs
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.layers import (CNA, DropPath, PatchMerging, UpBlock, check_image, drop_path_rates, map_to_tokens,
                            tokens_to_map)
from rwkvseg.models.registry import register_model
from rwkvseg.scan import ScanOrder, WindowScan
from rwkvseg.spatial_mix import RoutedSpatialMix, VRWKVChannelMix

__all__ = ["RWKVSSSConfig", "RWKVSSS", "SSSBlock", "SSSStem", "window_sides"]

def window_sides(stage: int, *, global_window: int = 8, kappa: tuple[int, int] = (4, 2),
                 switch_stage: int = 2) -> tuple[int, int]:
    """(w_g, w_l) of stage i = 1..4: w_l = w_g / kappa(i), kappa(i) = kappa[0] for i <= i*,
    kappa[1] after (draft Eq. 3-4; i* = 2 [choose])."""
    k = kappa[0] if stage <= switch_stage else kappa[1]
    if global_window % k:
        raise ValueError(f"w_g = {global_window} is not divisible by kappa = {k}: choose w_g a multiple of {k}")
    return global_window, global_window // k


class SSSBlock(nn.Module):
    """Global branch, local branch, channel mix; pre-norm residuals (draft Sec. III-B [choose]).
    Experimental, follows an unfinished draft. forward(x (B, N, C), hw) -> (B, N, C)."""

    def __init__(self, *, dim: int, global_order: ScanOrder, local_order: ScanOrder, reading: str,
                 shift: str, mlp_ratio: int, drop_path: float, backend: str) -> None:
        super().__init__()
        self.norm_g, self.norm_l, self.norm_c = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.global_mix = RoutedSpatialMix(dim=dim, order=global_order, reading=reading, shift=shift, backend=backend)
        self.local_mix = RoutedSpatialMix(dim=dim, order=local_order, reading=reading, shift=shift, backend=backend)
        self.channel_mix = VRWKVChannelMix(dim=dim, hidden_dim=mlp_ratio * dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self.global_mix(self.norm_g(x), hw))
        x = x + self.drop_path(self.local_mix(self.norm_l(x), hw))
        return x + self.drop_path(self.channel_mix(self.norm_c(x), hw))


class SSSStem(nn.Module):
    """Stride-4 stem (draft Sec. III-A): (3x3/2 conv, BN, GELU) twice, plus a residual branch
    (4x4 average pooling, 3x3 conv + BN [choose]) added with a learnable scalar weight (init 1).
    (B, in, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, *, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            CNA(in_chans=in_chans, out_chans=out_chans // 2, kernel_size=3, stride=2, act="gelu"),
            CNA(in_chans=out_chans // 2, out_chans=out_chans, kernel_size=3, stride=2, act="gelu"),
        )
        self.residual = nn.Sequential(nn.AvgPool2d(4), CNA(in_chans=in_chans, out_chans=out_chans,
                                                           kernel_size=3, act="none"))
        self.residual_weight = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.residual_weight * self.residual(x)


@dataclass(frozen=True)
class RWKVSSSConfig:
    """RWKV-SSS (experimental, follows an unfinished draft)."""

    in_chans: int = 1                                    # [paper] draft: 256 x 256 x 1 (ACDC); 3 for ISIC
    num_classes: int = 4                                 # [choose] ACDC: background + RV, Myo, LV
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)    # [paper] C0 = 64; [choose] doubling
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)     # [choose]
    global_window: int = 8                               # [paper] w_g = 8, all stages
    kappa: tuple[int, int] = (4, 2)                      # [paper] Eq. 4
    kappa_switch_stage: int = 2                          # [choose] i*
    reading: str = "A"                                   # [choose] "A" window-major; "C" window as token
    inner_order: str = "raster"                          # [choose] inside a window; or "diagonal"
    shift: str = "dynamic_q_shift"                       # [choose] the draft's Dynamic Q-shift; "q_shift" ablation
    mlp_ratio: int = 4                                   # [choose] channel-mix hidden 4C
    drop_path_rate: float = 0.1                          # [choose]
    decoder_kernel: int = 9                              # [choose] RWKV-UNet's c-d-c up-block
    head_width: int = 32                                 # [choose] width of the last up-block
    wkv_backend: str = "auto"                            # [choose]

    def __post_init__(self) -> None:
        for name in ("widths", "depths"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"RWKVSSSConfig.{name} needs 4 entries, got {getattr(self, name)!r}")
        c1, c2, c3, c4 = self.widths
        if (c2, c3, c4) != (2 * c1, 4 * c1, 8 * c1):
            raise ValueError(f"patch merging doubles the width: widths must be (c, 2c, 4c, 8c), got {self.widths}")


class RWKVSSS(nn.Module):
    """RWKV-SSS network (experimental, follows an unfinished draft). forward(x (B, in, H, W)) ->
    logits (B, classes, H, W); H and W divisible by 32."""

    def __init__(self, config: RWKVSSSConfig) -> None:
        super().__init__()
        self.config = cfg = config
        c1, c2, c3, c4 = cfg.widths
        rates = drop_path_rates(cfg.drop_path_rate, sum(cfg.depths))

        def stage(i: int) -> nn.ModuleList:
            wg, wl = window_sides(i, global_window=cfg.global_window, kappa=cfg.kappa,
                                  switch_stage=cfg.kappa_switch_stage)
            start = sum(cfg.depths[: i - 1])
            return nn.ModuleList(
                SSSBlock(dim=cfg.widths[i - 1],
                         global_order=WindowScan(window=wg, inner=cfg.inner_order),
                         local_order=WindowScan(window=wl, inner=cfg.inner_order),
                         reading=cfg.reading, shift=cfg.shift, mlp_ratio=cfg.mlp_ratio,
                         drop_path=rates[start + j], backend=cfg.wkv_backend)
                for j in range(cfg.depths[i - 1])
            )

        self.stem = SSSStem(in_chans=cfg.in_chans, out_chans=c1)
        self.stage1, self.merge1 = stage(1), PatchMerging(dim=c1)
        self.stage2, self.merge2 = stage(2), PatchMerging(dim=c2)
        self.stage3, self.merge3 = stage(3), PatchMerging(dim=c3)
        self.stage4 = stage(4)
        k = cfg.decoder_kernel
        self.up1 = UpBlock(in_chans=c4, out_chans=c3, kernel_size=k)               # H/32 -> H/16
        self.up2 = UpBlock(in_chans=2 * c3, out_chans=c2, kernel_size=k)           # H/16 -> H/8
        self.up3 = UpBlock(in_chans=2 * c2, out_chans=c1, kernel_size=k)           # H/8 -> H/4
        self.up4 = UpBlock(in_chans=2 * c1, out_chans=cfg.head_width, kernel_size=k)
        self.up4[-1] = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)  # H/4 -> H
        self.head = nn.Conv2d(cfg.head_width, cfg.num_classes, kernel_size=1)

    @staticmethod
    def _run(blocks: nn.ModuleList, x: Tensor) -> Tensor:
        """Blocks on a (B, C, H, W) map, through tokens (B, N, C)."""
        hw = x.shape[-2:]
        t = map_to_tokens(x)
        for block in blocks:
            t = block(t, hw)
        return tokens_to_map(t, hw)

    @staticmethod
    def _merge(merge: PatchMerging, x: Tensor) -> Tensor:
        return merge(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)                    # (B, 2C, H/2, W/2)

    def forward(self, x: Tensor) -> Tensor:
        x = check_image(x, model="RWKV-SSS", in_chans=self.config.in_chans, multiple=32,
                        why="stem 4, three merges")
        s1 = self._run(self.stage1, self.stem(x))                                  # (B, C1, H/4, W/4)
        s2 = self._run(self.stage2, self._merge(self.merge1, s1))                  # (B, C2, H/8, W/8)
        s3 = self._run(self.stage3, self._merge(self.merge2, s2))                  # (B, C3, H/16, W/16)
        s4 = self._run(self.stage4, self._merge(self.merge3, s3))                  # (B, C4, H/32, W/32)
        d = self.up1(s4)                                                           # (B, C3, H/16, W/16)
        d = self.up2(torch.cat([d, s3], dim=1))                                    # (B, C2, H/8, W/8)
        d = self.up3(torch.cat([d, s2], dim=1))                                    # (B, C1, H/4, W/4)
        d = self.up4(torch.cat([d, s1], dim=1))                                    # (B, head, H, W)
        return self.head(d)                                                        # (B, classes, H, W)


RWKV_SSS = RWKVSSSConfig()
RWKV_SSS_TEST = RWKVSSSConfig(widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), head_width=8, drop_path_rate=0.0)


@register_model
def rwkv_sss(**overrides) -> RWKVSSS:
    """RWKV-SSS, widths 64-128-256-512, depths 2-2-2-2, reading A (experimental, follows an unfinished draft)."""
    return RWKVSSS(replace(RWKV_SSS, **overrides))


@register_model
def rwkv_sss_test(**overrides) -> RWKVSSS:
    """A tiny RWKV-SSS for fast tests (experimental, follows an unfinished draft)."""
    return RWKVSSS(replace(RWKV_SSS_TEST, **overrides))
