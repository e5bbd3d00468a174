"""Checkpoints: what a run needs to continue bit for bit, stored without pickled code.

    save_checkpoint(out / "last.pt", model=..., optimizer=..., rng=rng_state(), ...)
    ckpt = load_checkpoint(out / "last.pt", map_location="cpu")     # torch.load(weights_only=True)

Everything in a checkpoint is a tensor, a number, a string, a list or a dict (the RNG states
included), so it loads with `weights_only=True`: a crafted file cannot run code. Writes are atomic
(a temporary file, then a rename): a kill during the write leaves the previous file whole. The
selected weights of a finished run are exported as a self-describing directory by `export_model`
(rwkvseg.hub.save_pretrained).
"""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rwkvseg.env import default_device
from rwkvseg.hub import checkpoint_dir, from_pretrained, save_pretrained
from rwkvseg.models import create_model


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or is not what the engine wrote."""

    def __init__(self, path: str | Path, problem: str, hint: str = ""):
        self.path = str(path)
        super().__init__(f"{path}: {problem}" + (f". {hint}" if hint else ""))


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


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint that save_checkpoint wrote, loaded without unpickling code (weights_only=True);
    an error naming the file when it is missing, truncated, not a checkpoint, or holds objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file",
                              "pass out_dir/best.pt or out_dir/last.pt of a training run, or its exported out_dir/model")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, f"refused: it holds objects that need code to load ({str(err).splitlines()[0]})",
                              "only checkpoints written by rwkvseg's engine (tensors, numbers, strings) are loaded") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(path, f"not a readable checkpoint (truncated or another format: {err})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(path, f"not an rwkvseg training checkpoint (found {found})",
                              "a training checkpoint holds 'model' and 'config'")
    return ckpt


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
    ckpt = load_checkpoint(path, map_location=device)
    cfg = ckpt["config"]
    model = create_model(cfg["model"], in_chans=ckpt["in_chans"], num_classes=ckpt["num_classes"],
                         **cfg.get("model_kwargs", {}))
    state = {k.replace("_orig_mod.", "").replace("module.", ""): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg
