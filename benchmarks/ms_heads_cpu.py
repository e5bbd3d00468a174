"""MS-RWKV-UNet on the CPU: aten ops per forward + backward and wall time per step.

The GPU training step is host-bound (every op a kernel launch), so the number of aten ops a step
issues is a proxy for its launch count that a CPU can measure. Usage:

    .venv/bin/python benchmarks/ms_heads_cpu.py [--size 64] [--batch 2] [--loop]

--loop runs MultiHeadScan's per-head loop (the path before the heads were batched). --ab runs
both paths on one model, step by step in alternation (the machine may be shared: alternation
exposes both to the same load), and reports wall and process CPU time for each. A step is
forward + BCE-with-logits loss + backward (no optimizer).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from rwkvseg.models import create_model
from rwkvseg.multihead import MultiHeadScan


# aten ops that launch no kernel on a GPU (views, allocations, dtype no-ops): left out of the
# "compute ops" count, the leaf aten ops (no aten op below them) that do work.
NO_KERNEL = {
    "aten::view", "aten::as_strided", "aten::unsqueeze", "aten::squeeze", "aten::permute", "aten::expand",
    "aten::expand_as", "aten::slice", "aten::select", "aten::transpose", "aten::t", "aten::numpy_T",
    "aten::reshape", "aten::_unsafe_view", "aten::_reshape_alias", "aten::unbind", "aten::split",
    "aten::split_with_sizes", "aten::chunk", "aten::narrow", "aten::unflatten", "aten::flatten",
    "aten::detach", "aten::alias", "aten::empty", "aten::empty_strided", "aten::empty_like",
    "aten::resolve_conj", "aten::resolve_neg", "aten::lift_fresh", "aten::contiguous", "aten::to",
    "aten::result_type",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ms_rwkv_unet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--loop", action="store_true", help="force the per-head loop")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ab", action="store_true", help="alternate loop and batched steps")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = create_model(args.model, in_chans=3, num_classes=1)
    if args.loop:
        for m in model.modules():
            if isinstance(m, MultiHeadScan):
                m.batched = False
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.5).float()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()

    if args.ab:
        def set_batched(flag: bool) -> None:
            for m in model.modules():
                if isinstance(m, MultiHeadScan):
                    m.batched = flag
        wall = {True: [], False: []}
        cpu = {True: [], False: []}
        for i in range(args.warmup + args.repeats):
            for flag in (False, True):
                set_batched(flag)
                t0, c0 = time.perf_counter(), time.process_time()
                step()
                if i >= args.warmup:
                    wall[flag].append(time.perf_counter() - t0)
                    cpu[flag].append(time.process_time() - c0)
        for flag, label in ((False, "loop"), (True, "batched")):
            print(f"{label:8s} wall ms median {1000 * statistics.median(wall[flag]):.1f} "
                  f"({' '.join(f'{1000 * t:.0f}' for t in wall[flag])}), "
                  f"cpu ms median {1000 * statistics.median(cpu[flag]):.1f}")
        return
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()
    names = Counter(e.name for e in events)
    aten = sum(c for n, c in names.items() if n.startswith("aten::"))
    print(f"model={args.model} size={args.size} batch={args.batch} loop={args.loop} "
          f"threads={torch.get_num_threads()}")
    leaves = [e for e in events if e.name.startswith("aten::") and e.name not in NO_KERNEL
              and not any(c.name.startswith("aten::") for c in e.cpu_children)]
    print(f"profiler events: {len(events)}  aten ops: {aten}  compute ops (leaf, no views): {len(leaves)}")
    print(f"step ms: median {1000 * statistics.median(times):.1f}  all "
          + " ".join(f"{1000 * t:.1f}" for t in times))
    for n, c in names.most_common(15):
        print(f"  {c:6d}  {n}")


if __name__ == "__main__":
    main()
