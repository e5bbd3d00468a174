"""Vision-RWKV's spatial mix and channel mix on tokens, as RWKV-UNet uses them (RWKV-UNet
Eq. 3 and 10), and the spatial mix along a scan route of the RWKV-SSS draft.

Every class acts on tokens (B, N, C) laid out row-major on an (H, W) grid (token n = h*W + w);
the grid size is given at every call, so any H and W, square or not, work.

    SpatialMix        Q-shift -> token mixing (mu_k, mu_v, mu_r) -> K, V, R -> Bi-WKV -> key norm
                      -> sigmoid(R) gate -> output projection           (the IR-RWKV block's mixer)
    RoutedSpatialMix  SpatialMix whose shift and Bi-WKV follow a scan route (RWKV-SSS; experimental,
                      follows an unfinished draft): it overrides the hooks `token_shift` and `wkv`
    VRWKVChannelMix   Q-shift -> token mixing (mu_k, mu_r) -> squared-ReLU MLP with key norm
                      -> sigmoid(R) gate                                 (CCM's mixer)

Differences from Vision-RWKV's own backbone, as the RWKV-UNet code builds it [code]: every mu
starts at 0.5 and spatial_decay = spatial_first = 0 (Vision-RWKV uses a layer-dependent init),
the key norm is always on, and the IR-RWKV block normalises the mix's *output* (post-norm, see
rwkvseg.ir.IRBlock).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rwkvseg.layers import LayerNorm, map_to_tokens, tokens_to_map
from rwkvseg.scan import ScanOrder, WindowScan
from rwkvseg.shift import make_shift, mix, q_shift
from rwkvseg.wkv import bi_wkv

__all__ = ["SpatialMix", "RoutedSpatialMix", "VRWKVChannelMix", "set_wkv_backend"]


def _q_shift_tokens(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Q-shift (Vision-RWKV; rwkvseg.shift.q_shift) applied to tokens: (B, N, C) -> (B, N, C)."""
    return map_to_tokens(q_shift(tokens_to_map(x, hw), shift=1))


def _check_tokens(name: str, x: Tensor, dim: int) -> None:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} expects tokens of shape (B, N, {dim}), got {tuple(x.shape)}; "
            "flatten a (B, C, H, W) map with rwkvseg.layers.map_to_tokens"
        )


class SpatialMix(nn.Module):
    """Vision-RWKV's spatial mix, RWKV-UNet's variant (RWKV-UNet Eq. 3's SpatialMix).

    With Zs = Q-shift(Z) and X_a = mu_a * Z + (1 - mu_a) * Zs for a in {k, v, r}:

        K = X_k W_k,  V = X_v W_v,  R = X_r W_r                 (C x C, no bias)
        Y = LayerNorm_C(Bi-WKV(w = spatial_decay / N, u = spatial_first / N, K, V))
        out = (sigmoid(R) * Y) W_o

    Vision-RWKV divides w and u by the sequence length, so the decay across the whole sequence
    (w * N) does not depend on the resolution. Parameters: 4C^2 + 7C.

    Two hooks hold what a subclass may change: `token_shift` (Zs from Z) and `wkv` (Y before the
    key norm from K and V); RoutedSpatialMix overrides both.

    Args:
        dim: channels C (the IR-RWKV block's C_mid).
        key_norm: LayerNorm (eps 1e-5) on the Bi-WKV output; always on in RWKV-UNet [code].
        backend: passed to rwkvseg.wkv.bi_wkv ("auto", "torch", "triton", "naive"); can be changed
            after construction by setting the attribute.

    Shapes: forward(x (B, N, C), hw=(H, W)) -> (B, N, C), N = H * W.
    """

    def __init__(self, *, dim: int, key_norm: bool = True, backend: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.backend = backend
        self.mu_k = nn.Parameter(torch.empty(dim))
        self.mu_v = nn.Parameter(torch.empty(dim))
        self.mu_r = nn.Parameter(torch.empty(dim))
        self.spatial_decay = nn.Parameter(torch.empty(dim))
        self.spatial_first = nn.Parameter(torch.empty(dim))
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.key_norm = LayerNorm(dim, eps=1e-5) if key_norm else nn.Identity()
        self.output = nn.Linear(dim, dim, bias=False)
        self.reset_mix_parameters()

    def reset_mix_parameters(self) -> None:
        """RWKV-UNet's init [code]: every mu = 0.5, spatial_decay = spatial_first = 0."""
        with torch.no_grad():
            for mu in (self.mu_k, self.mu_v, self.mu_r):
                mu.fill_(0.5)
            self.spatial_decay.zero_()
            self.spatial_first.zero_()

    def token_shift(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """Zs: Q-shift of the tokens x (B, N, C) on their (H, W) grid -> (B, N, C)."""
        return _q_shift_tokens(x, hw)

    def wkv(self, k: Tensor, v: Tensor, hw: tuple[int, int]) -> Tensor:
        """Bi-WKV in raster order with w, u divided by T = N. k, v (B, N, C) -> (B, N, C)."""
        T = k.shape[1]
        return bi_wkv(self.spatial_decay / T, self.spatial_first / T, k, v, backend=self.backend)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        _check_tokens(type(self).__name__, x, self.dim)
        xs = self.token_shift(x, hw)                                            # (B, N, C)
        xk, xv, xr = (mix(x, xs, mu) for mu in (self.mu_k, self.mu_v, self.mu_r))
        k, v, r = self.key(xk), self.value(xv), self.receptance(xr)            # (B, N, C) each
        y = self.key_norm(self.wkv(k, v, hw))                                   # (B, N, C)
        return self.output(torch.sigmoid(r) * y)                                # (B, N, C)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, backend={self.backend!r}"


class RoutedSpatialMix(SpatialMix):
    """SpatialMix (same parameters and init) whose shift and Bi-WKV follow a scan route: the
    global and local branches of the RWKV-SSS draft (Sec. III, Eq. 1-8; experimental, follows an
    unfinished draft).

    reading 'A': K and V are gathered along ``order`` (T = H W), the Bi-WKV output is put back.
    reading 'C': K and V are average-pooled per ``order.window`` window (ceil mode), the Bi-WKV
    runs over the windows in raster order (T = G_h G_w) and its output is upsampled (nearest).
    The shift ('q_shift' or 'dynamic_q_shift', whose shares follow ``order``) replaces Q-shift.
    w and u are divided by the T of the call, so T differs between the readings.
    forward(x (B, N, C), hw) -> (B, N, C).
    """

    def __init__(self, *, dim: int, order: ScanOrder, reading: str = "A", shift: str = "dynamic_q_shift",
                 backend: str = "auto") -> None:
        super().__init__(dim=dim, key_norm=True, backend=backend)
        if reading not in ("A", "C"):
            raise ValueError(f"reading must be 'A' (window-major route) or 'C' (window as token), got {reading!r}")
        if reading == "C" and not isinstance(order, WindowScan):
            raise ValueError(f"reading 'C' pools windows: pass a WindowScan order, got {order!r}")
        self.order, self.reading = order, reading
        self.shift = make_shift(shift, channels=dim, order=order)

    def token_shift(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """Zs: the configured shift of the tokens on their (H, W) grid -> (B, N, C)."""
        return map_to_tokens(self.shift(tokens_to_map(x, hw)))

    def wkv(self, k: Tensor, v: Tensor, hw: tuple[int, int]) -> Tensor:
        """Bi-WKV along ``order`` (reading A) or over window averages (reading C). (B, N, C) -> (B, N, C)."""
        H, W = hw
        kv = tokens_to_map(torch.cat([k, v], dim=-1), hw)                          # (B, 2C, H, W)
        if self.reading == "A":
            seq = self.order.scan(kv)                                               # (B, T, 2C)
            ks, vs = seq.chunk(2, dim=-1)
            T = seq.shape[1]
            y = bi_wkv(self.spatial_decay / T, self.spatial_first / T, ks, vs, backend=self.backend)
            return map_to_tokens(self.order.unscan(y, H, W))                       # (B, N, C)
        s = self.order.window
        pooled = F.avg_pool2d(kv, s, stride=s, ceil_mode=True)                     # (B, 2C, Gh, Gw)
        ks, vs = map_to_tokens(pooled).chunk(2, dim=-1)                            # (B, Gh*Gw, C)
        T = ks.shape[1]
        y = bi_wkv(self.spatial_decay / T, self.spatial_first / T, ks, vs, backend=self.backend)
        y = tokens_to_map(y, pooled.shape[-2:])                                    # (B, C, Gh, Gw)
        y = y.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)[:, :, :H, :W]
        return map_to_tokens(y)                                                    # (B, N, C)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, order={self.order!r}, reading={self.reading!r}"


class VRWKVChannelMix(nn.Module):
    """Vision-RWKV's channel mix on tokens (RWKV-UNet Eq. 10's ChannelMix, inside CCM).

    With Zs = Q-shift(Z), X_k = mu_k * Z + (1 - mu_k) * Zs, X_r likewise:

        out = sigmoid(X_r W_r) * (LayerNorm_hidden(ReLU(X_k W_k)^2) W_v)

    W_k: C -> hidden, W_v: hidden -> C, W_r: C -> C, all bias-free. CCM uses hidden = 2C.
    Parameters: 2C + C*hidden + 2*hidden (key norm) + hidden*C + C^2.

    Args:
        dim: channels C.
        hidden_dim: width of the squared-ReLU layer (CCM: 2 * dim [code]).
        key_norm: LayerNorm (eps 1e-5) on the hidden activations; on in RWKV-UNet's CCM [code].
    mu_k and mu_r start at 0.5 [code].

    Shapes: forward(x (B, N, C), hw=(H, W)) -> (B, N, C), N = H * W.
    """

    def __init__(self, *, dim: int, hidden_dim: int, key_norm: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.mu_k = nn.Parameter(torch.full((dim,), 0.5))
        self.mu_r = nn.Parameter(torch.full((dim,), 0.5))
        self.key = nn.Linear(dim, hidden_dim, bias=False)
        self.key_norm = LayerNorm(hidden_dim, eps=1e-5) if key_norm else nn.Identity()
        self.value = nn.Linear(hidden_dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        _check_tokens("VRWKVChannelMix", x, self.dim)
        xs = _q_shift_tokens(x, hw)                                             # (B, N, C)
        xk, xr = mix(x, xs, self.mu_k), mix(x, xs, self.mu_r)
        k = torch.relu(self.key(xk)).square()                                   # (B, N, hidden)
        kv = self.value(self.key_norm(k))                                       # (B, N, C)
        return torch.sigmoid(self.receptance(xr)) * kv

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden_dim={self.hidden_dim}"


def set_wkv_backend(model: nn.Module, backend: str) -> int:
    """Set `backend` on every module of `model` that has a WKV `backend` attribute (e.g. every
    SpatialMix); returns how many were changed. Use it to force "torch" or "triton" in tests."""
    count = 0
    for m in model.modules():
        if isinstance(getattr(m, "backend", None), str):
            m.backend = backend
            count += 1
    return count
