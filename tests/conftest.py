"""Test setup shared by every test file.

Without a GPU, Triton kernels run under the CPU interpreter; the variable must be set before any
kernel is decorated, so it is set here, before the tests import anything from rwkvseg.kernels.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rwkvseg.data.paths import dataset_dir, has_dataset  # noqa: E402  (after TRITON_INTERPRET)


def _triton_language_modules():
    try:
        import triton.language as tl
    except ImportError:
        return []
    return [tl, tl.core, tl.math]


@pytest.fixture(scope="session")
def _triton_language_snapshot():
    return [(module, dict(vars(module))) for module in _triton_language_modules()]


@pytest.fixture(autouse=True)
def _triton_language_restored(_triton_language_snapshot):
    """Put triton.language back as it was after each test. When an interpreted kernel calls a helper of
    Triton's standard library (tl.cumsum, tl.max, ...), the interpreter (Triton 3.7) rewraps the builtins
    of triton.language.core with its own semantics and never unwraps them; a later compile in the same
    process (tests/test_wkv_gluon.py builds the Gluon kernel for sm_90) then fails inside the interpreter's
    builder: that test would pass alone and fail after any test that ran a Triton kernel."""
    yield
    for module, original in _triton_language_snapshot:
        current = vars(module)
        for name in [name for name in current if name not in original]:
            delattr(module, name)
        for name, value in original.items():
            if current.get(name) is not value:
                setattr(module, name, value)


DATA_FIXTURES = {"isic_dir": "isic2018", "acdc_dir": "acdc"}


def _data_folder(name: str):
    """The real data set's folder, from RWKVSEG_DATA (or ~/rwkvseg-data); skip where it is absent."""
    if not has_dataset(name):
        pytest.skip(f"needs the real {name} data: set RWKVSEG_DATA to a data root holding {name}/")
    return dataset_dir(name)


@pytest.fixture(scope="session")
def isic_dir():
    """The ISIC 2018 folder (images/, masks/) of the data root."""
    return _data_folder("isic2018")


@pytest.fixture(scope="session")
def acdc_dir():
    """The ACDC folder (data/*.h5, *.list) of the data root."""
    return _data_folder("acdc")


def pytest_collection_modifyitems(items):
    """Tests that use the real data are marked `data` (CI's data leg selects them with -m data)."""
    for item in items:
        if DATA_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)
