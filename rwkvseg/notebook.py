"""Helpers the book's chapters call: mode resolution, environment report, source display.

They live in the package so every chapter does these things one way; the package never
imports the book.
"""
from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

MODES = ("auto", "quick", "full")


def in_book_build() -> bool:
    """True while the book is built or tested (no live frontend: print compact lines)."""
    return bool(os.environ.get("RWKVSEG_BOOK_BUILD"))


def resolve_mode(mode: str = "auto") -> str:
    """Resolve a chapter's MODE parameter.

    "auto" becomes "quick" without a CUDA device or when RWKVSEG_MODE=quick is set,
    "full" otherwise. An explicit "quick" or "full" is kept (full on a CPU is allowed, only slow).
    """
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {MODES}, got {mode!r}")
    env = os.environ.get("RWKVSEG_MODE")
    if env is not None and env not in ("quick", "full"):
        raise ValueError(f"RWKVSEG_MODE must be 'quick' or 'full', got {env!r}")
    if mode == "auto":
        mode = env or ("full" if torch.cuda.is_available() else "quick")
    return mode


def default_device() -> torch.device:
    """The device the package uses when none is given: the first CUDA GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def git_commit(default: str = "unknown") -> str:
    """The repository's HEAD commit; RWKVSEG_COMMIT when set (copies without .git, such as a
    remote GPU's scratch tree); `default` otherwise."""
    if os.environ.get("RWKVSEG_COMMIT"):
        return os.environ["RWKVSEG_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or default
    except (OSError, subprocess.SubprocessError):
        return default


def triton_status() -> str:
    """'triton X.Y (GPU kernels)', 'triton X.Y (interpreter)', or why the torch path runs."""
    try:
        import triton
    except ImportError:
        return "not installed: the torch path runs (same results, slower)"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return f"triton {triton.__version__} (CPU interpreter)"
    if torch.cuda.is_available():
        return f"triton {triton.__version__} (GPU kernels)"
    return f"triton {triton.__version__} installed, no GPU: the torch path runs"


def env_report(mode: str | None = None) -> dict:
    """Print and return versions, commit, device, Triton status and mode (one line each)."""
    import rwkvseg

    dev = default_device()
    info = {
        "rwkvseg": rwkvseg.__version__,
        "commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "triton": triton_status(),
    }
    if mode is not None:
        info["mode"] = mode
    for key, value in info.items():
        print(f"{key:>8}: {value}")
    if dev.type == "cpu" and "google.colab" in sys.modules:
        print("    hint: for full mode use Runtime -> Change runtime type -> GPU")
    return info


def show_source(obj) -> None:
    """Display the real source of a package function or class (never a retyped copy)."""
    src = textwrap.dedent(inspect.getsource(getattr(obj, "fn", obj)))  # a Triton JITFunction keeps its function in .fn
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```python\n{src}\n```"))
    except ImportError:
        print(src)


def glue(name: str, value, display: bool = True) -> None:
    """myst_nb.glue where myst_nb is installed (the book build renders `{glue:}` roles from it);
    elsewhere (a GPU machine running a chapter through papermill, a bare Colab runtime) only
    displays `value` when `display` is true, so a chapter never needs the book's toolchain to run."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def show_figure(fig, *, dpi: int = 80) -> None:
    """Display a matplotlib Figure as a PNG whatever the backend: a Figure made without pyplot (the
    package's plotting functions) has no inline display of its own until pyplot has drawn once."""
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    display(Image(data=buf.getvalue()))


def live_training_curves():
    """An on_epoch_end callback for rwkvseg.train.train: redraw the training curves
    (rwkvseg.record.curves_figure) after each epoch; a static page keeps the last frame."""
    from IPython.display import clear_output

    from rwkvseg.record import curves_figure

    def on_epoch_end(rec, history):
        clear_output(wait=True)
        show_figure(curves_figure(history, title=f"epoch {rec['epoch'] + 1}"))
    return on_epoch_end


def live_kernel() -> bool:
    """True in an interactive Jupyter kernel (widgets can be attached), False while building."""
    if in_book_build():
        return False
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and "IPKernelApp" in ip.config
    except ImportError:
        return False


def static_then_widget(plot_fn, **sliders):
    """Draw `plot_fn(**defaults)` as a static figure, then attach sliders when a kernel is live.

    `sliders` maps a keyword of plot_fn to an ipywidgets widget whose value is the default.
    The static figure keeps the rendered page meaningful without a kernel.
    """
    import matplotlib.pyplot as plt
    from IPython.display import display

    defaults = {name: w.value for name, w in sliders.items()}
    fig = plot_fn(**defaults)
    display(fig)
    plt.close(fig)
    if not live_kernel():
        return None
    import ipywidgets

    def redraw(**kw):
        f = plot_fn(**kw)
        display(f)
        plt.close(f)

    return ipywidgets.interactive(redraw, **sliders)


def results_path(*parts: str) -> Path:
    """A path under the committed records that ship inside the package (rwkvseg/results/): the
    benchmark and training records the chapters render, found the same way in a clone and in an
    installed wheel."""
    return Path(__file__).resolve().parent.joinpath("results", *parts)


def committed_runs(folder: str) -> list[tuple[str, dict]]:
    """The committed full-mode training records of a chapter (results/<folder>/), as (name, record)
    pairs sorted by name: the engine's JSON files (results/<folder>/<name>.json) and the record
    folders that rwkvseg.record writes (results/<folder>/<name>/results.json). Files without a
    full-mode provenance (histories, quick runs) are left out."""
    root = results_path(folder)
    if not root.is_dir():
        return []
    runs = [(p.name, p) for p in root.glob("*.json")] + [(p.parent.name, p) for p in root.glob("*/results.json")]
    out = []
    for name, path in sorted(runs):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("provenance", {}).get("mode") == "full":
            out.append((name, record))
    return out


def latest_run_per_model(runs: list[tuple[str, dict]]) -> dict[str, tuple[str, dict]]:
    """model name -> its most recent record (by provenance date) among `runs`."""
    latest: dict[str, tuple[str, dict]] = {}
    for name, record in runs:
        model = record["model"]
        if model not in latest or record["provenance"]["date"] > latest[model][1]["provenance"]["date"]:
            latest[model] = (name, record)
    return latest


def chapter_command(notebook: str, **parameters) -> str:
    """What a chapter's record names as its command when it was not given one (papermill runs get the
    exact line from scripts/gpu_chapter.sh): the notebook and the parameters that are set."""
    return f"{notebook} with " + ", ".join(f"{k}={v!r}" for k, v in parameters.items() if v is not None)


def provenance(*, mode: str, seed: int = 0, device: torch.device | None = None, **extra) -> dict:
    """What every committed result records: command, commit, date, device and versions (book.md §4)."""
    import datetime

    import rwkvseg

    device = device or default_device()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__, "triton": triton_version, "rwkvseg": rwkvseg.__version__,
        "mode": mode, "seed": seed, **extra,
    }
