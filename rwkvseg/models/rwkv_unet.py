"""RWKV-UNet (Jiang et al., arXiv 2501.08458) and its encoders as ImageNet-style classifiers.

Data flow for an input of side H (any H, W divisible by 16, square or not; RWKV-UNet Fig. 1):

    stem (H, 24) -> stage I = F1 (H/2, C1) -> II = F2 (H/4, C2) -> III = F3 (H/8, C3, IR-RWKV)
    -> IV (H/16, C4, IR-RWKV) ; CCM refines (F1, F2, F3) ;
    up1 (H/8, C3) -> up2 (H/4, C2) -> up3 (H/2, C1) -> up4 (H, 24) -> head (H, classes)

Parameter counts, exact, 3 input channels (tests pin them; derived in the book appendix, *Derivations*):

    | network               | T         | S         | B          |
    |-----------------------|-----------|-----------|------------|
    | encoder (no head)     | 2,938,472 | 9,416,048 | 16,694,040 |
    | encoder + 1000 head   | 3,099,792 | 9,609,432 | 16,935,520 |
    | full, 1 class         | 3,145,761 | 9,701,945 | 17,125,513 |
    | paper Table 5         | 3.3M      | 9.9M      | 17.4M      |
    | paper Table 1 (enc.)  | 2.6M      | 9.4M      | 16.7M      |

How they relate to the paper: Table 5's numbers equal the full network *plus* the unused ImageNet
head (LN2d + Linear(C4, 1000): +161,320 / 193,384 / 241,480 -> 3.31M / 9.90M / 17.37M); the
network that segments has 3.1M / 9.7M / 17.1M. Table 1 matches our encoder for S and B; Enc-T's
"2.6M" matches no count (2.94M without, 3.10M with the head): we treat it as a typo. The
authors' Oct-2025 code builds a spatial mix in every encoder block and dead LayerNorms in the
decoder (T 5.68M as their script reports); we build only what forward uses and load with
strict=True.

MACs (rwkvseg.macs.count_macs): conv + linear MACs equal the authors' network exactly
(T 256x256: 3.585 G; B 224x224, gray -> 3, 9 classes: 10.968 G); with Vision-RWKV's 29 N C per
Bi-WKV and an estimate for norms and element-wise work the totals are within 1% of the paper's
3.78 G (Table 5) and 11.22 G (Table 2) (T 3.76 G, B 11.25 G).

Where paper and code differ, we follow the code (it produced every reported number):
- block norm order (Eq. 1, 3) -- see rwkvseg.ir; `paper_norm_order=True` gives the paper's;
- CCM's norm on the channel-mix output, concatenation order (F3, F2, F1) -- see rwkvseg.ccm;
- the decoder block is c -> d -> c (1x1, DW 9x9, 1x1): Table 7's best and the code; the prose
  of Sec. 4.3 prefers c -> c -> d;
- the stem's SE gate uses SiLU; the per-stage activation list of the code reaches nothing else.
Our additions: any non-square size (the code folds tokens as sqrt(N) x sqrt(N) and fixes CCM's
sizes at construction), an explicit `in_chans`, and `gray_to_rgb` for the code's 1 -> 3 channel
repetition only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.ccm import CCM
from rwkvseg.ir import IRBlock
from rwkvseg.layers import LayerNorm2d, UpBlock, check_image, drop_path_rates
from rwkvseg.models.registry import register_model
from rwkvseg.spatial_mix import SpatialMix

__all__ = ["RWKVUNetConfig", "RWKVUNetEncoder", "RWKVUNet", "RWKVUNetClassifier", "init_encoder_weights", "layer_table"]


@dataclass(frozen=True)
class RWKVUNetConfig:
    """One RWKV-UNet variant. The classifier reads only the encoder fields and num_classes."""

    in_chans: int = 3                                   # [choose] explicit; the code hard-wires 3
    num_classes: int = 1                                # [paper] binary tasks: 1 output, BCE (Table 5)
    stem_width: int = 24                                # [paper] Table 1
    depths: tuple[int, int, int, int] = (2, 2, 4, 2)    # [paper] Table 1, Enc-T
    widths: tuple[int, int, int, int] = (32, 48, 96, 160)          # [paper] Table 1, Enc-T
    expansions: tuple[float, float, float, float] = (2.0, 2.5, 3.0, 3.5)  # [paper] Table 1, Enc-T
    kernel_size: int = 5                                # [paper] Eq. 4: 5x5 DW-Conv
    pre_norms: tuple[str, str, str, str] = ("bn", "bn", "ln", "ln")   # [code] pre-norm per stage
    mix_stages: tuple[bool, bool, bool, bool] = (False, False, True, True)  # [paper] Table 1
    drop_path_rate: float = 0.05                        # [code] linspace(0, 0.05) over the blocks
    use_ccm: bool = True                                # [paper] Sec. 3.4 (Table 9 ablates it)
    ccm_hidden_rate: float = 2.0                        # [code] hidden 6 C1 for 3 C1 channels
    ccm_drop_path: float = 0.05                         # [code]
    decoder_kernel: int = 9                             # [paper] Table 7: c-d-c with 9x9 is best
    gray_to_rgb: bool = False                           # [choose] repeat 1 -> 3 channels only when asked (the code always does for S/B)
    wkv_backend: str = "auto"                           # [choose] Triton on CUDA, torch elsewhere
    paper_norm_order: bool = False                      # [choose] the code's norm order (rwkvseg.ir)

    def __post_init__(self) -> None:
        for name in ("depths", "widths", "expansions", "pre_norms", "mix_stages"):
            value = getattr(self, name)
            if len(value) != 4:
                raise ValueError(f"RWKVUNetConfig.{name} needs one entry per stage (4), got {value!r}")
            object.__setattr__(self, name, tuple(value))   # lists from JSON become tuples
        if min(self.depths) < 1:
            raise ValueError(f"every stage needs at least one block, got depths={self.depths}")


class RWKVUNetEncoder(nn.Module):
    """Stem + stages I-IV (Sec. 3.2, Table 1). forward(x (B, in_chans, H, W)) -> (F1, F2, F3, F4).

    First block of stage i: stride 2, expansion 2 e_i applied to the previous width, no skip, no
    mix. Other blocks: stride 1, e_i, skip, spatial mix where `mix_stages` says so. Drop-path
    rates: linspace(0, rate, sum(depths)) over the stage blocks in order (first blocks get a rate
    they never use, as in the code).
    """

    def __init__(self, config: RWKVUNetConfig) -> None:
        super().__init__()
        c = config
        self.stem = IRBlock(
            in_chans=c.in_chans, out_chans=c.stem_width, expansion=1.0, kernel_size=c.kernel_size,
            stride=1, pre_norm="none", mix=False, se=True, se_act="silu", skip=False,
        )
        rates = drop_path_rates(c.drop_path_rate, sum(c.depths))
        stages, prev, start = [], c.stem_width, 0
        for i in range(4):
            blocks = []
            for j in range(c.depths[i]):
                first = j == 0
                blocks.append(IRBlock(
                    in_chans=prev if first else c.widths[i], out_chans=c.widths[i],
                    expansion=2 * c.expansions[i] if first else c.expansions[i],
                    kernel_size=c.kernel_size, stride=2 if first else 1, pre_norm=c.pre_norms[i],
                    mix=c.mix_stages[i] and not first, skip=not first,
                    drop_path=rates[start + j], wkv_backend=c.wkv_backend,
                    paper_norm_order=c.paper_norm_order,
                ))
            stages.append(nn.Sequential(*blocks))
            prev, start = c.widths[i], start + c.depths[i]
        self.stage1, self.stage2, self.stage3, self.stage4 = stages

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.stem(x)                                                        # (B, 24, H, W)
        f1 = self.stage1(x)                                                     # (B, C1, H/2, W/2)
        f2 = self.stage2(f1)                                                    # (B, C2, H/4, W/4)
        f3 = self.stage3(f2)                                                    # (B, C3, H/8, W/8)
        f4 = self.stage4(f3)                                                    # (B, C4, H/16, W/16)
        return f1, f2, f3, f4


def init_encoder_weights(module: nn.Module) -> None:
    """The encoder's init [code]: Linear weights truncated normal (std 0.02), biases 0; norms 1 / 0;
    convs keep PyTorch's default; then the spatial mix's mu = 0.5 and decay = first = 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, SpatialMix):
            m.reset_mix_parameters()


def _check(x: Tensor, config: RWKVUNetConfig) -> Tensor:
    return check_image(x, model="RWKV-UNet", in_chans=config.in_chans, multiple=16,
                       why="four stride-2 stages", gray_to_rgb=config.gray_to_rgb)


class RWKVUNet(nn.Module):
    """RWKV-UNet: encoder, CCM skips, c-d-c decoder, 1x1 head (Fig. 1, Sec. 3.1-3.4).

    forward(x (B, in_chans, H, W)) -> logits (B, num_classes, H, W); H, W divisible by 16.
    Concatenation order in the decoder: (decoder feature, skip).
    """

    def __init__(self, config: RWKVUNetConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.widths
        self.encoder = RWKVUNetEncoder(config)
        self.ccm = (
            CCM(widths=(c1, c2, c3), hidden_rate=config.ccm_hidden_rate, drop_path=config.ccm_drop_path)
            if config.use_ccm else None
        )
        k = config.decoder_kernel
        self.up1 = UpBlock(in_chans=c4, out_chans=c3, kernel_size=k)
        self.up2 = UpBlock(in_chans=2 * c3, out_chans=c2, kernel_size=k)
        self.up3 = UpBlock(in_chans=2 * c2, out_chans=c1, kernel_size=k)
        self.up4 = UpBlock(in_chans=2 * c1, out_chans=config.stem_width, kernel_size=k)
        self.head = nn.Conv2d(config.stem_width, config.num_classes, 1)
        init_encoder_weights(self.encoder)                                      # decoder, CCM: PyTorch defaults

    def forward(self, x: Tensor) -> Tensor:
        f1, f2, f3, f4 = self.encoder(_check(x, self.config))
        if self.ccm is not None:
            f1, f2, f3 = self.ccm(f1, f2, f3)
        d3 = self.up1(f4)                                                       # (B, C3, H/8, W/8)
        d2 = self.up2(torch.cat([d3, f3], dim=1))                               # (B, C2, H/4, W/4)
        d1 = self.up3(torch.cat([d2, f2], dim=1))                               # (B, C1, H/2, W/2)
        d0 = self.up4(torch.cat([d1, f1], dim=1))                               # (B, 24, H, W)
        return self.head(d0)                                                    # (B, classes, H, W)


class RWKVUNetClassifier(nn.Module):
    """An RWKV-UNet encoder as an ImageNet classifier: LN2d(C4) -> global mean -> Linear(C4, classes).

    num_classes = 0 drops the norm and the linear layer: forward returns the pooled stage-IV
    features (B, C4), and the parameters are exactly the encoder's.
    `forward_features` returns the four stage maps (F1, F2, F3, F4).
    """

    def __init__(self, config: RWKVUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = RWKVUNetEncoder(config)
        c4 = config.widths[-1]
        if config.num_classes > 0:
            self.norm = LayerNorm2d(c4, eps=1e-6)
            self.head = nn.Linear(c4, config.num_classes)
        else:
            self.norm, self.head = nn.Identity(), nn.Identity()
        init_encoder_weights(self)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.encoder(_check(x, self.config))

    def forward(self, x: Tensor) -> Tensor:
        f4 = self.forward_features(x)[-1]
        pooled = self.norm(f4).mean(dim=(2, 3))                                 # (B, C4)
        return self.head(pooled)                                                # (B, classes)


def layer_table(model: RWKVUNet | RWKVUNetClassifier, input_size: tuple[int, int] = (224, 224)) -> list[dict]:
    """One row per block, in forward order: name, kind, widths, stride, output size, Bi-WKV
    tokens, parameters. The rows' parameters add up to the model's."""
    def count(m):
        return sum(p.numel() for p in m.parameters()) if m is not None else 0

    H, W = input_size
    enc = model.encoder
    rows = []

    def block_row(name, blk, H, W):
        Ho, Wo = H // blk.stride, W // blk.stride
        kind = "stem (IR + SE)" if blk.se is not None else ("IR-RWKV" if blk.mix is not None else "IR")
        rows.append({
            "name": name, "kind": kind, "widths": f"{blk.in_chans}->{blk.mid_chans}->{blk.out_chans}",
            "stride": blk.stride, "out": f"{Ho}x{Wo}", "wkv_tokens": H * W if blk.mix is not None else 0,
            "params": count(blk),
        })
        return Ho, Wo

    H, W = block_row("encoder.stem", enc.stem, H, W)
    for s, stage in enumerate((enc.stage1, enc.stage2, enc.stage3, enc.stage4), start=1):
        for j, blk in enumerate(stage):
            H, W = block_row(f"encoder.stage{s}.{j}", blk, H, W)
    if isinstance(model, RWKVUNetClassifier):
        rows.append({"name": "norm+head", "kind": "LN2d, pool, linear", "widths": f"{enc.stage4[-1].out_chans}->{model.config.num_classes}",
                     "stride": 1, "out": "1x1", "wkv_tokens": 0, "params": count(model.norm) + count(model.head)})
        return rows
    c = model.config
    H1, W1 = input_size[0] // 2, input_size[1] // 2
    if model.ccm is not None:
        rows.append({"name": "ccm", "kind": "CCM", "widths": f"{3 * c.widths[0]}->{int(3 * c.widths[0] * c.ccm_hidden_rate)}->{3 * c.widths[0]}",
                     "stride": 1, "out": f"{H1}x{W1}", "wkv_tokens": 0, "params": count(model.ccm)})
    for name in ("up1", "up2", "up3", "up4"):
        blk = getattr(model, name)
        H, W = 2 * H, 2 * W
        rows.append({"name": name, "kind": "up (c-d-c)", "widths": f"{blk[0][0].in_channels}->{blk[2][0].out_channels}",
                     "stride": 1, "out": f"{H}x{W}", "wkv_tokens": 0, "params": count(blk)})
    rows.append({"name": "head", "kind": "1x1 conv", "widths": f"{c.stem_width}->{c.num_classes}", "stride": 1,
                 "out": f"{H}x{W}", "wkv_tokens": 0, "params": count(model.head)})
    return rows


# --------------------------------------------------------------------------------------------
# Registered variants (paper Table 1)
# --------------------------------------------------------------------------------------------

RWKV_UNET_T = RWKVUNetConfig()
RWKV_UNET_S = RWKVUNetConfig(
    depths=(3, 3, 6, 3), widths=(32, 64, 128, 192), expansions=(2.0, 2.5, 3.0, 4.0),
)
RWKV_UNET_B = RWKVUNetConfig(
    depths=(3, 3, 6, 3), widths=(48, 72, 144, 240), expansions=(2.0, 2.5, 4.0, 4.0),
)
# [choose] A tiny network for tests: every block kind (stem, IR, IR-RWKV in III and IV, CCM).
RWKV_UNET_TEST = RWKVUNetConfig(
    stem_width=8, depths=(1, 1, 2, 2), widths=(8, 16, 24, 32), expansions=(2.0, 2.0, 2.0, 2.0),
)


@register_model
def rwkv_unet_t(**overrides) -> RWKVUNet:
    """RWKV-UNet-T: 3,145,761 parameters at 3 channels, 1 class."""
    return RWKVUNet(replace(RWKV_UNET_T, **overrides))


@register_model
def rwkv_unet_s(**overrides) -> RWKVUNet:
    """RWKV-UNet-S: 9,701,945 parameters at 3 channels, 1 class."""
    return RWKVUNet(replace(RWKV_UNET_S, **overrides))


@register_model
def rwkv_unet_b(**overrides) -> RWKVUNet:
    """RWKV-UNet-B: 17,125,513 parameters at 3 channels, 1 class."""
    return RWKVUNet(replace(RWKV_UNET_B, **overrides))


@register_model
def rwkv_unet_test(**overrides) -> RWKVUNet:
    """A tiny RWKV-UNet for fast tests (not a paper variant)."""
    return RWKVUNet(replace(RWKV_UNET_TEST, **overrides))


@register_model
def rwkv_unet_encoder_t(**overrides) -> RWKVUNetClassifier:
    """Enc-T as a 1000-class classifier (3,099,792 parameters; num_classes=0: 2,938,472)."""
    return RWKVUNetClassifier(replace(RWKV_UNET_T, **{"num_classes": 1000, **overrides}))


@register_model
def rwkv_unet_encoder_s(**overrides) -> RWKVUNetClassifier:
    """Enc-S as a 1000-class classifier (9,609,432 parameters; num_classes=0: 9,416,048)."""
    return RWKVUNetClassifier(replace(RWKV_UNET_S, **{"num_classes": 1000, **overrides}))


@register_model
def rwkv_unet_encoder_b(**overrides) -> RWKVUNetClassifier:
    """Enc-B as a 1000-class classifier (16,935,520 parameters; num_classes=0: 16,694,040)."""
    return RWKVUNetClassifier(replace(RWKV_UNET_B, **{"num_classes": 1000, **overrides}))
