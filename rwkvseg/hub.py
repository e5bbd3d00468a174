"""Save and load trained networks: safetensors weights plus a config.json that rebuilds the model.

A checkpoint is a directory:

    model.safetensors   the state dict (float32, or the dtype asked for at saving)
    config.json         {"format": "rwkvseg", "model_name": ..., "config": {...}, "num_classes": ...,
                         "in_chans": ..., "input_size": ..., "normalization": ..., "training_data": ...,
                         "metrics": ..., "dtype": ..., "extra": {...}}

The networks trained for the book ship inside the package (rwkvseg/weights/<name>/, each with a
model card): `from_pretrained("rwkv_unet_t_isic2018")` loads one by name, `list_pretrained()` names
them. Loading needs nothing but the directory: the registered builder `model_name` is called with the
saved config fields (rwkvseg.models.create_model), then the weights load with strict=True. A
checkpoint whose tensors do not match the rebuilt model is refused with the missing, unexpected
and mis-shaped keys named. The model must carry its config dataclass as `model.config`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from rwkvseg.models import create_model, list_models

__all__ = ["save_pretrained", "from_pretrained", "list_pretrained", "load_config", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
SHIPPED = Path(__file__).resolve().parent / "weights"


def list_pretrained() -> list[str]:
    """The names of the trained networks that ship with the package."""
    return sorted(p.name for p in SHIPPED.iterdir() if (p / CONFIG_NAME).is_file())


def checkpoint_dir(path: str | Path) -> Path:
    """`path` when it is a folder; else the shipped network of that name."""
    p = Path(path).expanduser()
    if not p.is_dir() and str(path) in list_pretrained():
        return SHIPPED / str(path)
    return p
_KNOWN_METADATA = ("input_size", "normalization", "training_data", "metrics")


def _model_config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(
            f"{type(model).__name__} has no config dataclass at `model.config`: save_pretrained needs "
            "it to rebuild the model; build the model with rwkvseg.models.create_model"
        )
    return config


def _jsonable(value: Any, where: str) -> Any:
    try:
        json.dumps(value)
    except TypeError as err:
        raise ValueError(f"{where} must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None
    return value


def save_pretrained(
    model: nn.Module, path: str | Path, *, model_name: str | None = None,
    dtype: torch.dtype | None = None, **metadata: Any,
) -> Path:
    """Write `path`/model.safetensors and `path`/config.json; returns the directory.

    Args:
        model: a network built by rwkvseg.models.create_model (it has `model.config`).
        path: the checkpoint directory (created if missing).
        model_name: its registered name; defaults to `model.model_name` when the model has one.
        dtype: e.g. torch.float16 to halve the file; only floating tensors are cast.
        **metadata: input_size, normalization (e.g. {"mean": [...], "std": [...]}), training_data,
            metrics, and any other JSON-serialisable facts (stored under "extra").
    """
    config = _model_config(model)
    model_name = model_name or getattr(model, "model_name", None)
    if model_name is None:
        raise ValueError("save_pretrained needs the registered model name: pass model_name='rwkv_unet_t' (say)")
    if model_name not in list_models():
        raise ValueError(f"model_name {model_name!r} is not registered; registered: {', '.join(list_models())}")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype such as torch.float16, got {dtype}")

    state = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[key] = t.contiguous().clone()                                    # no shared storage in safetensors
    fields = dataclasses.asdict(config)
    record = {
        "format": "rwkvseg",
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "config": _jsonable(fields, "the model config"),
        "num_classes": fields.get("num_classes"),
        "in_chans": fields.get("in_chans"),
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
    }
    for key in _KNOWN_METADATA:
        record[key] = _jsonable(metadata.pop(key, None), key)
    record["extra"] = _jsonable(metadata, "extra metadata")

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt", "model_name": model_name})
    (path / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_config(path: str | Path) -> dict:
    """The config.json of a checkpoint directory (or a shipped network's name), as a dict."""
    path = checkpoint_dir(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {path}: a checkpoint directory holds {WEIGHTS_NAME} and {CONFIG_NAME} "
            "written by rwkvseg.hub.save_pretrained"
        )
    record = json.loads(cfg_file.read_text())
    if record.get("format") != "rwkvseg":
        raise ValueError(f"{cfg_file} is not an rwkvseg checkpoint config (format={record.get('format')!r})")
    return record


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


def from_pretrained(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model from config.json via the registry, load the weights with strict=True.

    `path` is a checkpoint directory or the name of a shipped network (list_pretrained()).
    Returns the model in eval mode, in float32 (a float16 checkpoint is upcast), on `map_location`,
    with the checkpoint record attached as `model.pretrained_record`.
    """
    path = checkpoint_dir(path)
    record = load_config(path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {path} (found: {sorted(p.name for p in path.iterdir())})")
    overrides = {k: _as_tuples(v) for k, v in record["config"].items()}
    model = create_model(record["model_name"], **overrides)
    state = load_file(str(weights))

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected) if state[k].shape != expected[k].shape
    )
    if missing or unexpected or mis_shaped:
        def show(keys):
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "") if keys else "none"

        raise ValueError(
            f"checkpoint {path} does not match {record['model_name']} rebuilt from its config.json:\n"
            f"  missing keys: {show(missing)}\n  unexpected keys: {show(unexpected)}\n"
            f"  shape mismatches: {show(mis_shaped)}\n"
            "the weights were saved from a different architecture or config; save them again with "
            "rwkvseg.hub.save_pretrained from the model that produced them"
        )
    state = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.model_name = record["model_name"]
    model.pretrained_record = record
    return model.to(map_location).eval()
