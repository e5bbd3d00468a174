"""Vision-RWKV's spatial mix and channel mix, as RWKV-UNet uses them (spec rwkv-unet.md §5, §7).

Both act on tokens (B, N, C) laid out row-major on an (H, W) grid (token n = h*W + w); the grid
size is given at every call, so any H and W, square or not, work.

    SpatialMix   Q-shift -> token mixing (mu_k, mu_v, mu_r) -> K, V, R -> Bi-WKV -> key norm
                 -> sigmoid(R) gate -> output projection               (the IR-RWKV block's mixer)
    ChannelMix   Q-shift -> token mixing (mu_k, mu_r) -> squared-ReLU MLP with key norm
                 -> sigmoid(R) gate                                     (CCM's mixer)

Differences from Vision-RWKV's own backbone (spec §5): RWKV-UNet initialises every mu to 0.5 and
spatial_decay = spatial_first = 0 (Vision-RWKV uses a layer-dependent init), always turns the key
norm on, and its block normalises the mix's *output* (post-norm, see rwkvseg.ir.IRBlock).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from rwkvseg.shift import q_shift
from rwkvseg.wkv import bi_wkv

__all__ = ["SpatialMix", "ChannelMix", "tokens_to_map", "map_to_tokens", "set_wkv_backend"]


def tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """(B, N, C) tokens, row-major on an (H, W) grid -> (B, C, H, W) map."""
    B, N, C = x.shape
    H, W = hw
    if H * W != N:
        raise ValueError(
            f"the tokens do not fill the grid: N = {N} tokens but hw = ({H}, {W}) holds {H * W}; "
            "pass the (H, W) of the map the tokens were flattened from"
        )
    return x.transpose(1, 2).reshape(B, C, H, W)


def map_to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) map -> (B, N, C) tokens, row-major (n = h*W + w)."""
    return x.flatten(2).transpose(1, 2)


def _q_shift_tokens(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Q-shift (spec §5.1) applied to tokens: (B, N, C) -> (B, N, C)."""
    return map_to_tokens(q_shift(tokens_to_map(x, hw), shift=1))


def _check_tokens(name: str, x: Tensor, dim: int) -> None:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} expects tokens of shape (B, N, {dim}), got {tuple(x.shape)}; "
            "flatten a (B, C, H, W) map with rwkvseg.spatial_mix.map_to_tokens"
        )


class SpatialMix(nn.Module):
    """Vision-RWKV spatial mix, RWKV-UNet's variant (spec rwkv-unet.md §5; paper Eq. 3's SpatialMix).

    With Zs = Q-shift(Z) and X_a = mu_a * Z + (1 - mu_a) * Zs for a in {k, v, r}:

        K = X_k W_k,  V = X_v W_v,  R = X_r W_r                 (C x C, no bias)
        Y = LayerNorm_C(Bi-WKV(w = spatial_decay / N, u = spatial_first / N, K, V))
        out = (sigmoid(R) * Y) W_o

    Dividing by N keeps the decay across the whole sequence (w * N) independent of resolution
    (spec wkv.md §1). Parameters: 4C^2 + 7C.

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
        self.key_norm = nn.LayerNorm(dim, eps=1e-5) if key_norm else nn.Identity()
        self.output = nn.Linear(dim, dim, bias=False)
        self.reset_mix_parameters()

    def reset_mix_parameters(self) -> None:
        """RWKV-UNet's init [code]: every mu = 0.5, spatial_decay = spatial_first = 0."""
        with torch.no_grad():
            for mu in (self.mu_k, self.mu_v, self.mu_r):
                mu.fill_(0.5)
            self.spatial_decay.zero_()
            self.spatial_first.zero_()

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        _check_tokens("SpatialMix", x, self.dim)
        N = x.shape[1]
        xs = _q_shift_tokens(x, hw)                                             # (B, N, C)
        xk = x * self.mu_k + xs * (1 - self.mu_k)
        xv = x * self.mu_v + xs * (1 - self.mu_v)
        xr = x * self.mu_r + xs * (1 - self.mu_r)
        k, v, r = self.key(xk), self.value(xv), self.receptance(xr)            # (B, N, C) each
        y = bi_wkv(self.spatial_decay / N, self.spatial_first / N, k, v, backend=self.backend)
        y = self.key_norm(y)
        return self.output(torch.sigmoid(r) * y)                                # (B, N, C)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, backend={self.backend!r}"


class ChannelMix(nn.Module):
    """Vision-RWKV channel mix (spec rwkv-unet.md §7 step 3; paper Eq. 10's ChannelMix).

    With Zs = Q-shift(Z), X_k = mu_k * Z + (1 - mu_k) * Zs, X_r likewise:

        out = sigmoid(X_r W_r) * (LayerNorm_hidden(ReLU(X_k W_k)^2) W_v)

    W_k: C -> hidden, W_v: hidden -> C, W_r: C -> C, all bias-free. CCM uses hidden = 2C.
    Parameters: 2C + C*hidden + 2*hidden (key norm) + hidden*C + C^2.

    Args:
        dim: channels C.
        hidden_dim: width of the squared-ReLU layer (CCM: 2 * dim [code]).
        key_norm: LayerNorm (eps 1e-5) on the hidden activations; on in RWKV-UNet's CCM [code].

    Shapes: forward(x (B, N, C), hw=(H, W)) -> (B, N, C), N = H * W.
    """

    def __init__(self, *, dim: int, hidden_dim: int, key_norm: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.mu_k = nn.Parameter(torch.full((dim,), 0.5))
        self.mu_r = nn.Parameter(torch.full((dim,), 0.5))
        self.key = nn.Linear(dim, hidden_dim, bias=False)
        self.key_norm = nn.LayerNorm(hidden_dim, eps=1e-5) if key_norm else nn.Identity()
        self.value = nn.Linear(hidden_dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)

    def reset_mix_parameters(self) -> None:
        """RWKV-UNet's init [code]: mu_k = mu_r = 0.5."""
        with torch.no_grad():
            self.mu_k.fill_(0.5)
            self.mu_r.fill_(0.5)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        _check_tokens("ChannelMix", x, self.dim)
        xs = _q_shift_tokens(x, hw)                                             # (B, N, C)
        xk = x * self.mu_k + xs * (1 - self.mu_k)
        xr = x * self.mu_r + xs * (1 - self.mu_r)
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
