"""The checked readers: every file the package reads goes through one of them, so that `train`,
`evaluate`, `cache`, `predict` and the Python API give the same clear error for the same bad file.

    read_bytes(path, what)          a whole file: regular files only, within MAX_FILE_BYTES and READ_TIMEOUT_S
    read_text(path, what)           the same, decoded as UTF-8
    read_image(path, mode="RGB")    an image decoded within MAX_DECODE_BYTES, 16-bit scaled to 8 bits
    read_with(read, path, what)     any other read (an image, HDF5 or NIfTI header, a cache file): the
                                    same file checks and time bound, its errors a DataError

What is refused, always with a DataError naming the file:
- anything that is not a regular file: a named pipe (opening one for reading waits for a writer,
  forever), a device (/dev/zero never ends), a socket, a directory. The kind is checked with
  `stat` before the file is opened, and again on the open descriptor (opened non-blocking);
- an empty file, a file larger than MAX_FILE_BYTES, and a read that does not finish within
  READ_TIMEOUT_S (a stalled network drive): the reading thread is left behind, the caller is not;
- an image whose decoding needs more than MAX_DECODE_BYTES (PIL holds 4 bytes per pixel for
  RGB, 1 for grey): a JPEG is decoded at 1/2, 1/4 or 1/8 scale instead (libjpeg's draft mode,
  which never holds the full image), any other format is refused with its size. PIL itself
  refuses images above 2 x Image.MAX_IMAGE_PIXELS (179 MP) as decompression bombs (its warning
  below that is silenced: the bound here is what holds);
- images with no defined 8-bit scale (32-bit float, 32-bit integers outside [0, 65535]).

16-bit grey images (and 32-bit integer ones with values in [0, 65535]) are scaled to 8 bits
(round(value / 257), so 65535 -> 255) instead of being clipped, and `ImageRead.notes` says so, as
it says when an image was decoded at a reduced scale: loaders warn with the notes, `predict`
prints them.
"""
from __future__ import annotations

import io
import math
import os
import stat
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from rwkvseg.data.errors import DataError, DataNotFoundError

MAX_FILE_BYTES = 8 * 2**30          # the largest file read whole
READ_TIMEOUT_S = 120.0              # the longest one read may take
MAX_DECODE_BYTES = 256 * 2**20      # the largest decoded image held in memory (64 MP RGB, 256 MP grey)

T = TypeVar("T")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _special(mode: int) -> str | None:
    """What a non-regular file is ("a named pipe (FIFO)", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | Path, what: str = "file") -> os.stat_result:
    """The file's stat, or a DataError when it is missing or not a regular file (never opened here)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataNotFoundError(path, f"no such {what}") from None
    except OSError as e:
        raise DataError(path, f"cannot read the {what} ({e.strerror or e})") from None
    kind = _special(st.st_mode)
    if kind is not None:
        raise DataError(path, f"the {what} is {kind}, not a regular file: refused (reading it could wait "
                              "forever or never end)", hint=f"pass the {what} itself")
    return st


def within_timeout(read: Callable[[], T], path: str | Path, what: str = "file", *,
                   timeout: float | None = None) -> T:
    """read() in a daemon thread; a DataError naming `path` if it takes longer than `timeout`
    (default READ_TIMEOUT_S). Exceptions of read() are raised as they are."""
    timeout = READ_TIMEOUT_S if timeout is None else timeout
    box: dict = {}

    def work():
        try:
            box["value"] = read()
        except BaseException as e:                  # handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=work, daemon=True, name=f"rwkvseg read {Path(path).name}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DataError(path, f"reading the {what} did not finish within {timeout:g} s",
                        hint="is it on a stalled network drive? copy it to a local disk "
                             "(or raise rwkvseg.data.files.READ_TIMEOUT_S)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def read_with(read: Callable[[], T], path: str | Path, what: str = "file", *,
              errors: tuple[type[Exception], ...] = (), problem: str = "", hint: str = "",
              empty_hint: str | None = None) -> T:
    """read() of a file the reader opens itself (an image, HDF5 or NIfTI header, a cache file),
    with read_bytes' checks: a DataError naming `path` when it is not a regular file, when it is
    empty (only with `empty_hint`, that error's hint), when read() outlasts READ_TIMEOUT_S, and
    for an exception of a type in `errors`: "`problem` (the exception)" with `hint`."""
    path = Path(path)
    if check_regular(path, what).st_size == 0 and empty_hint is not None:
        raise DataError(path, f"the {what} is empty (0 bytes)", hint=empty_hint)
    try:
        return within_timeout(read, path, what)
    except DataError:
        raise
    except errors as e:
        raise DataError(path, f"{problem} ({e})", hint=hint) from None


def _read_regular(path: Path, what: str) -> bytes:
    """Open non-blocking (a pipe swapped in after the stat does not block the open), check the
    descriptor is a regular file, read it all."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as f:
        kind = _special(os.fstat(f.fileno()).st_mode)
        if kind is not None:
            raise DataError(path, f"the {what} is {kind}, not a regular file: refused")
        return f.read()


def read_bytes(path: str | Path, what: str = "file", *, empty_ok: bool = False,
               timeout: float | None = None) -> bytes:
    """The whole file, checked: a regular file, not empty (unless empty_ok), at most
    MAX_FILE_BYTES, read within `timeout` seconds (default READ_TIMEOUT_S)."""
    path = Path(path)
    st = check_regular(path, what)
    if st.st_size == 0 and not empty_ok:
        raise DataError(path, f"the {what} is empty (0 bytes)", hint="write or download it again")
    if st.st_size > MAX_FILE_BYTES:
        raise DataError(path, f"the {what} is {st.st_size / 2**30:.1f} GiB, above the "
                              f"{MAX_FILE_BYTES / 2**30:.0f} GiB read bound",
                        hint="raise rwkvseg.data.files.MAX_FILE_BYTES if the file is right")
    try:
        data = within_timeout(lambda: _read_regular(path, what), path, what, timeout=timeout)
    except OSError as e:
        raise DataError(path, f"cannot read the {what} ({e.strerror or e})") from None
    if not data and not empty_ok:
        raise DataError(path, f"the {what} is empty (0 bytes)", hint="write or download it again")
    return data


def read_text(path: str | Path, what: str = "file", *, empty_ok: bool = True) -> str:
    """The file as UTF-8 text (read_bytes' checks, and a DataError for bytes that are not UTF-8)."""
    data = read_bytes(path, what, empty_ok=empty_ok)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"the {what} is not UTF-8 text (byte {e.start}: {e.reason})",
                        hint="is it a binary file given where a text file was expected?") from None


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRead:
    """A decoded image file: `image` (PIL, loaded), `size` (W, H) as stored in the file (larger
    than image.size when decoded at a reduced scale), and `notes`: what was done beyond decoding."""

    image: Image.Image
    size: tuple[int, int]
    notes: tuple[str, ...] = ()


def _bytes_per_pixel(mode: str) -> int:
    """What PIL holds per pixel in memory: 1 for 1-bit / grey / palette, 2 for 16-bit, else 4."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode in _SIXTEEN_BIT else 4


def _eight_bit(image: Image.Image, path: Path, what: str) -> tuple[Image.Image, list[str]]:
    """16-bit (or 32-bit integer within [0, 65535]) grey -> 8-bit grey, round(value / 257); float
    and other 32-bit images are refused (no 8-bit scale is defined)."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if image.mode == "I" and (lo < 0 or hi > 65535):
            raise DataError(path, f"the {what} holds 32-bit integers in [{lo}, {hi}]: no 8-bit scale is defined",
                            hint="save it as an 8-bit (or 16-bit) image")
        scaled = ((values + 128) // 257).astype(np.uint8)
        source = "16-bit grey" if image.mode != "I" else "32-bit integer grey (values within 16 bits)"
        return Image.fromarray(scaled, mode="L"), [f"{source} scaled to 8 bits: round(value / 257), "
                                                  f"values {lo}..{hi} -> {scaled.min()}..{scaled.max()}"]
    if image.mode in ("F", "I;32", "I;32B", "I;32L"):
        raise DataError(path, f"the {what} has 32-bit pixels (PIL mode {image.mode!r}): no 8-bit scale is defined",
                        hint="save it as an 8-bit (or 16-bit) image")
    return image, []


def read_image(path: str | Path, what: str = "image", *, mode: str | None = None) -> ImageRead:
    """Decode an image file, checked (see the module docstring). `mode` "RGB" or "L": converted
    to it (16-bit grey scaled to 8 bits first); None: the pixels as stored (a mask's values are
    never rescaled)."""
    path = Path(path)
    data = read_bytes(path, what)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():                   # the decode bound below governs memory, not PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        size = image.size
        need = size[0] * size[1] * _bytes_per_pixel(image.mode)
        if need > MAX_DECODE_BYTES:
            scale = _draft_scale(image, path, what, need)
            image.draft(image.mode, (math.ceil(size[0] / scale), math.ceil(size[1] / scale)))
            notes.append(f"{size[0]}x{size[1]} decoded at 1/{scale} scale ({image.size[0]}x{image.size[1]}) to "
                         f"stay within the {MAX_DECODE_BYTES / 2**20:.3g} MiB decode bound")
        image.load()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(path, f"the {what} is too large to decode ({e})", hint="shrink it first") from None
    except Image.UnidentifiedImageError:
        raise DataError(path, f"cannot decode the {what}: not an image file PIL can read (it begins with "
                              f"{data[:12]!r})",
                        hint="is it a JPEG or PNG? a text file or a partial download has another name") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        raise DataError(path, f"cannot decode the {what} ({e})",
                        hint="the file is corrupt or truncated: download or export it again") from None
    if mode is not None:
        image, scaled = _eight_bit(image, path, what)
        notes += scaled
        if image.mode != mode:
            image = image.convert(mode)
    return ImageRead(image=image, size=size, notes=tuple(notes))


def _draft_scale(im: Image.Image, path: Path, what: str, need: int) -> int:
    """The smallest JPEG scale divisor (2, 4 or 8) whose decoded image fits MAX_DECODE_BYTES."""
    w, h = im.size
    per_pixel = _bytes_per_pixel(im.mode)
    if im.format == "JPEG":
        for scale in (2, 4, 8):
            if math.ceil(w / scale) * math.ceil(h / scale) * per_pixel <= MAX_DECODE_BYTES:
                return scale
    raise DataError(path, f"the {what} is {w}x{h} ({w * h / 1e6:.3g} MP, {im.format}): decoding it needs "
                          f"{need / 2**20:.3g} MiB, above the {MAX_DECODE_BYTES / 2**20:.3g} MiB decode bound",
                    hint="shrink it, or save it as JPEG (decoded at a reduced scale), or raise "
                         "rwkvseg.data.files.MAX_DECODE_BYTES")


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(W, H) from the file's header only (the same checks as read_image, no pixel decoded)."""
    def header():
        with Image.open(path) as im:
            return im.size

    return read_with(header, path, what, errors=(OSError, SyntaxError, ValueError, Image.DecompressionBombError),
                     problem=f"cannot read the {what}'s header", hint="the file is corrupt")
