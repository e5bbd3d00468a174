"""Checkpoints: what a run needs to continue bit for bit, stored without pickled code.

    save_checkpoint(out / "last.pt", model=..., optimizer=..., rng=rng_state(), ...)
    ckpt = load_checkpoint(out / "last.pt", map_location="cpu")     # torch.load(weights_only=True)

Everything in a checkpoint is a tensor, a number, a string, a list or a dict (the RNG states
included), so it loads with `weights_only=True`: a crafted file cannot run code. It is read by
rwkvseg.data.files (a regular file, within a time bound), and every problem is a CheckpointError
naming the file: empty, truncated, not a torch.save archive, holding objects, lacking the model
or its config, holding NaN or infinite weights (the tensor named), or, for load_model, tensors
that do not fit the network its config builds. Writes are atomic (a temporary file, then a
rename): a kill during the write leaves the previous file whole. The selected weights of a
finished run are exported as a self-describing directory by `export_model`
(rwkvseg.hub.save_pretrained).
"""
from __future__ import annotations

import io
import os
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rwkvseg.env import default_device
from rwkvseg.hub import (CheckpointError, CheckpointNotFoundError, check_finite, check_state, checkpoint_dir,
                         from_pretrained, read_checked, save_pretrained)
from rwkvseg.models import create_model

__all__ = ["CheckpointError", "CheckpointNotFoundError", "RESUME_KEYS", "rng_state", "set_rng_state", "save_checkpoint",
           "load_checkpoint", "load_weights", "export_model", "load_model"]
ZIP_MAGIC = b"PK\x03\x04"            # torch.save writes a zip archive
RESUME_KEYS = ("model", "optimizer", "epoch", "step", "history", "best", "rng", "config")   # what last.pt holds


def rng_state() -> dict:
    """The python, numpy, torch (and CUDA) random states, as tensors and numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore rng_state()'s states (torch takes them only as CPU byte tensors, hence .cpu())."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: Path, **payload) -> None:
    """Write `payload` to `path` atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                    needs: tuple[str, ...] = ("model", "config")) -> dict:
    """A checkpoint that save_checkpoint wrote, loaded without unpickling code (weights_only=True);
    a CheckpointError naming the file when it is missing, not a regular file, empty, truncated, not
    a checkpoint, holds objects, lacks one of `needs`, or holds NaN / infinite model weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(path, "no such checkpoint file", "pass out_dir/best.pt or out_dir/last.pt of a "
                                      "training run, or its exported out_dir/model")
    data = read_checked(path, "checkpoint")
    if not data.startswith(ZIP_MAGIC):
        raise CheckpointError(path, f"not a checkpoint: torch.save writes a zip archive, this file begins with "
                              f"{data[:16]!r}", "pass out_dir/best.pt or out_dir/last.pt of a training run")
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.findall(r"GLOBAL ([\w.]+)", str(err))
        raise CheckpointError(path, "refused: it holds objects that need code to load"
                              + (f" ({', '.join(dict.fromkeys(code))})" if code else ""),
                              "only checkpoints written by rwkvseg's engine (tensors, numbers, strings) are loaded") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        first = str(err).split(". ")[0].strip()
        raise CheckpointError(path, f"not a readable checkpoint: truncated or damaged ({first})",
                              "use another checkpoint (last.pt is replaced whole on every save)") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"not an rwkvseg training checkpoint: it holds a {type(ckpt).__name__}",
                              f"a training checkpoint holds {list(needs)}")
    model, config = ckpt.get("model"), ckpt.get("config")
    if model is not None and (not isinstance(model, dict) or
                              not all(isinstance(v, torch.Tensor) for v in model.values())):
        raise CheckpointError(path, "its 'model' is not a state dict of tensors")
    if config is not None and not isinstance(config, dict):
        raise CheckpointError(path, f"its 'config' is a {type(config).__name__}, expected a mapping")
    if model is not None:
        check_finite(model, path)
    missing = [k for k in needs if k not in ckpt]
    if missing:
        raise CheckpointError(path, f"not an rwkvseg training checkpoint: it lacks {missing} (found {sorted(ckpt)[:8]})",
                              f"a training checkpoint holds {list(needs)}")
    return ckpt


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """model.load_state_dict(state, strict=True), with a CheckpointError naming `path` and the
    missing, unexpected and mis-shaped keys when the state does not fit the model."""
    check_state(state, model, path, type(model).__name__)
    model.load_state_dict(state, strict=True)


def export_model(model: nn.Module, path: Path, *, model_name: str, input_size: list[int], normalization: dict,
                 classes: list[str], train_config: dict, split_info: dict, metrics: dict, selection: dict,
                 provenance: dict) -> Path:
    """The selected weights as a self-describing directory (rwkvseg.hub.save_pretrained): what a
    user loads with rwkvseg.from_pretrained, beside the resumable last.pt / best.pt."""
    return save_pretrained(
        model, path, model_name=model_name, input_size=input_size, normalization=normalization,
        training_data={"dataset": train_config["dataset"], "split": split_info.get("name"),
                       "train_sha256": split_info.get("train_hash"), "test_sha256": split_info.get("test_hash"),
                       "cache_sha256": split_info.get("cache_sha256")},
        metrics=metrics, classes=classes, selection=selection,
        provenance={k: provenance[k] for k in ("command", "git_commit", "device", "date", "torch", "rwkvseg")},
        train_config=train_config,
    )


def load_model(checkpoint: str | Path, *, device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """(model in eval mode, its training config as a dict) from a training checkpoint (best.pt /
    last.pt), an exported directory out_dir/model (rwkvseg.hub.save_pretrained), or the name of a
    shipped network (rwkvseg.list_pretrained())."""
    device = torch.device(device) if device is not None else default_device()
    path = checkpoint_dir(checkpoint)
    if path.is_dir():
        model = from_pretrained(path, map_location=device)
        cfg = model.pretrained_record.get("extra", {}).get("train_config")
        if cfg is None:
            raise CheckpointError(path, "holds no training config (extra.train_config): it was not exported by "
                                  "`rwkvseg train`", "evaluate it with rwkvseg.engine.evaluate_split instead")
        return model, cfg
    ckpt = load_checkpoint(path, map_location=device, needs=("model", "config", "in_chans", "num_classes"))
    cfg = ckpt["config"]
    try:
        model = create_model(cfg["model"], in_chans=ckpt["in_chans"], num_classes=ckpt["num_classes"],
                             **cfg.get("model_kwargs", {}))
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise CheckpointError(path, f"its config does not build a network ({type(e).__name__}: {e})",
                              "was it written by another version of rwkvseg?") from None
    load_weights(model, {k.replace("_orig_mod.", "").replace("module.", ""): v for k, v in ckpt["model"].items()},
                 path)
    return model.to(device).eval(), cfg
