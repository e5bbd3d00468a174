"""rwkvseg: RWKV-based medical image segmentation, from the WKV equations to trained networks."""
import importlib.util as _ilu
import os as _os
import sys as _sys



def _map_source_kernels():
    """In a source checkout that was not pip-installed (Colab clone, GPU scratch copy), map the
    top-level kernels/ folder to rwkvseg.kernels, as the installed package does."""
    src = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "kernels")
    if _ilu.find_spec("rwkvseg.kernels") is None and _os.path.isfile(_os.path.join(src, "__init__.py")):
        spec = _ilu.spec_from_file_location("rwkvseg.kernels", _os.path.join(src, "__init__.py"),
                                            submodule_search_locations=[src])
        module = _ilu.module_from_spec(spec)
        _sys.modules["rwkvseg.kernels"] = module
        spec.loader.exec_module(module)


_map_source_kernels()

from rwkvseg.hub import from_pretrained, list_pretrained, save_pretrained  # noqa: E402
from rwkvseg.macs import count_macs  # noqa: E402
from rwkvseg.models import create_model, list_models  # noqa: E402
from rwkvseg.version import __version__  # noqa: E402
from rwkvseg.wkv import bi_wkv, uni_wkv  # noqa: E402

__all__ = [
    "__version__", "bi_wkv", "uni_wkv", "create_model", "list_models", "count_macs",
    "save_pretrained", "from_pretrained", "list_pretrained",
]
