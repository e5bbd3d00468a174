"""rwkvseg: RWKV-based medical image segmentation, from the WKV equations to trained networks."""
__version__ = "0.1.0"

from rwkvseg.flops import flops  # noqa: E402
from rwkvseg.hub import from_pretrained, save_pretrained  # noqa: E402
from rwkvseg.models import create_model, list_models  # noqa: E402
from rwkvseg.notebook import env_report  # noqa: E402
from rwkvseg.wkv import bi_wkv, uni_wkv  # noqa: E402

__all__ = [
    "__version__", "bi_wkv", "uni_wkv", "create_model", "list_models", "flops",
    "save_pretrained", "from_pretrained", "env_report",
]
