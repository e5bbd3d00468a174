"""The configuration of a training run: one dataclass, checked when it is built.

    cfg = TrainConfig.from_yaml("isic2018_rwkv_unet_t", epochs=10)   # a shipped recipe + overrides
    cfg = TrainConfig(model="rwkv_unet_t", dataset="isic2018", epochs=200)

The recipes ship inside the package (rwkvseg/configs/*.yaml); `from_yaml` takes a file path or the
name of a shipped recipe (`configs/isic2018_rwkv_unet_t.yaml` finds the shipped file from any
folder). The book's parameters, the YAML files and the command line all fill this one dataclass;
every field is checked at the door, with a message naming the field and what it accepts.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from rwkvseg.data.files import read_text
from rwkvseg.data.sets import DATASETS, DatasetInfo, dataset_info
from rwkvseg.losses import LossConfig
from rwkvseg.models import list_models

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the ISIC 2018 binary recipe.

    [paper] RWKV-UNet Sec. 4.1 (binary: 300 epochs, batch 8, AdamW 1e-4 -> 1e-5 cosine, 0.5 BCE +
    1.0 Dice; ACDC: 150 epochs, batch 24, 5e-4 -> 0, 0.3 CE + 0.7 Dice), [code] the authors'
    scripts, [choose] ours; the recipes in rwkvseg/configs/ say which is which.
    """

    # what to train
    model: str = "rwkv_unet_t"               # any name of rwkvseg.models.list_models()
    model_kwargs: dict = field(default_factory=dict)  # config overrides for create_model
    dataset: str = "isic2018"                # "isic2018" | "isic2018_samples" | "acdc" | "synthetic_acdc"
    data_dir: str | None = None              # data root, its isic2018/ or acdc/ folder, or a folder with the
                                             # cache file; None: $RWKVSEG_DATA or ~/rwkvseg-data
    split: str = "default"                   # committed split (rwkvseg/splits): ISIC "7-3_seed0" (default) |
                                             # "8-1-1_seedN"; ACDC "ssl4mis" (default) | "authors"
    img_size: int = 256                      # [paper] binary 256, ACDC 224
    augment: bool = True                     # the papers' flips / rotations on the device
    max_train_images: int | None = None      # use only the first N training items (quick runs)
    max_eval_items: int | None = None        # evaluate only N images / volumes (quick runs)

    # optimisation
    epochs: int = 300                        # [paper] binary 300, ACDC 150 (the recipes shorten them)
    iterations: int | None = None            # total optimizer steps; overrides epochs when set
    batch_size: int = 8                      # GLOBAL batch (all processes together) [paper] binary 8, ACDC 24
    lr: float = 1e-4                         # [paper] binary 1e-4, ACDC 5e-4
    min_lr: float = 1e-5                     # [paper] binary 1e-5, ACDC 0
    weight_decay: float = 1e-4               # [code] ACDC 1e-4; binary not stated [choose] 1e-4
    betas: tuple[float, float] = (0.9, 0.999)  # [choose] AdamW defaults (the code uses them)
    warmup_iters: int = 0                    # [choose] linear warm-up from 0; the papers use none
    schedule: str = "cosine"                 # "cosine" (over all iterations) | "poly" (0.9) | "constant"
    grad_clip: float = 0.0                   # 0 = off [code: none]

    # loss
    loss: str = "auto"                       # "auto": bce_dice for binary data, ce_dice for ACDC
    ce_weight: float = 0.5                   # [paper] binary 0.5 (BCE), ACDC 0.3 (CE)
    dice_weight: float = 1.0                 # [paper] binary 1.0, ACDC 0.7
    dice_style: str = "ukan"                 # binary: "ukan" (smoothing 1e-5) | "vmunet" (smoothing 1)

    # model selection and evaluation
    selection: str = "val"                   # "val": best validation score (10 % of ISIC's training part,
                                             # ACDC's val patients) | "last": last epoch, trained on all of train
    eval_every: int = 1                      # validate every N epochs (and after the last)
    tta: bool = True                         # also report the test metrics with the flip TTA

    # system
    device: str | None = None                # None: cuda:LOCAL_RANK if available, else cpu
    bf16: bool = True                        # bf16 autocast (CUDA only; ignored on the CPU)
    channels_last: bool = True               # memory format of the convolutional parts (CUDA only)
    compile: bool = False                    # torch.compile the model (CUDA only; ignored on the CPU)
    cuda_graph: bool = False                 # replay each training step from one CUDA graph (CUDA, one
                                             # process; ignored on the CPU): the step's launches become one
    sync_bn: bool = True                     # synchronise BatchNorm statistics across processes
    seed: int = 0
    deterministic: bool = False              # deterministic algorithms where the backend has them
    out_dir: str = "runs/isic2018_rwkv_unet_t"
    resume: bool = False                     # continue from out_dir/last.pt if it exists
    resume_changed_config: bool = False      # resume even where the config differs from the checkpoint's
    max_steps: int | None = None             # stop after this many steps (quick runs, tests)
    log_every: int = 0                       # also print every N steps (0: once per epoch)
    progress: str = "auto"                   # "auto" | "tqdm" | "line" | "none"
    save_checkpoints: bool = True
    mode: str = "full"                       # "quick": without data, the shipped samples stand in | "full"
    command: str | None = None               # recorded; None: the process's argv

    def __post_init__(self):
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), _HINTS[f.name])
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed():
                raise ValueError(f"TrainConfig.{name} must be one of {tuple(allowed())}, got {getattr(self, name)!r}")
        for name, (ok, accepted) in _RANGES.items():
            value = getattr(self, name)
            if value is not None and not ok(value):
                raise ValueError(f"TrainConfig.{name} must be {accepted}, got {value!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ValueError("TrainConfig.device must be None or a torch device such as 'cpu', 'cuda', "
                                 f"'cuda:1', got {self.device!r}") from None
        if self.ce_weight == 0 and self.dice_weight == 0:
            raise ValueError("TrainConfig.ce_weight and dice_weight are both 0: the loss would be 0")

    @property
    def info(self) -> DatasetInfo:
        """What the data set is (rwkvseg.data.DATASETS)."""
        return dataset_info(self.dataset)

    def loss_config(self) -> LossConfig:
        kind = self.loss if self.loss != "auto" else ("bce_dice" if self.info.binary else "ce_dice")
        return LossConfig(kind=kind, ce_weight=self.ce_weight, dice_weight=self.dice_weight,
                          dice_style=self.dice_style)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from plain values (YAML, JSON, the command line): each converted to its field's
        type (`"10"` -> 10, `"false"` -> False, `[0.9, 0.99]` -> a tuple); unknown fields are refused."""
        unknown = sorted(set(values) - set(_HINTS))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {', '.join(_HINTS)}")
        return cls(**{k: coerce(k, v) for k, v in values.items()})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """The recipe in `path` (a YAML file, or the name of a shipped recipe), then `overrides`."""
        file = config_path(path)
        try:
            values = yaml.safe_load(read_text(file, "recipe")) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{file}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{file}: a recipe is a YAML mapping of TrainConfig fields, got {type(values).__name__}")
        try:
            return cls.from_dict({**values, **overrides})
        except ValueError as err:
            raise ValueError(f"{file}: {err}") from None


def shipped_configs() -> list[str]:
    """The names of the recipes that ship with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(path: str | Path) -> Path:
    """`path` when it is a file; else the shipped recipe of that name (with or without `configs/`
    and `.yaml`); a FileNotFoundError naming the shipped recipes otherwise."""
    p = Path(path).expanduser()
    if p.exists():                                       # a file, or what read_text refuses by name
        return p
    shipped = CONFIG_DIR / f"{p.stem}.yaml"
    if p.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config {path}: no such file and no shipped recipe of that name; "
                            f"shipped: {', '.join(shipped_configs())}")


# --------------------------------------------------------------------------------------------
# Checks: types, names, ranges
# --------------------------------------------------------------------------------------------

_HINTS = typing.get_type_hints(TrainConfig)
_CHOICES = {
    "model": list_models,
    "dataset": lambda: DATASETS,
    "selection": lambda: ("val", "last"),
    "schedule": lambda: ("cosine", "poly", "constant"),
    "loss": lambda: ("auto", "bce_dice", "ce_dice"),
    "dice_style": lambda: ("ukan", "vmunet"),
    "progress": lambda: ("auto", "tqdm", "line", "none"),
    "mode": lambda: ("quick", "full"),
}
_RANGES = {
    "img_size": (lambda v: v >= 32 and v % 32 == 0, "a multiple of 32, at least 32"),
    "max_train_images": (lambda v: v >= 1, "None (all) or at least 1"),
    "max_eval_items": (lambda v: v >= 1, "None (all) or at least 1"),
    "epochs": (lambda v: v >= 1, "at least 1"),
    "iterations": (lambda v: v >= 1, "None (use epochs) or at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "lr": (lambda v: 0 < v < 1, "in (0, 1)"),
    "min_lr": (lambda v: v >= 0, "at least 0"),
    "weight_decay": (lambda v: v >= 0, "at least 0"),
    "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "warmup_iters": (lambda v: v >= 0, "at least 0"),
    "grad_clip": (lambda v: v >= 0, "0 (off) or a positive norm"),
    "ce_weight": (lambda v: v >= 0, "at least 0"),
    "dice_weight": (lambda v: v >= 0, "at least 0"),
    "eval_every": (lambda v: v >= 1, "at least 1"),
    "seed": (lambda v: v >= 0, "at least 0"),
    "max_steps": (lambda v: v >= 1, "None (no limit) or at least 1"),
    "log_every": (lambda v: v >= 0, "0 (off) or at least 1"),
}


def _check_type(name: str, value, hint) -> None:
    """Refuse a value of the wrong type (a bool is not an int; an int is a float)."""
    args = typing.get_args(hint)
    options = [a for a in args if a is not type(None)] if args and typing.get_origin(hint) is not tuple else [hint]
    if value is None:
        if type(None) in args:
            return
        raise ValueError(f"TrainConfig.{name} cannot be None")
    for option in options:
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if base in (bool, str, dict, tuple) and isinstance(value, base):
            return
    raise ValueError(f"TrainConfig.{name} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def coerce(name: str, value):
    """A plain value (a string from the command line, a YAML scalar or list) as field `name`'s type."""
    if name not in _HINTS:
        raise ValueError(f"unknown TrainConfig field {name!r}; known: {', '.join(_HINTS)}")
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        return None
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    base = typing.get_origin(base) or base
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            return value
        if base is tuple:
            return tuple(float(v) for v in value)
        if base is int and isinstance(value, (str, float)) and not isinstance(value, bool):
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if base is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value
    except (TypeError, ValueError):
        raise ValueError(f"TrainConfig.{name}: cannot read {value!r} as {_type_name(hint)}") from None
