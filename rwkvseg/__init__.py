"""rwkvseg: RWKV-based medical image segmentation, from the WKV equations to trained networks.

    rwkvseg.bi_wkv, rwkvseg.uni_wkv          the WKV operators (rwkvseg.wkv; kernels in rwkvseg.kernels)
    rwkvseg.create_model, list_models        the registered networks (rwkvseg.models)
    rwkvseg.from_pretrained, list_pretrained the trained networks that ship with the package (rwkvseg.hub)
    rwkvseg.count_macs                       multiply-accumulates of a forward pass (rwkvseg.macs)

Training: rwkvseg.engine; data: rwkvseg.data; reports: rwkvseg.report; the book's kit: rwkvseg.book.
"""
from rwkvseg.hub import from_pretrained, list_pretrained, save_pretrained
from rwkvseg.macs import count_macs
from rwkvseg.models import create_model, list_models
from rwkvseg.version import __version__
from rwkvseg.wkv import bi_wkv, uni_wkv

__all__ = [
    "__version__", "bi_wkv", "uni_wkv", "create_model", "list_models", "count_macs",
    "save_pretrained", "from_pretrained", "list_pretrained",
]
