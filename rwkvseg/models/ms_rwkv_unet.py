"""MS-RWKV-UNet (Jiang, Ji, Fang; Wuhan Univ. J. Nat. Sci. 2026), on the VM-UNet skeleton.

No public code exists: the paper is the whole specification, and every macro-architecture
decision below is ours, on the frame of VM-UNet (the paper's baseline; MS-RWKV Sec. 2, Fig. 1a).
Data flow for an input of side H x W (both divisible by 32, square or not):

    patch embed 4x4/4 + LN         (H/4, c)   = e1
    stage 1 -> merge               (H/8, 2c)  = e2
    stage 2 -> merge               (H/16, 4c) = e3
    stage 3 -> merge               (H/32, 8c) = e4
    stage 4                        (H/32, 8c)
    decoder 1                      (H/32, 8c)
    + e4 -> expand -> decoder 2    (H/16, 4c)      (additive skips: VM-UNet adds the inputs
    + e3 -> expand -> decoder 3    (H/8, 2c)        of encoder stages 4, 3, 2; e1 is unused)
    + e2 -> expand -> decoder 4    (H/4, c)
    final expand x4 + LN, 1x1 conv (H, classes)   logits (sigmoid/softmax inside the loss)

Every stage is a stack of MS-RWKV blocks on channels-last maps (B, H, W, C):

    x1 = FAA(x)                                           (Eq. 10, own residual)
    x2 = x1 + DropPath(MultiHeadScan(x1))                 (Eq. 11-14: LN, heads, scans, LN, Proj)
    x3 = x2 + DropPath(ChannelMix(LN(x2)))                (Eq. 7-9 with P-Shift)

Ablations of the paper as config overrides:
    Table 3  heads=3 (padding on) / padding=False (4 heads)
    Table 4  shift='uni_shift' / 'q_shift' (the paper's "Quad-shift") / 'p_shift'
    Table 5  faa=False removes the module before the block (the FFN / GhostNetV2 rows are not built)
    Table 6  faa=False; shift='none' for "no P-Shift" [choose: the table's 80.17 matches neither
             Table 4 row, so we read it as no token shift at all]
Counts (tests pin them; MACs = conv + linear via torch.utils.flop_counter / 2, WKV not counted):
    ms_rwkv_unet, 256 x 256, 3 channels, 1 class: 61,176,073 parameters, 11.31 GMACs
    ms_rwkv_unet, 224 x 224, 1 channel, 4 classes: 61,173,076 parameters, 8.65 GMACs
(k, v, r of the pad token are projected once per head, not once per padding slot, and the unscan
drops the padding slots before the output projection.) The paper reports neither; most of the
weight sits in the 8c = 768-wide stages (channel mix 4x). Exact counts: book appendix, *Derivations*.
Differences from VM-UNet besides the block: ``in_chans`` is embedded directly (VM-UNet repeats
a grey channel to 3); logits out instead of VM-UNet's in-model sigmoid.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn as nn
from torch import Tensor

from rwkvseg.faa import FAA
from rwkvseg.layers import DropPath, LayerNorm, PatchMerging, check_image, drop_path_rates
from rwkvseg.models.registry import register_model
from rwkvseg.multihead import MultiHeadScan
from rwkvseg.time_mix import RWKV4ChannelMix

__all__ = ["MSRWKVUNetConfig", "MSRWKVBlock", "MSRWKVUNet", "PatchExpand", "FinalExpand"]


# ----------------------------------------------------------------------------------------------
# The block
# ----------------------------------------------------------------------------------------------

class MSRWKVBlock(nn.Module):
    """FAA -> multi-head scan time mix -> channel mix (MS-RWKV Fig. 1b).

    (B, H, W, C) -> (B, H, W, C). ``block_index`` rotates the heads' scan directions.
    """

    def __init__(self, *, dim: int, heads: int, padding: bool, pad_token: str, shift: str,
                 faa: bool, faa_expansion: int, faa_kernels: tuple[int, ...], mlp_ratio: int,
                 drop_path: float, block_index: int, decay_init: tuple[float, float], backend: str) -> None:
        super().__init__()
        self.faa = FAA(channels=dim, expansion=faa_expansion, kernels=faa_kernels) if faa else None
        self.scan = MultiHeadScan(dim=dim, heads=heads, pad=padding, pad_token=pad_token, shift=shift,
                                  block_index=block_index, decay_init=decay_init, backend=backend)
        self.norm = LayerNorm(dim)
        self.channel_mix = RWKV4ChannelMix(dim=dim, hidden_ratio=mlp_ratio, shift=shift)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        if self.faa is not None:
            x = self.faa(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)               # (B, H, W, C)
        x = x + self.drop_path(self.scan(x))
        cm = self.channel_mix(self.norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(cm)


# ----------------------------------------------------------------------------------------------
# VM-UNet's resolution changes (channels-last)
# ----------------------------------------------------------------------------------------------

def _depth_to_space(x: Tensor, scale: int) -> Tensor:
    """(B, H, W, s*s*C) -> (B, s*H, s*W, C): channel blocks (p1, p2, c) become sub-pixels."""
    B, H, W, C = x.shape
    c = C // (scale * scale)
    x = x.view(B, H, W, scale, scale, c).permute(0, 1, 3, 2, 4, 5)               # (B, H, p1, W, p2, c)
    return x.reshape(B, H * scale, W * scale, c)


class PatchExpand(nn.Module):
    """Linear C -> 2C (no bias), rearrange to 2x resolution with C/2 channels, LayerNorm.
    (B, H, W, C) -> (B, 2H, 2W, C/2)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = LayerNorm(dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(_depth_to_space(self.expand(x), 2))


class FinalExpand(nn.Module):
    """Linear c -> 4c (no bias), rearrange to 4x resolution with c/4 channels, LayerNorm.
    (B, H/4, W/4, c) -> (B, H, W, c/4)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 4 * dim, bias=False)
        self.norm = LayerNorm(dim // 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(_depth_to_space(self.expand(x), 4))


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MSRWKVUNetConfig:
    """One MS-RWKV-UNet variant (MS-RWKV Sec. 2; every [choose] is ours)."""

    in_chans: int = 3                               # [choose] embedded directly (VM-UNet repeats 1 -> 3)
    num_classes: int = 1                            # [choose] binary ISIC: 1 logit
    embed_dim: int = 96                             # [choose] VM-UNet's c
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)            # [choose] VM-UNet encoder
    decoder_depths: tuple[int, int, int, int] = (2, 2, 2, 1)    # [choose] VM-UNet decoder
    heads: int = 4                                  # [paper] Sec. 2, Table 3 (3 = ablation)
    padding: bool = True                            # [paper] Table 3 (False = ablation)
    pad_token: str = "learned"                      # [choose] learned vector per head; or "zeros"
    shift: str = "p_shift"                          # [paper] Eq. 15, Table 4 ("uni_shift", "q_shift")
    faa: bool = True                                # [paper] Eq. 10, Tables 5-6
    faa_expansion: int = 2                          # [choose] r, GhostNetV2-like
    faa_kernels: tuple[int, int, int, int] = (3, 5, 7, 9)       # [choose] MCM asymmetric kernels
    decay_init: tuple[float, float] = (-5.0, 3.0)   # [choose] theta range, w = exp(theta)
    mlp_ratio: int = 4                              # [choose] channel-mix hidden 4C (RWKV)
    drop_path_rate: float = 0.2                     # [choose] VM-UNet
    rotate_scans: bool = True                       # [paper] "consecutive modules integrate various scanning approaches"
    wkv_backend: str = "auto"                       # [choose] Triton on CUDA, torch elsewhere

    def __post_init__(self) -> None:
        if self.embed_dim % (4 * self.heads):
            raise ValueError(
                f"embed_dim {self.embed_dim} must be divisible by 4 * heads = {4 * self.heads} "
                "(every stage width c, 2c, 4c, 8c is split into heads; the final expansion needs c/4)"
            )
        for name in ("depths", "decoder_depths"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"MSRWKVUNetConfig.{name} needs 4 entries, got {getattr(self, name)!r}")


class MSRWKVUNet(nn.Module):
    """MS-RWKV-UNet on the VM-UNet skeleton. forward(x (B, in_chans, H, W)) -> logits
    (B, num_classes, H, W); H and W divisible by 32 (patch 4, three 2x merges)."""

    def __init__(self, config: MSRWKVUNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg, c = config, config.embed_dim
        widths = (c, 2 * c, 4 * c, 8 * c)
        n_enc = sum(cfg.depths)
        enc_rates = drop_path_rates(cfg.drop_path_rate, n_enc)
        n_dec = sum(cfg.decoder_depths)
        dec_rates = drop_path_rates(cfg.drop_path_rate, n_dec)[::-1]               # reversed

        def stage(dim: int, depth: int, rates: list[float]) -> nn.Sequential:
            return nn.Sequential(*(
                MSRWKVBlock(dim=dim, heads=cfg.heads, padding=cfg.padding, pad_token=cfg.pad_token,
                            shift=cfg.shift, faa=cfg.faa, faa_expansion=cfg.faa_expansion,
                            faa_kernels=cfg.faa_kernels, mlp_ratio=cfg.mlp_ratio, drop_path=rates[j],
                            block_index=j if cfg.rotate_scans else 0, decay_init=cfg.decay_init,
                            backend=cfg.wkv_backend)
                for j in range(depth)
            ))

        def take(rates: list[float], depths, i: int) -> list[float]:
            start = sum(depths[:i])
            return rates[start:start + depths[i]]

        self.patch_embed = nn.Conv2d(cfg.in_chans, c, kernel_size=4, stride=4)
        self.embed_norm = LayerNorm(c)
        self.enc1 = stage(widths[0], cfg.depths[0], take(enc_rates, cfg.depths, 0))
        self.merge1 = PatchMerging(dim=widths[0])
        self.enc2 = stage(widths[1], cfg.depths[1], take(enc_rates, cfg.depths, 1))
        self.merge2 = PatchMerging(dim=widths[1])
        self.enc3 = stage(widths[2], cfg.depths[2], take(enc_rates, cfg.depths, 2))
        self.merge3 = PatchMerging(dim=widths[2])
        self.enc4 = stage(widths[3], cfg.depths[3], take(enc_rates, cfg.depths, 3))
        d = cfg.decoder_depths
        self.dec1 = stage(widths[3], d[0], take(dec_rates, d, 0))
        self.expand2 = PatchExpand(dim=widths[3])
        self.dec2 = stage(widths[2], d[1], take(dec_rates, d, 1))
        self.expand3 = PatchExpand(dim=widths[2])
        self.dec3 = stage(widths[1], d[2], take(dec_rates, d, 2))
        self.expand4 = PatchExpand(dim=widths[1])
        self.dec4 = stage(widths[0], d[3], take(dec_rates, d, 3))
        self.final_expand = FinalExpand(dim=c)
        self.head = nn.Conv2d(c // 4, cfg.num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = check_image(x, model="MS-RWKV-UNet", in_chans=self.config.in_chans, multiple=32,
                        why="patch 4, three merges")
        e1 = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))             # (B, H/4, W/4, c)
        e2 = self.merge1(self.enc1(e1))                                            # (B, H/8, W/8, 2c)
        e3 = self.merge2(self.enc2(e2))                                            # (B, H/16, W/16, 4c)
        e4 = self.merge3(self.enc3(e3))                                            # (B, H/32, W/32, 8c)
        x = self.enc4(e4)                                                          # (B, H/32, W/32, 8c)
        x = self.dec1(x)                                                           # (B, H/32, W/32, 8c)
        x = self.dec2(self.expand2(x + e4))                                        # (B, H/16, W/16, 4c)
        x = self.dec3(self.expand3(x + e3))                                        # (B, H/8, W/8, 2c)
        x = self.dec4(self.expand4(x + e2))                                        # (B, H/4, W/4, c)
        x = self.final_expand(x).permute(0, 3, 1, 2)                               # (B, c/4, H, W)
        return self.head(x)                                                        # (B, classes, H, W)

    def reparameterize(self) -> "MSRWKVUNet":
        """Fold every P-Shift / Omni-shift into one depthwise 5x5 (inference; same outputs)."""
        for m in self.modules():
            if hasattr(m, "reparameterize") and m is not self:
                m.reparameterize()
        return self


MS_RWKV_UNET = MSRWKVUNetConfig()
# decay_init tops out at w = 1 so the torch WKV path on a CPU keeps long chunks (its chunk length is
# ~30 / max w: the full init's w = e^3 makes it step token by token); the full init is tested per block.
MS_RWKV_UNET_TEST = MSRWKVUNetConfig(embed_dim=16, depths=(1, 1, 1, 1), decoder_depths=(1, 1, 1, 1),
                                     faa_expansion=1, drop_path_rate=0.0, decay_init=(-5.0, 0.0))


@register_model
def ms_rwkv_unet(**overrides) -> MSRWKVUNet:
    """MS-RWKV-UNet, c = 96, depths 2-2-2-2 / 2-2-2-1, 4 padded scan heads, P-Shift, FAA."""
    return MSRWKVUNet(replace(MS_RWKV_UNET, **overrides))


@register_model
def ms_rwkv_unet_test(**overrides) -> MSRWKVUNet:
    """A tiny MS-RWKV-UNet for fast tests (c = 16, one block per stage; not a paper variant)."""
    return MSRWKVUNet(replace(MS_RWKV_UNET_TEST, **overrides))
