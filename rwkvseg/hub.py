"""Save and load trained networks: safetensors weights plus a config.json that rebuilds the model.

A checkpoint is a directory:

    model.safetensors   the state dict (float32, or the dtype asked for at saving)
    config.json         {"format": "rwkvseg", "model_name": ..., "config": {...}, "num_classes": ...,
                         "in_chans": ..., "input_size": ..., "normalization": ..., "training_data": ...,
                         "metrics": ..., "dtype": ..., "extra": {...}}

The networks trained for the book ship inside the package (rwkvseg/weights/<name>/, each with a
model card): `from_pretrained("rwkv_unet_t_isic2018")` loads one by name, `list_pretrained()` names
them. Loading needs nothing but the directory: the registered builder `model_name` is called with the
saved config fields (rwkvseg.models.create_model), then the weights load with strict=True. Nothing
is unpickled, and every problem is a CheckpointError naming the file: config.json that is not JSON
or lacks a field, model.safetensors whose header is damaged, whose bytes do not match the sha256
recorded in config.json ("weights_sha256": written by save_pretrained, required for the shipped
networks), whose tensors do not match the rebuilt model (missing, unexpected and mis-shaped keys
named), or that holds a NaN or infinite value (the tensor named). Files are read by
rwkvseg.data.files (regular files only, within a time bound). The model must carry its config
dataclass as `model.config`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from rwkvseg.data.errors import DataError, DataNotFoundError
from rwkvseg.data.files import read_bytes, read_text
from rwkvseg.models import create_model, list_models

__all__ = ["save_pretrained", "from_pretrained", "list_pretrained", "load_config", "CheckpointError",
           "CheckpointNotFoundError", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
SHIPPED = Path(__file__).resolve().parent / "weights"
_KNOWN_METADATA = ("input_size", "normalization", "training_data", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file or directory that cannot be read, or is not what rwkvseg wrote."""

    def __init__(self, path: str | Path, problem: str, hint: str = ""):
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{path}: {problem}" + (f". {hint}" if hint else ""))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file or directory that does not exist."""


def read_checked(path: Path, what: str, *, text: bool = False) -> bytes | str:
    """The bytes (or text) of a checkpoint's file through rwkvseg.data.files, a CheckpointError if refused."""
    try:
        return read_text(path, what, empty_ok=False) if text else read_bytes(path, what)
    except DataNotFoundError as e:
        raise CheckpointNotFoundError(e.path, e.problem, e.hint) from None
    except DataError as e:
        raise CheckpointError(e.path, e.problem, e.hint) from None


def list_pretrained() -> list[str]:
    """The names of the trained networks that ship with the package."""
    return sorted(p.name for p in SHIPPED.iterdir() if (p / CONFIG_NAME).is_file())


def checkpoint_dir(path: str | Path) -> Path:
    """`path` when it is a folder; else the shipped network of that name."""
    p = Path(path).expanduser()
    if not p.is_dir() and str(path) in list_pretrained():
        return SHIPPED / str(path)
    return p


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
    data = save_safetensors(state, metadata={"format": "pt", "model_name": model_name})
    (path / WEIGHTS_NAME).write_bytes(data)
    record["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (path / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_config(path: str | Path) -> dict:
    """The config.json of a checkpoint directory (or a shipped network's name), as a dict, checked:
    JSON, format "rwkvseg", a registered model_name and a config mapping."""
    path = checkpoint_dir(path)
    cfg_file = path / CONFIG_NAME
    if not path.is_dir():
        raise CheckpointNotFoundError(path, f"no such checkpoint directory (holding {CONFIG_NAME} and {WEIGHTS_NAME}), "
                                      f"nor a shipped network of that name ({', '.join(list_pretrained())})")
    if not cfg_file.exists():
        raise CheckpointNotFoundError(cfg_file, f"no {CONFIG_NAME}: a checkpoint directory holds {WEIGHTS_NAME} and "
                                      f"{CONFIG_NAME} written by rwkvseg.hub.save_pretrained")
    try:
        record = json.loads(read_checked(cfg_file, "checkpoint config", text=True))
    except json.JSONDecodeError as e:
        raise CheckpointError(cfg_file, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                              "export the checkpoint again with rwkvseg.hub.save_pretrained") from None
    if not isinstance(record, dict) or record.get("format") != "rwkvseg":
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(cfg_file, f"not an rwkvseg checkpoint config (a mapping with format 'rwkvseg'; "
                              f"found {found!r})")
    missing = [key for key in ("model_name", "config") if key not in record]
    if missing:
        raise CheckpointError(cfg_file, f"lacks the field(s) {missing}", "export the checkpoint again")
    if record["model_name"] not in list_models():
        raise CheckpointError(cfg_file, f"model_name {record['model_name']!r} is not a registered network; "
                              f"registered: {', '.join(list_models())}")
    if not isinstance(record["config"], dict):
        raise CheckpointError(cfg_file, f"config is a {type(record['config']).__name__}, expected a mapping of "
                              "the model's config fields")
    return record


def check_finite(state: dict[str, torch.Tensor], where: str | Path) -> None:
    """A CheckpointError naming `where` and the tensors that hold a NaN or an infinite value."""
    bad = [(k, int((~torch.isfinite(v)).sum())) for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        shown = ", ".join(f"{k} ({n} value(s))" for k, n in bad[:5]) + more
        raise CheckpointError(where, f"NaN or infinite weights in {len(bad)} tensor(s): {shown}",
                              "the training diverged or the file was damaged: use another checkpoint")


def check_state(state: dict[str, torch.Tensor], model: nn.Module, where: str | Path, name: str) -> None:
    """A CheckpointError naming `where` and the missing, unexpected and mis-shaped keys, unless
    `state` fits `model` (built as `name`) exactly."""
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

        raise CheckpointError(
            where, f"does not match {name} rebuilt from its config: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; shape mismatches: {show(mis_shaped)}",
            "the weights were saved from a different architecture or config; save them again with "
            "rwkvseg.hub.save_pretrained from the model that produced them")


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
    weights, cfg_file = path / WEIGHTS_NAME, path / CONFIG_NAME
    if not weights.exists():
        found = sorted(p.name for p in path.iterdir())
        raise CheckpointNotFoundError(weights, f"no {WEIGHTS_NAME} in the checkpoint directory (found: {found})")
    data = read_checked(weights, "weights file")
    digest = record.get("weights_sha256")
    if digest is None and path.resolve().parent == SHIPPED:
        raise CheckpointError(cfg_file, "a shipped network without weights_sha256: its weights cannot be verified")
    if digest is not None and (actual := hashlib.sha256(data).hexdigest()) != digest:
        raise CheckpointError(weights, f"sha256 {actual[:16]}... does not match "
                              f"weights_sha256 {str(digest)[:16]}... in {CONFIG_NAME}: the file is corrupt or was "
                              "changed", "download or export it again")
    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(weights, f"not a readable safetensors file ({e})",
                              "the file is truncated or damaged: download or export it again") from None
    try:
        model = create_model(record["model_name"], **{k: _as_tuples(v) for k, v in record["config"].items()})
    except (TypeError, ValueError, KeyError, AssertionError) as e:
        raise CheckpointError(cfg_file, f"its config does not build {record['model_name']} ({e})",
                              "export the checkpoint again with rwkvseg.hub.save_pretrained") from None
    check_state(state, model, weights, record["model_name"])
    check_finite(state, weights)
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.model_name = record["model_name"]
    model.pretrained_record = record
    return model.to(map_location).eval()
