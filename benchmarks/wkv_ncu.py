"""Run the Bi-WKV forward a few times at one shape, for Nsight Compute to read its counters:

    ncu --clock-control none --kernel-name regex:_wkv_fwd --launch-skip 4 --launch-count 2 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \\
        python3 benchmarks/wkv_ncu.py --T 1024 --C 560 [--tiled]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rwkvseg.kernels import wkv_triton as kt  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--T", type=int, default=1024)
ap.add_argument("--C", type=int, default=560)
ap.add_argument("--tiled", action="store_true", help="the tiled kernel alone (fixed 128x16x4 tile)")
a = ap.parse_args()
k, v = (torch.randn(24, a.T, a.C, device="cuda") for _ in range(2))
w, u = torch.rand(a.C, device="cuda") / a.T, torch.randn(a.C, device="cuda") / a.T
kw = {"allow_single": False, "tile": (128, 16, 4)} if a.tiled else {}
for _ in range(6):
    kt.wkv_forward(w, u, k, v, causal=False, **kw)
torch.cuda.synchronize()
