"""The notebook kit: what the book's chapters call to do common things one way.

    MODE = resolve_mode(MODE)        # "auto" -> "full" on a GPU, "quick" elsewhere
    env_report(MODE)                 # versions, commit, device, Triton status
    show_source(rwkvseg.wkv.bi_wkv)  # the package's real source on the page, never a retyped copy
    static_then_widget(plot, w=FloatSlider(...))   # one figure on the page; sliders in a live notebook

Nothing else in the package imports this module.
"""
from __future__ import annotations

import html
import inspect
import io
import json
import os
import platform
import sys
import textwrap

try:                                  # the [book] extra: pip install "rwkvseg[book]"
    import ipywidgets
    from IPython import get_ipython
    from IPython.display import HTML, Image, Markdown, display
except ImportError as err:
    raise ImportError(f"rwkvseg.book needs the book's extra packages ({err.name} is missing): "
                      'pip install "rwkvseg[book]"') from err
import matplotlib.pyplot as plt
import torch

from rwkvseg.env import default_device, device_name, git_commit, triton_status
from rwkvseg.report.cases import case_rows
from rwkvseg.report.record import curves_figure
from rwkvseg.report.results import results_path
from rwkvseg.version import __version__

MODES = ("auto", "quick", "full")


def resolve_mode(mode: str = "auto") -> str:
    """A chapter's MODE parameter: "auto" becomes "quick" without a CUDA device or when
    RWKVSEG_MODE=quick is set, "full" otherwise. An explicit "quick" or "full" is kept."""
    if mode not in MODES:
        raise ValueError(f"MODE must be one of {MODES}, got {mode!r}")
    env = os.environ.get("RWKVSEG_MODE")
    if env is not None and env not in ("quick", "full"):
        raise ValueError(f"RWKVSEG_MODE must be 'quick' or 'full', got {env!r}")
    if mode == "auto":
        mode = env or ("full" if default_device().type == "cuda" else "quick")
    return mode


def env_report(mode: str | None = None) -> dict:
    """Print and return the versions, commit, device, Triton status and mode (one line each)."""
    info = {"rwkvseg": __version__, "commit": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "device": device_name(), "triton": triton_status()}
    if mode is not None:
        info["mode"] = mode
    for key, value in info.items():
        print(f"{key:>8}: {value}")
    if default_device().type == "cpu" and "google.colab" in sys.modules:
        print("    hint: for full mode use Runtime -> Change runtime type -> GPU")
    return info


def live_kernel() -> bool:
    """True when a person drives this notebook (Jupyter, Colab, VS Code): widgets can be used.

    Non-interactive runners (jupyter-book, nbval, papermill, nbconvert) execute every cell with
    `allow_stdin` false, since nobody could answer input(); an interactive frontend sends true."""
    ip = get_ipython()
    kernel = getattr(ip, "kernel", None)
    if kernel is None:
        return False
    parent = kernel.get_parent() if hasattr(kernel, "get_parent") else getattr(kernel, "_parent_header", {})
    return bool((parent or {}).get("content", {}).get("allow_stdin", False))


def static_then_widget(plot_fn, **sliders):
    """`plot_fn(**values)` with sliders in a live notebook, as one static figure elsewhere.

    `sliders` maps keywords of plot_fn to ipywidgets widgets whose values are the defaults. In a
    built page the figure is drawn once at those defaults; in a live notebook the widget draws it
    (and redraws on every change)."""
    if live_kernel():
        def redraw(**kw):
            show_figure(plot_fn(**kw))

        return ipywidgets.interactive(redraw, **sliders)
    show_figure(plot_fn(**{name: w.value for name, w in sliders.items()}))
    return None


def figure_png(fig, *, dpi: int = 80) -> Image:
    """A matplotlib Figure as a PNG image for display (whatever the backend); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue())


def show_figure(fig, *, dpi: int = 80) -> None:
    """Display a matplotlib Figure once, as a PNG, and close it."""
    display(figure_png(fig, dpi=dpi))


def show_source(obj) -> None:
    """Display the real source of a package function or class (never a retyped copy)."""
    src = textwrap.dedent(inspect.getsource(getattr(obj, "fn", obj)))  # a Triton JITFunction keeps it in .fn
    display(Markdown(f"```python\n{src}\n```"))


def show_table(rows: list[dict], *, columns: list[str] | None = None, floatfmt: str = "{:.4g}") -> None:
    """Display a list of dicts as an HTML table (a table in the built book, not text; class "table", as the
    book's Markdown tables, so the theme pads and rules its cells)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        return html.escape(floatfmt.format(v) if isinstance(v, float) else ("" if v is None else str(v)))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    display(HTML(f"<table class=\"table\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))


def show_config(cfg, *, fields: list[str] | None = None) -> None:
    """A config dataclass as a two-column table (field, value): the fields given, else every field."""
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    show_table([{"field": k, "value": values[k]} for k in (fields or values)])


def glue(name: str, value, show: bool = True) -> None:
    """myst_nb.glue where myst_nb is installed (the book build renders `{glue:}` roles from it);
    elsewhere (papermill on a GPU machine, a bare Colab runtime) only displays `value` when `show`."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:                                  # the book's toolchain is optional
        if show:
            display(value)
        return
    myst_glue(name, value, display=show)


def live_training_curves():
    """An on_epoch_end callback for rwkvseg.engine.train: redraw the training curves after each
    epoch (rwkvseg.report.curves_figure) in place, leaving the run's printed lines above them; a
    built page keeps the last frame."""
    handle = None

    def on_epoch_end(rec, history):
        nonlocal handle
        png = figure_png(curves_figure(history, title=f"epoch {rec['epoch'] + 1}"))
        if handle is None:
            handle = display(png, display_id=True)
        else:
            handle.update(png)
    return on_epoch_end


def chapter_command(notebook: str, **parameters) -> str:
    """What a chapter's record names as its command when it was not given one: the notebook and
    the parameters that are set."""
    return f"{notebook} with " + ", ".join(f"{k}={v!r}" for k, v in parameters.items() if v is not None)


def show_run_curves(network: str, name: str, record: dict) -> None:
    """The training curves of a committed run, redrawn from its history, titled with the network,
    the record's name, and the GPU and date of its provenance."""
    p = record["provenance"]
    title = f"{network}, record {name}: {p['device']}, {p['date'][:10]}"
    show_figure(curves_figure(record["history"], title=title, selected_epoch=record["selection"]["epoch"]))


def _cases_record(folder: str, name: str, network: str) -> dict | None:
    """A committed run's cases.json, or None (and a line saying so) when the record has none."""
    path = results_path(folder, name, "cases.json")
    if not path.is_file():
        print(f"the record {name} ({network}) has no case gallery")
        return None
    return json.loads(path.read_text())


def show_run_cases(folder: str, name: str, network: str) -> None:
    """The case gallery a committed run's record drew (cases.png), under a line naming the run and
    the GPU and date of the evaluation; a line saying so when the record has none."""
    record = _cases_record(folder, name, network)
    if record is None:
        return
    p = record["provenance"]
    print(f"{network}, record {name}: cases evaluated on {p['device']}, {p['date'][:10]}")
    display(Image(filename=str(results_path(folder, name, "cases.png"))))


def show_case_table(folder: str, runs: dict[str, tuple[str, dict]], names: dict[str, str]) -> None:
    """One table of the picked cases of `runs` (model -> (record name, record)) whose records have them."""
    rows = []
    for model, (name, _) in runs.items():
        network = names.get(model, model)
        if (record := _cases_record(folder, name, network)) is not None:
            rows += case_rows(record, network=network, run=name)
    show_table(rows, floatfmt="{:.2f}")
