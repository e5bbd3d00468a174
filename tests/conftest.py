"""Test setup shared by every test file.

Without a GPU, Triton kernels run under the CPU interpreter; the variable must be set before any
kernel is decorated, so it is set here, before the tests import anything from rwkvseg.kernels.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
