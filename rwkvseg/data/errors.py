"""The errors the data loaders raise, and the log of what `on_error="skip"` left out.

Every message names the file (or folder), the problem, and what to do about it. A loader that is
asked to skip bad items never does so silently: it returns a `SkipLog` and warns with its summary.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

ON_ERROR = ("raise", "skip")


class DataError(ValueError):
    """A data file or folder is not what the loader expects.

    `path` is the offending file or folder, `problem` what was found (and expected), `hint` what to do.
    """

    def __init__(self, path: str | Path, problem: str, *, hint: str = ""):
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: {problem}" + (f". {hint}" if hint else ""))


class DataNotFoundError(DataError, FileNotFoundError):
    """A data root, folder or file does not exist (or holds none of the expected files)."""


class DataSkipWarning(UserWarning):
    """Emitted once per load when `on_error="skip"` left items out."""


class DataNoteWarning(UserWarning):
    """Emitted once per load when files were converted while being read (a 16-bit image scaled to
    8 bits, a huge image decoded at a reduced scale; rwkvseg.data.files): never silently."""


def listing(items: list[tuple[str, str]], limit: int = 5) -> str:
    """'a.jpg: truncated JPEG; b.png: ...; and 3 more' of (path, text) pairs, the first `limit` named."""
    shown = "; ".join(f"{Path(p).name}: {text}" for p, text in items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def warn_notes(what: str, notes: list[tuple[str, str]], limit: int = 5) -> None:
    """Warn once with the (path, note) pairs of a load, the first `limit` named."""
    if notes:
        warnings.warn(f"{what}: {len(notes)} file(s) converted while reading: {listing(notes, limit)}",
                      DataNoteWarning, stacklevel=3)


def check_on_error(on_error: str) -> None:
    """Reject anything but "raise" or "skip" (a typo must not turn errors into skips)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


@dataclass
class SkipLog:
    """The items a loader skipped: one (path, problem) pair each, in the order met."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, error: DataError) -> None:
        self.items.append((error.path, error.problem))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, limit: int = 5) -> str:
        """'skipped 2 item(s): a.jpg: truncated JPEG; b.png: ...' (the first `limit` named)."""
        return f"skipped {len(self)} item(s): {listing(self.items, limit)}"

    def warn(self, what: str) -> None:
        """Warn with the summary when anything was skipped (`what` says which load)."""
        if self.items:
            warnings.warn(f"{what}: {self.summary()}", DataSkipWarning, stacklevel=3)

    def to_list(self) -> list[list[str]]:
        """JSON-friendly form, recorded in a cache's metadata."""
        return [list(item) for item in self.items]
