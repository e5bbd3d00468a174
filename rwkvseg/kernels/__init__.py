"""The WKV kernels: Triton (CUDA, or the CPU under TRITON_INTERPRET=1) and one Gluon forward (CUDA).

    wkv_forward(w, u, k, v, causal=...)        y (B, T, C)
    wkv_backward(w, u, k, v, gy, causal=...)   (dw, du, dk, dv)

One module per algorithm: single_pass (the whole sequence in one program), chunked (the sequence split across
programs, forward and backward), tiled (tiles walked in order, any decay, causal too), gluon (the chunked forward
from shared memory); common holds what they share and dispatch picks one for each call. rwkvseg.wkv wraps these
in a differentiable operator (bi_wkv, uni_wkv with backend="triton").
"""
from .dispatch import wkv_backward, wkv_forward

__all__ = ["wkv_forward", "wkv_backward"]
