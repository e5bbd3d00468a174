"""rwkvseg: RWKV-based medical image segmentation, from the WKV equations to trained networks."""
__version__ = "0.1.0"

from rwkvseg.notebook import env_report
from rwkvseg.wkv import bi_wkv, uni_wkv

__all__ = ["__version__", "bi_wkv", "uni_wkv", "env_report"]
