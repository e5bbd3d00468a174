"""A decoded data set as compact uint8 arrays, and its file: decode once, then load in a second.

    SegCache.images  (N, C, H, W) uint8    the network inputs as stored (ISIC RGB, ACDC grey)
    SegCache.masks   (N, H, W)    uint8    class indices (ISIC {0, 1}; ACDC {0, 1, 2, 3})
    SegCache.ids     N names               one per sample, e.g. "ISIC_0000000", "patient001_frame01_slice_1"
    SegCache.meta    dict                  JSON facts: data set, sizes, interpolation, skipped items
    SegCache.extras  {name: array}         more arrays, e.g. ACDC native-size labels per volume

The file is a zip of .npy members that `numpy.load` reads (an .npz), compressed with deflate or
bzip2 (bzip2 is ~20 % smaller on MRI noise; the ACDC cache uses it), plus `sha256.npy`: the
content hash of every member, checked on load. The builders live beside their readers
(`isic.isic2018_cache`, `acdc.acdc_cache`); this module knows no data set.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rwkvseg.data.errors import DataError, DataNotFoundError
from rwkvseg.data.files import read_with

CACHE_ENV_VAR = "RWKVSEG_CACHE"
COMPRESSION = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "none": zipfile.ZIP_STORED}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SegCache:
    """Images, masks and ids of one data set (or one part of it), as uint8 arrays in memory."""

    images: np.ndarray                                    # (N, C, H, W) uint8
    masks: np.ndarray                                     # (N, H, W) uint8 class indices
    ids: tuple[str, ...]                                  # (N,)
    meta: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[0] != n:
            raise ValueError(f"images must be uint8 (N={n}, C, H, W), got {self.images.dtype} {self.images.shape}")
        if self.masks.dtype != np.uint8 or self.masks.shape != (n, *self.images.shape[2:]):
            raise ValueError(f"masks must be uint8 {(n, *self.images.shape[2:])}, "
                             f"got {self.masks.dtype} {self.masks.shape}")
        if len(set(self.ids)) != n:
            raise ValueError("ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of `ids` (in the order given); names every id that is not in the cache."""
        where = {name: i for i, name in enumerate(self.ids)}
        missing = [name for name in ids if name not in where]
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in this cache ({self.meta.get('dataset', '?')}), "
                           f"e.g. {missing[:3]}: was it built from the same data and split?")
        return np.array([where[name] for name in ids], dtype=np.int64)

    def take(self, ids: Sequence[str]) -> "SegCache":
        """The samples `ids`, in that order (extras are kept: they are per volume, not per row)."""
        rows = self.index(ids)
        return SegCache(images=self.images[rows], masks=self.masks[rows], ids=tuple(ids),
                        meta=dict(self.meta), extras=self.extras)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.masks.nbytes + sum(a.nbytes for a in self.extras.values())


def _members(cache: SegCache) -> dict[str, np.ndarray]:
    """The arrays written to the file, by member name (the stored hash is not part of the content)."""
    meta = {key: value for key, value in cache.meta.items() if key != "sha256"}
    arrays = {
        "images": cache.images,
        "masks": cache.masks,
        "ids": np.array(cache.ids, dtype=str),
        "meta": np.array(json.dumps({**meta, "format_version": FORMAT_VERSION}, sort_keys=True)),
    }
    arrays.update({f"extra.{name}": value for name, value in cache.extras.items()})
    return arrays


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every member's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(np.ascontiguousarray(a).data)                          # 0-d arrays come back 1-d here
    return h.hexdigest()


@dataclass(frozen=True)
class CacheReport:
    """What a save wrote: the builder prints it, results may record it."""

    path: str
    size_bytes: int
    n_items: int
    sha256: str
    compression: str
    seconds: float

    @property
    def size_mib(self) -> float:
        return self.size_bytes / 2**20

    def __str__(self) -> str:
        return (f"wrote {Path(self.path).name}: {self.n_items} items, {self.size_mib:.1f} MiB "
                f"({self.compression}), sha256 {self.sha256[:12]}, {self.seconds:.1f} s")


def save_cache(cache: SegCache, path: str | Path, *, compression: str = "deflate",
               level: int | None = None) -> CacheReport:
    """Write `cache` to `path` (.npz); the file appears only once complete (write, then rename)."""
    if compression not in COMPRESSION:
        raise ValueError(f"compression must be one of {tuple(COMPRESSION)}, got {compression!r}")
    start = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _members(cache)
    digest = content_hash(arrays)
    arrays["sha256"] = np.array(digest)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=COMPRESSION[compression], compresslevel=level) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    os.replace(tmp, path)
    return CacheReport(path=str(path), size_bytes=path.stat().st_size, n_items=len(cache), sha256=digest,
                       compression=compression, seconds=time.perf_counter() - start)


def load_cache(path: str | Path, *, verify: bool = True) -> SegCache:
    """Read a cache file; with verify, recompute its content hash (a corrupt file is an error)."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(path, "cache file does not exist", hint="build it first (isic2018_cache / acdc_cache)")

    def read():
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}

    arrays = read_with(read, path, "cache file", errors=(OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError),
                       problem="not a readable cache file", hint="delete it and rebuild",
                       empty_hint="delete it and rebuild")
    missing = {"images", "masks", "ids", "meta", "sha256"} - set(arrays)
    if missing:
        raise DataError(path, f"cache file lacks {sorted(missing)}", hint="delete it and rebuild")
    stored = str(arrays.pop("sha256"))
    if verify and content_hash(arrays) != stored:
        raise DataError(path, "content hash mismatch: the file is corrupt or was edited",
                        hint="delete it and rebuild")
    meta = json.loads(str(arrays["meta"]))
    meta["sha256"] = stored
    extras = {name[len("extra."):]: value for name, value in arrays.items() if name.startswith("extra.")}
    return SegCache(images=arrays["images"], masks=arrays["masks"], ids=tuple(arrays["ids"].tolist()),
                    meta=meta, extras=extras)


def default_cache_dir() -> Path:
    """$RWKVSEG_CACHE, else ~/.cache/rwkvseg."""
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "rwkvseg")).expanduser()


def source_fingerprint(files: Iterable[Path], base: Path) -> str:
    """sha256 of the sorted (relative name, size, mtime) of the source files: cheap, and changes
    whenever a file is added, removed or rewritten (a cache built from other data is rebuilt)."""
    h = hashlib.sha256()
    for p in sorted(Path(f) for f in files):
        st = p.stat()
        h.update(f"{p.relative_to(base)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_or_build(path: str | Path, *, build: Callable[[], SegCache], fingerprint: str | None,
                  compression: str = "deflate", level: int | None = None, rebuild: bool = False,
                  verbose: bool = True) -> SegCache:
    """Load the cache at `path` if it exists and was built from the same source, else build and save.

    `fingerprint` None means the source is not available: an existing cache is then used as is.
    """
    path = Path(path)
    if path.is_file() and not rebuild:
        cache = load_cache(path)
        if fingerprint is None or cache.meta.get("source_fingerprint") == fingerprint:
            return cache
        if verbose:
            print(f"{path.name}: the source data changed since it was built; rebuilding")
    elif fingerprint is None:
        raise DataNotFoundError(path, "neither the cache file nor its source data were found",
                                hint="pass the data root (or set RWKVSEG_DATA) to build it")
    cache = build()
    report = save_cache(cache, path, compression=compression, level=level)
    if verbose:
        print(report)
    meta = {**cache.meta, "format_version": FORMAT_VERSION, "sha256": report.sha256}
    return SegCache(images=cache.images, masks=cache.masks, ids=cache.ids, meta=meta, extras=cache.extras)
