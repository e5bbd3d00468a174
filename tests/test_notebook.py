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
