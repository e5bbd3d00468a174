"""The WKV operators: the causal WKV of RWKV-4 and the bidirectional Bi-WKV of Vision-RWKV.

Public API (k, v: (B, T, C); w, u: (C,); any real w and u; float32, bfloat16 or float16 k and v,
float32 accumulation, y in the input dtype; differentiable in all four):

    uni_wkv(w, u, k, v, backend="auto")   causal WKV, MS-RWKV Eq. 5-6 (RWKV-4)
    bi_wkv(w, u, k, v, backend="auto")    Bi-WKV, Vision-RWKV (RWKV-SSS draft Eq. 8)

For one batch item and channel, with tokens t = 0..T-1:

    causal:  y_t = (sum_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (same with v = 1)
    Bi-WKV:  y_t = sum_i lam(t,i) v_i / sum_i lam(t,i),
             lam(t,i) = e^{-(|t-i|-1)w + k_i} for i != t,  lam(t,t) = e^{u+k_t}

w is the per-token decay: callers do any division by T (Vision-RWKV passes spatial_decay / T).

Backends, from the definition to the fast kernels:

    "naive"   the O(T^2) formula as written: a softmax over a T x T matrix of log-weights
    "torch"   O(T) chunked scans with per-chunk rescaling, closed-form gradients; any device
    "triton"  the kernels of rwkvseg.kernels (CUDA, or the CPU under TRITON_INTERPRET=1)
    "auto"    Triton on CUDA when Triton is installed, the torch path elsewhere

The torch and Triton paths run through one `torch.library` custom op (`rwkvseg::wkv_forward`
with a fake implementation and a registered backward), so torch.compile captures a whole
network without graph breaks.

Note on the authors' code: RWKV-UNet and Vision-RWKV ship a chunked CUDA kernel that
approximates Bi-WKV (a mixture of the |t-i| and |t-i|-1 forms for T > 32, gradients that are not
those of its forward; book appendix *Derivations*). rwkvseg implements the paper's formula exactly.
"""
from __future__ import annotations

import math
import os
import warnings

import torch
from torch import Tensor

try:                                    # Triton is optional (Linux wheels only): without it the torch path runs
    from rwkvseg import kernels
except ImportError:
    kernels = None

BACKENDS = ("auto", "naive", "torch", "triton")
_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------
# 1. The oracle: the dense O(T^2) definition
# --------------------------------------------------------------------------------------------

def wkv_log_weights(w: Tensor, u: Tensor, k: Tensor, *, causal: bool) -> Tensor:
    """log lam(t, i) as a (B, T, T, C) tensor (rows t = output token, columns i = source token).

    Entries that a causal WKV does not use (i > t) are -inf.
    """
    T = k.shape[1]
    pos = torch.arange(T, device=k.device)
    dist = (pos[:, None] - pos[None, :]).abs().to(k.dtype)                     # (T, T) |t - i|
    logits = -(dist - 1)[None, :, :, None] * w + k[:, None, :, :]               # (B, T, T, C)
    diag = torch.eye(T, dtype=torch.bool, device=k.device)[None, :, :, None]
    logits = torch.where(diag, (u + k)[:, :, None, :], logits)                  # lam(t,t) = e^{u+k_t}
    if causal:
        future = (pos[None, :] > pos[:, None])[None, :, :, None]
        logits = logits.masked_fill(future, float("-inf"))
    return logits


def wkv_dense(w: Tensor, u: Tensor, k: Tensor, v: Tensor, *, causal: bool) -> Tensor:
    """The WKV exactly as written: y_t is the softmax over i of log lam(t, i), applied to v.

    Shapes: k, v (B, T, C); w, u (C,); returns y (B, T, C). O(B T^2 C) memory: T <= ~512.
    Computes in the inputs' dtype (use float64 for the oracle); differentiable by autograd.
    """
    weights = torch.softmax(wkv_log_weights(w, u, k, causal=causal), dim=2)    # (B, T, T, C)
    return (weights * v[:, None, :, :]).sum(dim=2)                             # (B, T, C)


# --------------------------------------------------------------------------------------------
# 2. The literal recurrences (for teaching; ties the dense form to the scans)
# --------------------------------------------------------------------------------------------

def wkv_loop(w: Tensor, u: Tensor, k: Tensor, v: Tensor, *, causal: bool) -> Tensor:
    """The recurrent form of the WKV, one token at a time (slow; for teaching).

    With rho = e^{-w}, e_i = e^{k_i - M} (M = max_t k_t, one shift per sequence):
        P_{t+1} = rho P_t + e_t x_t      (left to right)
        S_{t-1} = rho S_t + e_t x_t      (right to left; skipped for the causal WKV)
        y_t = (P(e v)_t + S(e v)_t + e^u e_t v_t) / (P(e)_t + S(e)_t + e^u e_t)
    The single shift M is enough while |w| T stays moderate (book appendix *Derivations*); the torch and
    Triton paths rescale per chunk instead and have no such limit.
    """
    B, T, C = k.shape
    rho = torch.exp(-w)
    e = torch.exp(k - k.amax(dim=1, keepdim=True))                             # (B, T, C)
    P_num, P_den = [], []
    num, den = torch.zeros_like(e[:, 0]), torch.zeros_like(e[:, 0])            # (B, C)
    for t in range(T):
        P_num.append(num)
        P_den.append(den)
        num, den = rho * num + e[:, t] * v[:, t], rho * den + e[:, t]
    S_num, S_den = [None] * T, [None] * T
    num, den = torch.zeros_like(num), torch.zeros_like(den)
    for t in reversed(range(T)):
        S_num[t], S_den[t] = (num, den) if not causal else (0.0, 0.0)
        num, den = rho * num + e[:, t] * v[:, t], rho * den + e[:, t]
    eu = torch.exp(u)
    y = [
        (P_num[t] + S_num[t] + eu * e[:, t] * v[:, t]) / (P_den[t] + S_den[t] + eu * e[:, t])
        for t in range(T)
    ]
    return torch.stack(y, dim=1)


# --------------------------------------------------------------------------------------------
# 3. The O(T) torch path: chunked decayed scans with per-chunk rescaling, closed-form gradients
# --------------------------------------------------------------------------------------------

def _log_sum(logits: Tensor, xs: list[Tensor], dim: int) -> tuple[Tensor, list[Tensor]]:
    """Scaled sums over `dim`: m = max(logits), p = sum exp(logits - m) * x for each x.

    -inf entries are empty; a row with no entry gets m = -inf and p = 0. The largest term of
    every non-empty row is exactly 1 * e^m: the scale is tight, so nothing divides by an
    underflowed sum later.
    """
    m = logits.amax(dim=dim, keepdim=True)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    wts = torch.exp(logits - m_safe)                                            # 0 at -inf entries
    return m.squeeze(dim), [(wts * x).sum(dim=dim) for x in xs]


def separable_prefix(la: Tensor, xs: list[Tensor], w: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The same sums as decayed_prefix with one shift per sequence (book appendix *Derivations*).

    rho^{t-1-i} = e^{-w(t-1-c)} e^{w(i-c)} (c the centre) turns each sum into one cumulative sum,
    accumulated in float64. m_t is the sequence's largest la, not a tight bound: valid for the
    Bi-WKV while |w| T <= 30, where the largest key reaches every output with weight >= e^{-30}
    (never for the causal WKV, whose prefix may miss it).
    """
    B, T, C = la.shape
    M = la.amax(dim=1, keepdim=True)                                            # (B, 1, C)
    a = torch.exp(la - M)
    t = torch.arange(T, device=la.device, dtype=la.dtype)[:, None]
    c = (T - 1) / 2
    grow, shrink = torch.exp(w * (t - c)), torch.exp(-w * (t - 1 - c))          # (T, C)
    ps = []
    for x in xs:
        cs = torch.cumsum((grow * a * x).double(), dim=1)
        excl = torch.cat([torch.zeros_like(cs[:, :1]), cs[:, :-1]], dim=1)     # shift, no subtraction
        ps.append((shrink * excl).to(la.dtype))
    return M.expand(B, T, C), ps


def decayed_prefix(la: Tensor, xs: list[Tensor], w: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Exclusive decayed prefix sums with a log scale, exact for any real w and any la.

        P(x)_t = sum_{i<t} e^{-w (t-1-i) + la_i} x_i  =  e^{m_t} p_t

    la: (B, T, C) log-weights; xs: (B, T, C) values sharing them; w: (C,).
    Returns m (B, T, C) and one p (B, T, C) per x, with m_t the largest exponent in the sum
    (-inf and p = 0 for t = 0). Two levels, both in log space with a per-row maximum (like a
    masked softmax), so no term overflows and no sum underflows to zero: inside chunks of L
    tokens a dense L x L sum; across chunks a dense sum over the chunks' own totals. Cost
    O(T L + (T / L)^2) per channel with L ~ sqrt(T); no Python loop over tokens or chunks.
    """
    B, T, C = la.shape
    L = max(1, min(T, max(32, math.isqrt(T - 1) + 1)))
    n = -(-T // L)
    pad = n * L - T
    if pad:
        la = torch.nn.functional.pad(la, (0, 0, 0, pad), value=float("-inf"))
        xs = [torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in xs]
    la = la.view(B, n, L, C)
    xs = [x.view(B, n, L, C) for x in xs]
    j = torch.arange(L, device=la.device)
    dist = (j[:, None] - 1 - j[None, :]).to(la.dtype)                           # (L, L) t - 1 - i
    before = (j[None, :] < j[:, None])[..., None]                               # (L, L, 1) i < t
    # inside each chunk: logits (B, n, L_t, L_i, C)
    logits = torch.where(before, -w * dist[..., None] + la[:, :, None], float("-inf"))
    m_in, p_in = _log_sum(logits, [x[:, :, None] for x in xs], dim=3)          # (B, n, L, C)
    # each chunk's total as seen from the next chunk's first token, then sums over chunks
    m_tot, p_tot = _log_sum(-w * (L - 1 - j)[:, None].to(la.dtype) + la, xs, dim=2)   # (B, n, C)
    q = torch.arange(n, device=la.device)
    cdist = (q[:, None] - 1 - q[None, :]).to(la.dtype) * L                      # (n, n)
    earlier = (q[None, :] < q[:, None])[..., None]
    clogits = torch.where(earlier, -w * cdist[..., None] + m_tot[:, None], float("-inf"))
    m_c, p_c = _log_sum(clogits, [p[:, None] for p in p_tot], dim=2)           # (B, n, C)
    # token t = qL + j: rho^j times the carry into chunk q, plus the in-chunk sum
    m_carry = m_c[:, :, None] - w * j[:, None].to(la.dtype)                     # (B, n, L, C)
    m = torch.maximum(m_carry, m_in)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    f_c, f_in = torch.exp(m_carry - m_safe), torch.exp(m_in - m_safe)
    ps = [pc[:, :, None] * f_c + pi * f_in for pc, pi in zip(p_c, p_in)]
    m = m.reshape(B, n * L, C)[:, :T]
    return m, [p.reshape(B, n * L, C)[:, :T] for p in ps]


def decayed_suffix(la: Tensor, xs: list[Tensor], w: Tensor, prefix=decayed_prefix) -> tuple[Tensor, list[Tensor]]:
    """S(x)_t = sum_{i>t} e^{-w (i-1-t) + la_i} x_i = e^{m_t} p_t: the prefix of the reversal."""
    m, ps = prefix(la.flip(1), [x.flip(1) for x in xs], w)
    return m.flip(1), [p.flip(1) for p in ps]


def _prefix_fn(w: Tensor, T: int, causal: bool):
    """The Bi-WKV with a bounded total decay takes the one-shift cumulative sums (fast); every
    other case the two-level log-space sums (exact for any w)."""
    if not causal and float(w.abs().max()) * T <= 30:
        return separable_prefix
    return decayed_prefix


def _forward_sums(w, u, k, v, causal):
    """The forward on scaled sums (y = N / D). Returns y and what the backward reuses."""
    ones = torch.ones_like(k)
    prefix = _prefix_fn(w, k.shape[1], causal)
    mP, (Pv, P1) = prefix(k, [v, ones], w)
    md = u + k                                                                  # diagonal term
    if causal:
        m = torch.maximum(mP, md)
        fP, fd = torch.exp(mP - m), torch.exp(md - m)
        N, D = Pv * fP + v * fd, P1 * fP + fd
        S = None
    else:
        mS, (Sv, S1) = decayed_suffix(k, [v, ones], w, prefix)
        m = torch.maximum(torch.maximum(mP, mS), md)
        fP, fS, fd = torch.exp(mP - m), torch.exp(mS - m), torch.exp(md - m)
        N = Pv * fP + Sv * fS + v * fd
        D = P1 * fP + S1 * fS + fd
        S = (fS, Sv, S1)
    y = N / D                                                                   # (B, T, C)
    return y, m, D, (fP, Pv, P1), S


def wkv_torch_forward(w: Tensor, u: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """y (B, T, C) in the compute dtype of the inputs (float32 or float64)."""
    return _forward_sums(w, u, k, v, causal)[0]


def wkv_torch_backward(w, u, k, v, gy, causal: bool):
    """Closed-form gradients (book appendix *Derivations*); returns dw (C,), du (C,), dk, dv (B, T, C).

    With q_t = g_t / D_t and the pair sensitivity c(t,i) = q_t lam(t,i) (v_i - y_t):
        dv_i = e^{k_i} [P(q)_i + S(q)_i + e^u q_i]
        dk_i = v_i dv_i - e^{k_i} [P(q y)_i + S(q y)_i + e^u q_i y_i]
        du   = sum_t c(t,t)
        dw   = sum_t [(t+1)(R+_t + G+_t) - t (R-_t + G-_t)]      (t centred: the sums cancel)
    The causal WKV drops every S term (and with it R+ and G-).
    """
    B, T, C = k.shape
    y, m, D, (fP, Pv, P1), S = _forward_sums(w, u, k, v, causal)
    qv = gy / D                                                                 # q_t = qv_t e^{-m_t}
    qy = qv * y
    ad = torch.exp(u + k - m)                                                   # e^u e^{k_t} e^{-m_t}
    pos = (torch.arange(T, device=k.device, dtype=k.dtype) - (T - 1) / 2)[:, None]
    prefix = _prefix_fn(w, T, causal)
    mSq, (Sq, Sqy) = decayed_suffix(-m, [qv, qy], w, prefix)
    aS = torch.exp(k + mSq)
    dv = aS * Sq + ad * qv
    dk_sub = aS * Sqy + ad * qy
    Gp = aS * (v * Sq - Sqy)                                                    # sum_{t>i} c(t,i)
    Rm = qv * fP * (Pv - y * P1)                                                # sum_{i<t} c(t,i)
    dw_terms = (pos + 1) * Gp - pos * Rm
    if not causal:
        fS, Sv, S1 = S
        mPq, (Pq, Pqy) = prefix(-m, [qv, qy], w)
        aP = torch.exp(k + mPq)
        dv = dv + aP * Pq
        dk_sub = dk_sub + aP * Pqy
        Gm = aP * (v * Pq - Pqy)                                                # sum_{t<i} c(t,i)
        Rp = qv * fS * (Sv - y * S1)                                            # sum_{i>t} c(t,i)
        dw_terms = dw_terms + (pos + 1) * Rp - pos * Gm
    dk = v * dv - dk_sub
    du = (ad * qv * (v - y)).sum(dim=(0, 1))
    dw = dw_terms.sum(dim=(0, 1))
    return dw, du, dk, dv


# --------------------------------------------------------------------------------------------
# 4. One custom op for the torch and Triton paths (torch.compile sees a single node)
# --------------------------------------------------------------------------------------------

def _compute_dtype(k: Tensor) -> torch.dtype:
    return torch.float64 if k.dtype == torch.float64 else torch.float32


@torch.library.custom_op("rwkvseg::wkv_forward", mutates_args=())
def _wkv_forward_op(w: Tensor, u: Tensor, k: Tensor, v: Tensor, causal: bool, backend: str) -> Tensor:
    if backend == "triton":
        return kernels.wkv_forward(w, u, k, v, causal=causal)
    cd = _compute_dtype(k)
    y = wkv_torch_forward(w.to(cd), u.to(cd), k.to(cd), v.to(cd), causal)
    return y.to(k.dtype).contiguous()


@_wkv_forward_op.register_fake
def _(w, u, k, v, causal, backend):
    return torch.empty(k.shape, dtype=k.dtype, device=k.device)


@torch.library.custom_op("rwkvseg::wkv_backward", mutates_args=())
def _wkv_backward_op(
    w: Tensor, u: Tensor, k: Tensor, v: Tensor, gy: Tensor, causal: bool, backend: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if backend == "triton":
        return kernels.wkv_backward(w, u, k, v, gy, causal=causal)
    cd = _compute_dtype(k)
    dw, du, dk, dv = wkv_torch_backward(w.to(cd), u.to(cd), k.to(cd), v.to(cd), gy.to(cd), causal)
    return dw.to(w.dtype), du.to(u.dtype), dk.to(k.dtype).contiguous(), dv.to(v.dtype).contiguous()


@_wkv_backward_op.register_fake
def _(w, u, k, v, gy, causal, backend):
    def like(t):
        return torch.empty(t.shape, dtype=t.dtype, device=t.device)

    return like(w), like(u), like(k), like(v)


def _setup_context(ctx, inputs, output):
    w, u, k, v, causal, backend = inputs
    ctx.save_for_backward(w, u, k, v)
    ctx.causal, ctx.backend = causal, backend


def _backward(ctx, gy):
    w, u, k, v = ctx.saved_tensors
    dw, du, dk, dv = _wkv_backward_op(w, u, k, v, gy, ctx.causal, ctx.backend)
    return dw, du, dk, dv, None, None


_wkv_forward_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# 5. The public API
# --------------------------------------------------------------------------------------------

_warned_no_triton = False


def triton_available() -> bool:
    """True when the Triton kernels could be imported."""
    return kernels is not None


def resolve_backend(backend: str, k: Tensor) -> str:
    """'auto' -> 'triton' on CUDA when Triton imports, else 'torch' (the interpreter only on request)."""
    global _warned_no_triton
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if backend == "auto":
        if not k.is_cuda:
            return "torch"
        if not triton_available():
            if not _warned_no_triton:
                warnings.warn("Triton is not installed: the WKV runs on the torch path (same results, slower).")
                _warned_no_triton = True
            return "torch"
        return "triton" if k.dtype != torch.float64 else "torch"
    if backend == "triton":
        if not (k.is_cuda or interpret):
            raise ValueError(
                "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import for "
                f"the CPU interpreter); got tensors on {k.device}. Use backend='torch' or 'auto'."
            )
        if k.dtype == torch.float64:
            raise ValueError("backend='triton' computes in float32: use backend='torch' for float64 inputs")
        if not triton_available():
            raise ValueError("backend='triton' needs the triton package: pip install triton")
    return backend


def _check_inputs(name: str, w: Tensor, u: Tensor, k: Tensor, v: Tensor) -> None:
    for label, t in (("w", w), ("u", u), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOAT_TYPES:
            raise ValueError(
                f"{name}: {label} must be a floating tensor (float32, bfloat16, float16 or float64), "
                f"got {t.dtype}; convert it with .float()"
            )
    if k.dim() != 3:
        raise ValueError(f"{name}: k must have shape (B, T, C), got rank {k.dim()} shape {tuple(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"{name}: v must have the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    B, T, C = k.shape
    if T == 0:
        raise ValueError(f"{name}: the sequence is empty (T = 0 in k of shape {tuple(k.shape)}); need T >= 1")
    for label, t in (("w", w), ("u", u)):
        if t.shape != (C,):
            raise ValueError(f"{name}: {label} must have shape (C,) = ({C},), got {tuple(t.shape)}")
    devices = {t.device for t in (w, u, k, v)}
    if len(devices) > 1:
        raise ValueError(f"{name}: w, u, k, v must be on one device, got {sorted(map(str, devices))}")
    if k.dtype != v.dtype:
        raise ValueError(f"{name}: k and v must share a dtype, got {k.dtype} and {v.dtype}")


def _wkv(name: str, w, u, k, v, causal: bool, backend: str) -> Tensor:
    _check_inputs(name, w, u, k, v)
    backend = resolve_backend(backend, k)
    if backend == "naive":
        cd = _compute_dtype(k)
        return wkv_dense(w.to(cd), u.to(cd), k.to(cd), v.to(cd), causal=causal).to(k.dtype)
    pd = torch.float64 if k.dtype == torch.float64 else torch.float32
    return _wkv_forward_op(w.to(pd), u.to(pd), k, v, causal, backend)


def bi_wkv(w: Tensor, u: Tensor, k: Tensor, v: Tensor, backend: str = "auto") -> Tensor:
    """Bi-WKV of Vision-RWKV: y_t = sum_i lam(t,i) v_i / sum_i lam(t,i) (RWKV-SSS draft Eq. 8).

    lam(t,i) = e^{-(|t-i|-1) w + k_i} for i != t and e^{u + k_t} for i = t.
    w, u: (C,) per-token decay and bonus (any real values); k, v: (B, T, C).
    Returns y: (B, T, C) in the dtype of k. Differentiable in w, u, k and v.
    """
    return _wkv("bi_wkv", w, u, k, v, False, backend)


def uni_wkv(w: Tensor, u: Tensor, k: Tensor, v: Tensor, backend: str = "auto") -> Tensor:
    """Causal (uni-directional) WKV of RWKV-4, MS-RWKV Eq. 5-6.

    y_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u+k_t} v_t) / (same with v_i = 1).
    w, u: (C,) (RWKV-4 parameterises w = exp(theta); pass w itself); k, v: (B, T, C).
    Returns y: (B, T, C) in the dtype of k. Differentiable in w, u, k and v.
    """
    return _wkv("uni_wkv", w, u, k, v, True, backend)


def bi_wkv_dense(w: Tensor, u: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The Bi-WKV oracle: wkv_dense in the inputs' dtype (pass float64)."""
    return wkv_dense(w, u, k, v, causal=False)


def uni_wkv_dense(w: Tensor, u: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The causal WKV oracle: wkv_dense in the inputs' dtype (pass float64)."""
    return wkv_dense(w, u, k, v, causal=True)


def wkv_macs(T: int, C: int, B: int = 1) -> int:
    """Multiply-accumulates Vision-RWKV's FLOP script charges one Bi-WKV call: 29 per (b, t, c)."""
    return 29 * B * T * C

