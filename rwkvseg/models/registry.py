"""A registry of model builders, built by name like timm's `create_model`."""
from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a builder under its function name (one name per network)."""
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _BUILDERS[fn.__name__] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; `pattern` filters with shell wildcards, e.g. 'rwkv_unet_*'."""
    names = sorted(_BUILDERS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; keyword overrides replace fields of its config dataclass."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _BUILDERS[name](**overrides)
