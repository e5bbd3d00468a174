"""The notebook kit (rwkvseg.book) and the committed records it reads, where they must work without the
book's toolchain."""
import builtins
import sys

import pytest

from rwkvseg import book
from rwkvseg.report import committed_runs, latest_run_per_model


@pytest.fixture
def no_myst_nb(monkeypatch):
    """Make `import myst_nb` fail, as on the GPU machine that runs chapters through papermill."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "myst_nb" or name.startswith("myst_nb."):
            raise ImportError("no myst_nb here")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "myst_nb", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_glue_without_myst_nb_is_silent_unless_displayed(no_myst_nb, monkeypatch):
    shown = []
    monkeypatch.setattr(book, "display", lambda *objs, **kw: shown.extend(objs))
    book.glue("hidden", 1.5, show=False)
    assert shown == []
    book.glue("shown", 2.5)
    assert shown == [2.5]


def test_glue_uses_myst_nb_when_installed(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    book.glue("x", 3, show=False)
    assert calls == [("x", 3, False)]


def test_show_figure_displays_a_png_without_pyplot(monkeypatch):
    from matplotlib.figure import Figure

    shown = []
    monkeypatch.setattr(book, "display", lambda *objs, **kw: shown.extend(objs))
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1])
    book.show_figure(fig)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_chapter_command_names_the_parameters_that_are_set():
    line = book.chapter_command("book/09_train_acdc.ipynb", MODE="quick", EPOCHS=None, SEED=0)
    assert line == "book/09_train_acdc.ipynb with MODE='quick', SEED=0"


def test_committed_runs_are_record_folders_shipped_in_the_package():
    """Every committed training record is a folder <name>/ with results.json, metrics.csv and curves.png
    (rwkvseg.report.record's format), found inside the installed package."""
    runs = dict(committed_runs("train_isic2018"))
    assert {"rwkv_unet_t_40ep", "notebook_rwkv_unet_t_35ep", "unet_40ep"} <= set(runs)
    latest = latest_run_per_model(list(runs.items()))
    assert set(latest) >= {"rwkv_unet_t", "unet", "ms_rwkv_unet"}
    assert latest["rwkv_unet_t"][0] == "rwkv_unet_t_40ep_tile_rule"             # the most recent of four
    assert committed_runs("no_such_chapter") == []
    from rwkvseg.report.results import results_path
    for folder in ("train_isic2018", "train_acdc"):
        for name, _ in committed_runs(folder):
            files = {p.name for p in results_path(folder, name).iterdir()}
            assert {"results.json", "metrics.csv", "curves.png"} <= files <= {
                "results.json", "metrics.csv", "curves.png", "cases.json", "cases.png"}, (folder, name, files)


def test_widgets_only_where_a_person_drives_the_notebook(monkeypatch):
    """Non-interactive runners (nbclient, papermill, nbval) execute with allow_stdin false: one static
    figure, no widget; outside any kernel likewise."""
    assert book.live_kernel() is False                  # no IPython kernel under pytest
    shown = []
    monkeypatch.setattr(book, "display", lambda *objs, **kw: shown.extend(objs))
    from matplotlib.figure import Figure

    def plot(w=1.0):
        fig = Figure(figsize=(1, 1))
        fig.subplots().plot([0, w])
        return fig

    import ipywidgets
    assert book.static_then_widget(plot, w=ipywidgets.FloatSlider(value=2.0)) is None
    assert len(shown) == 1
