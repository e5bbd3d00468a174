"""The networks. Importing this package registers every builder (see registry.py)."""
from rwkvseg.models.registry import create_model, list_models, register_model
from rwkvseg.models import rwkv_unet, ms_rwkv_unet, rwkv_sss, unet  # noqa: F401  (registers builders)

__all__ = ["create_model", "list_models", "register_model"]
