"""The chapters' helpers (rwkvseg.notebook) where they must work without the book's toolchain."""
import builtins
import sys

import pytest

from rwkvseg import notebook


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
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    notebook.glue("hidden", 1.5, display=False)
    assert shown == []
    notebook.glue("shown", 2.5)
    assert shown == [2.5]


def test_glue_uses_myst_nb_when_installed(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    notebook.glue("x", 3, display=False)
    assert calls == [("x", 3, False)]


def test_show_figure_displays_a_png_without_pyplot(monkeypatch):
    from matplotlib.figure import Figure

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1])
    notebook.show_figure(fig)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_chapter_command_names_the_parameters_that_are_set():
    line = notebook.chapter_command("book/09_train_acdc.ipynb", MODE="quick", EPOCHS=None, SEED=0)
    assert line == "book/09_train_acdc.ipynb with MODE='quick', SEED=0"


def test_committed_runs_reads_files_and_record_folders():
    """Both layouts of a committed training record are found: the engine's <name>.json and the
    record folder <name>/results.json that rwkvseg.record writes; histories are not records."""
    from rwkvseg.notebook import committed_runs, latest_run_per_model

    runs = dict(committed_runs("train_isic2018"))
    assert "rwkv_unet_t_40ep.json" in runs and "notebook_rwkv_unet_t_35ep" in runs
    assert not any(name.endswith("_history.json") for name in runs)
    latest = latest_run_per_model(list(runs.items()))
    assert set(latest) >= {"rwkv_unet_t", "unet", "ms_rwkv_unet"}
    assert latest["rwkv_unet_t"][0] == "notebook_rwkv_unet_t_35ep"      # the most recent of the two
    assert committed_runs("no_such_chapter") == []
