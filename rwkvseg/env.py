"""Where code runs: the device, the versions, the git commit, and the provenance every record carries."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from rwkvseg.version import __version__


def default_device() -> torch.device:
    """The device the package uses when none is given: the first CUDA GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters sit on."""
    return next(model.parameters()).device


def device_name(device: torch.device | str | None = None) -> str:
    """'NVIDIA H100 80GB HBM3' for a GPU, 'cpu (N cores)' otherwise."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def git_commit(default: str = "unknown") -> str:
    """The HEAD commit of the checkout this package runs from; RWKVSEG_COMMIT when set (a copy
    without .git); `default` for an installed wheel or where git is missing."""
    if os.environ.get("RWKVSEG_COMMIT"):
        return os.environ["RWKVSEG_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or default
    except (OSError, subprocess.SubprocessError):
        return default


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def triton_status() -> str:
    """How the WKV kernels run here: on the GPU, under the CPU interpreter, or through torch."""
    version = triton_version()
    if version is None:
        return "not installed: the torch path runs (same results, slower)"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return f"triton {version} (CPU interpreter)"
    if torch.cuda.is_available():
        return f"triton {version} (GPU kernels)"
    return f"triton {version} installed, no GPU: the torch path runs"


def versions() -> dict:
    """python, torch, cuda, triton, numpy and rwkvseg versions."""
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": triton_version(), "numpy": np.__version__, "rwkvseg": __version__}


def provenance(*, mode: str, seed: int = 0, device: torch.device | str | None = None,
               command: str | None = None, **extra) -> dict:
    """What every committed record carries: command, commit, date, device, versions, mode and seed,
    then `extra` (e.g. the split, the run's wall time)."""
    return {
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        **versions(),
        "mode": mode, "seed": seed, **extra,
    }
