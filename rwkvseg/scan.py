"""Scan orders: how a 2-D map becomes the 1-D sequence a WKV reads, and back.

A scan order is a small object that maps a (B, C, H, W) map to a (B, T', C) sequence and back
**exactly**. Every order is defined by its *lines* (rows, columns, anti-diagonals, windows: lists
of flat pixel indices n = h*W + w), read one after the other:

    order          lines                                        used by
    RowMajor       rows, top to bottom, each left to right      MS-RWKV heads 1-2 (Eq. 11-14)
    ColumnMajor    columns, left to right, each top to bottom   MS-RWKV heads 3-4
    Snake          rows, every second row reversed (zigzag)     Zig-RiR, RWKV-SSS ablation
    Diagonal       anti-diagonals h + w = d, each by h          RWKV-SSS draft (Sec. III-B)
    WindowScan     w x w windows in raster order of windows,    RWKV-SSS reading A
                   raster or diagonal order inside a window

Two options apply to every order:

* ``reverse=True`` reads the finished sequence backwards (padding slots included), so
  RowMajor(reverse=True, pad=True) is the exact reverse of RowMajor(pad=True)'s sequence
  (MS-RWKV Fig. 3, the second head).
* ``pad=True`` inserts one padding slot after every line: MS-RWKV's end-of-line token. For a row
  scan the sequence is H(W+1) long, for a column scan W(H+1). ``scan`` fills the slots with a
  pad token (a (C,) vector owned by the caller, e.g. a learned nn.Parameter) or with zeros;
  ``unscan`` drops them, so the map returns to H x W exactly.

Each order also produces its **index table** (``index(H, W)``: int64 [T'], the flat source pixel
of every sequence slot, -1 for a padding slot). The table is the scan's "route": a kernel can
gather through it instead of making a permuted copy. Here scan/unscan are an index_select and
its inverse gather, both differentiable.
"""
from __future__ import annotations

from functools import lru_cache, wraps

import torch
from torch import Tensor

from rwkvseg.wkv import wkv_log_weights

__all__ = [
    "ScanOrder", "RowMajor", "ColumnMajor", "Snake", "Diagonal", "WindowScan",
    "route", "ms_rwkv_head_orders", "neighbour_distances", "wkv_receptive_field",
]


class ScanOrder:
    """Base class: an order is its list of lines; subclasses implement ``lines(H, W)``.

    Options (keyword-only): ``reverse`` reads the whole sequence backwards; ``pad`` inserts a
    padding slot after every line (MS-RWKV's end-of-line token).
    """

    def __init__(self, *, reverse: bool = False, pad: bool = False) -> None:
        self.reverse = reverse
        self.pad = pad

    # -- what a subclass defines ---------------------------------------------------------------
    def lines(self, H: int, W: int) -> list[list[int]]:
        """The lines of the order as lists of flat pixel indices n = h*W + w."""
        raise NotImplementedError

    def _key(self) -> tuple:
        return (type(self).__name__, self.reverse, self.pad)

    # -- derived -------------------------------------------------------------------------------
    def index(self, H: int, W: int, device: torch.device | str | None = None) -> Tensor:
        """The route: int64 [T'] with the flat source pixel of each slot, -1 at padding slots."""
        _check_size(H, W)
        return _cached_index(self, H, W, torch.device(device or "cpu"))

    def length(self, H: int, W: int) -> int:
        """T', the sequence length including padding slots."""
        _check_size(H, W)
        return len(route(self, H, W)[0])

    def scan(self, x: Tensor, pad_token: Tensor | None = None) -> Tensor:
        """(B, C, H, W) -> (B, T', C). Padding slots hold ``pad_token`` ((C,)) or zeros."""
        if x.dim() != 4:
            raise ValueError(f"{self!r}.scan expects a (B, C, H, W) map, got shape {tuple(x.shape)}")
        B, C, H, W = x.shape
        _check_size(H, W)
        idx = _cached_index(self, H, W, x.device, pad_slot=H * W)           # (T',), padding slots -> H*W
        flat = x.flatten(2)                                                 # (B, C, H*W)
        if self.pad:
            if pad_token is None:
                pad_token = x.new_zeros(C)
            if pad_token.shape != (C,):
                raise ValueError(
                    f"{self!r}: pad_token must have shape (C,) = ({C},), got {tuple(pad_token.shape)}"
                )
            # Append the pad token as an extra "pixel" H*W so one gather builds the sequence.
            flat = torch.cat([flat, pad_token.to(flat.dtype).view(1, C, 1).expand(B, C, 1)], dim=2)
        return flat.index_select(2, idx).transpose(1, 2)                   # (B, T', C)

    def unscan(self, seq: Tensor, H: int, W: int) -> Tensor:
        """(B, T', C) -> (B, C, H, W): drop padding slots, put every token back at its pixel."""
        T = self.length(H, W)
        if seq.dim() != 3 or seq.shape[1] != T:
            raise ValueError(
                f"{self!r}.unscan expects (B, T'={T}, C) for an {H}x{W} map, got shape {tuple(seq.shape)}"
            )
        inv = _cached_inverse(self, H, W, seq.device)                       # (H*W,) slot of pixel n
        B, _, C = seq.shape
        return seq.index_select(1, inv).transpose(1, 2).reshape(B, C, H, W)

    def __repr__(self) -> str:
        args = self._extra_repr() + [f"reverse={self.reverse}", f"pad={self.pad}"]
        return f"{type(self).__name__}({', '.join(args)})"

    def _extra_repr(self) -> list[str]:
        return []

    def __eq__(self, other) -> bool:
        return isinstance(other, ScanOrder) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _check_size(H: int, W: int) -> None:
    if not (isinstance(H, int) and isinstance(W, int)) or H < 1 or W < 1:
        raise ValueError(f"a scan needs a map of at least 1 x 1 pixels, got H={H!r}, W={W!r}")


def cached(maxsize: int):
    """functools.lru_cache for eager calls; under torch.compile the plain function, traced once (its result
    becomes a constant of the graph), because Dynamo does not trace through an lru_cache (it warns)."""
    def wrap(fn):
        hit = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(*args, **kwargs):
            return fn(*args, **kwargs) if torch.compiler.is_compiling() else hit(*args, **kwargs)
        return call
    return wrap


@cached(maxsize=512)
def route(order: ScanOrder, H: int, W: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The route (slot -> pixel, -1 at padding) and its inverse (pixel -> slot) as plain Python
    tuples: torch.compile treats them as constants, so a compiled network has no data-dependent
    shapes here."""
    seq: list[int] = []
    for line in order.lines(H, W):
        seq.extend(line)
        if order.pad:
            seq.append(-1)
    if order.reverse:
        seq.reverse()
    pixels = [p for p in seq if p >= 0]
    if len(pixels) != H * W or set(pixels) != set(range(H * W)):
        raise AssertionError(f"{order!r} does not visit each of the {H}x{W} pixels exactly once")
    inverse = [0] * (H * W)
    for slot, p in enumerate(seq):
        if p >= 0:
            inverse[p] = slot
    return tuple(seq), tuple(inverse)


# The routes as int64 tensors, built once per (order, size, device) and kept on the device, so a call
# pays neither a Python-to-tensor conversion nor a blocking host-to-device copy. Callers must not
# modify them.
@cached(maxsize=1024)
def _cached_index(order: ScanOrder, H: int, W: int, device: torch.device = torch.device("cpu"),
                  pad_slot: int = -1) -> Tensor:
    with torch.inference_mode(False):    # a normal tensor even when first asked for under inference mode
        idx = torch.tensor(route(order, H, W)[0], dtype=torch.int64)
        if pad_slot != -1:
            idx = torch.where(idx < 0, pad_slot, idx)
        return idx.to(device)


@cached(maxsize=1024)
def _cached_inverse(order: ScanOrder, H: int, W: int, device: torch.device = torch.device("cpu")) -> Tensor:
    with torch.inference_mode(False):
        return torch.tensor(route(order, H, W)[1], dtype=torch.int64).to(device)


# ----------------------------------------------------------------------------------------------
# The orders
# ----------------------------------------------------------------------------------------------

class RowMajor(ScanOrder):
    """Rows top to bottom, each left to right (reverse: the exact mirror of the sequence)."""

    def lines(self, H, W):
        return [[h * W + w for w in range(W)] for h in range(H)]


class ColumnMajor(ScanOrder):
    """Columns left to right, each top to bottom."""

    def lines(self, H, W):
        return [[h * W + w for h in range(H)] for w in range(W)]


class Snake(ScanOrder):
    """Zigzag (boustrophedon): rows (``axis='row'``) or columns, every second line reversed, so
    consecutive tokens are always spatial neighbours."""

    def __init__(self, *, axis: str = "row", reverse: bool = False, pad: bool = False) -> None:
        if axis not in ("row", "column"):
            raise ValueError(f"Snake axis must be 'row' or 'column', got {axis!r}")
        super().__init__(reverse=reverse, pad=pad)
        self.axis = axis

    def lines(self, H, W):
        base = RowMajor() if self.axis == "row" else ColumnMajor()
        return [line[::-1] if i % 2 else line for i, line in enumerate(base.lines(H, W))]

    def _key(self):
        return super()._key() + (self.axis,)

    def _extra_repr(self):
        return [f"axis={self.axis!r}"]


def _diagonal_lines(H: int, W: int, alternate: bool) -> list[list[tuple[int, int]]]:
    """Anti-diagonals d = h + w, each ordered by h (alternate: every second one by -h)."""
    out = []
    for d in range(H + W - 1):
        line = [(h, d - h) for h in range(max(0, d - W + 1), min(H, d + 1))]
        out.append(line[::-1] if alternate and d % 2 else line)
    return out


class Diagonal(ScanOrder):
    """Anti-diagonals h + w = 0, 1, ..., H+W-2, each ordered by h (RWKV-SSS draft Sec. III-B);
    ``alternate=True`` reverses every second anti-diagonal (a diagonal zigzag)."""

    def __init__(self, *, alternate: bool = False, reverse: bool = False, pad: bool = False) -> None:
        super().__init__(reverse=reverse, pad=pad)
        self.alternate = alternate

    def lines(self, H, W):
        return [[h * W + w for h, w in line] for line in _diagonal_lines(H, W, self.alternate)]

    def _key(self):
        return super()._key() + (self.alternate,)

    def _extra_repr(self):
        return [f"alternate={self.alternate}"]


class WindowScan(ScanOrder):
    """Window-major order (RWKV-SSS draft Sec. III-B, Eq. 1-7; our reading A): non-overlapping
    ``window`` x ``window`` windows in raster order of windows; inside each window the pixels
    are contiguous, in raster order (``inner='raster'``, default) or by anti-diagonals
    (``inner='diagonal'``, with ``alternate``). One line = one window (``pad`` puts a padding
    slot after each window).

    Sizes not divisible by ``window`` [choose]: the last window row/column is cut short (a
    partial window holds the remaining pixels, still contiguous); nothing is padded or dropped,
    so every H x W works and a window >= the map is the plain inner order of the whole map.
    """

    def __init__(self, *, window: int, inner: str = "raster", alternate: bool = False,
                 reverse: bool = False, pad: bool = False) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        if inner not in ("raster", "diagonal"):
            raise ValueError(f"inner order must be 'raster' or 'diagonal', got {inner!r}")
        super().__init__(reverse=reverse, pad=pad)
        self.window, self.inner, self.alternate = window, inner, alternate

    def lines(self, H, W):
        s = self.window
        out = []
        for h0 in range(0, H, s):
            for w0 in range(0, W, s):
                hh, ww = min(s, H - h0), min(s, W - w0)
                if self.inner == "raster":
                    cells = [(i, j) for i in range(hh) for j in range(ww)]
                else:
                    cells = [c for line in _diagonal_lines(hh, ww, self.alternate) for c in line]
                out.append([(h0 + i) * W + (w0 + j) for i, j in cells])
        return out

    def _key(self):
        return super()._key() + (self.window, self.inner, self.alternate)

    def _extra_repr(self):
        return [f"window={self.window}", f"inner={self.inner!r}"] + (
            [f"alternate={self.alternate}"] if self.alternate else [])


# ----------------------------------------------------------------------------------------------
# MS-RWKV's four head directions and a diagnostic
# ----------------------------------------------------------------------------------------------

def ms_rwkv_head_orders(*, heads: int = 4, pad: bool = True) -> list[ScanOrder]:
    """The MS-RWKV head directions (Eq. 11-14, Fig. 3): row-major forward, row-major reverse,
    column-major forward, column-major reverse. With ``heads=3`` the column-major reverse is
    dropped (the paper's Table 3 does not say which one it drops [choose]).
    """
    orders = [RowMajor(pad=pad), RowMajor(reverse=True, pad=pad),
              ColumnMajor(pad=pad), ColumnMajor(reverse=True, pad=pad)]
    if heads not in (1, 2, 3, 4):
        raise ValueError(f"MS-RWKV uses 1 to 4 scan heads (the paper: 4, ablation 3), got {heads}")
    return orders[:heads]


def neighbour_distances(order: ScanOrder, H: int, W: int) -> dict[str, Tensor]:
    """How far apart 4-neighbours land in the sequence: |slot(p) - slot(q)| for every pair of
    horizontally ('horizontal') and vertically ('vertical') adjacent pixels, padding slots
    counted (they add one decay step each)."""
    inv = _cached_inverse(order, H, W).view(H, W)
    return {"horizontal": (inv[:, 1:] - inv[:, :-1]).abs().flatten(),
            "vertical": (inv[1:, :] - inv[:-1, :]).abs().flatten()}


def wkv_receptive_field(order: ScanOrder, H: int, W: int, *, pixel: tuple[int, int], w: float,
                        u: float = 0.0, causal: bool = True) -> tuple[Tensor, float]:
    """The weight one pixel gives every pixel in a WKV along ``order`` when all keys are equal
    (k = 0): row t of softmax_i log lam(t, i) (rwkvseg.wkv.wkv_log_weights; causal WKV of
    MS-RWKV or Bi-WKV), mapped back to the grid. Returns ((H, W) float64 weights, the share that
    went to padding slots). With padding, pads take part of the mass and add distance.
    """
    idx = order.index(H, W)
    T = idx.numel()
    k = torch.zeros(1, T, 1, dtype=torch.float64)
    logits = wkv_log_weights(torch.tensor([float(w)], dtype=torch.float64),
                             torch.tensor([float(u)], dtype=torch.float64), k, causal=causal)[0, :, :, 0]
    t = int(_cached_inverse(order, H, W)[pixel[0] * W + pixel[1]])
    weights = torch.softmax(logits[t], dim=0)                                   # (T,) over source slots
    grid = torch.zeros(H * W, dtype=torch.float64)
    grid[idx[idx >= 0]] = weights[idx >= 0]
    return grid.view(H, W), float(weights[idx < 0].sum())
