"""Candidate speedups of the whole training step, measured side by side (the project's GPU tooling).

python dev/step_experiments.py eager    --model rwkv_unet_t --out $OUT/eager.json
python dev/step_experiments.py compiled --model rwkv_unet_t --out $OUT/compiled.json [--modes default,reduce-overhead]
python dev/step_experiments.py dwconv   --model rwkv_unet_t --out $OUT/dw.json
python dev/step_experiments.py syncs    --model ms_rwkv_unet

Every variant: same init (state dict), same batch, 20 steps with the loss recorded (correctness),
then 40 timed steps (median), then 3 profiled steps (kernel kinds of benchmarks/train_throughput.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_throughput as tt  # noqa: E402

from rwkvseg.losses import binary_bce_dice  # noqa: E402
from rwkvseg.models import create_model  # noqa: E402
from rwkvseg.engine import train_step  # noqa: E402
from rwkvseg.depthwise import depthwise_conv2d  # noqa: E402

DEV = torch.device("cuda")
N_CHECK, N_TIME = 20, 30


def build(name: str, cl: bool = True) -> nn.Module:
    torch.manual_seed(0)
    m = create_model(name, in_chans=3, num_classes=1).to(DEV)
    return m.to(memory_format=torch.channels_last) if cl else m


def batch(size: int, b: int):
    g = torch.Generator(device=DEV).manual_seed(1)
    x = torch.rand(b, 3, size, size, device=DEV, generator=g)
    y = (torch.rand(b, 1, size, size, device=DEV, generator=g) > 0.7).float()
    return x, y


def run(label, model, step_model, init, x, y, *, fused, loss_fn=binary_bce_dice, cl=True, mark=False,
        profile=True) -> dict:
    model.load_state_dict(init)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4,
                            **({"fused": True} if fused else {"foreach": True}))
    CL = cl

    def step():
        if mark:
            torch.compiler.cudagraph_mark_step_begin()
        return train_step(step_model, opt, loss_fn, x, y, lr=1e-4, bf16=True, channels_last=CL)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    first = step()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    losses = [first.clone()] + [step().clone() for _ in range(N_CHECK - 1)]
    losses = torch.stack(losses).float().tolist()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = tt.timed(step, N_TIME, True)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30
    kern = tt.kernel_breakdown(tt.profile_kernels(step, 3), 3, 1e3 * med) if profile else None
    r = {"label": label, "first_step_s": first_s, "median_ms": 1e3 * med, "img_per_s": x.shape[0] / med,
         "spread_ms": [1e3 * min(times), 1e3 * max(times)], "peak_gib": peak, "losses": losses, "kernels": kern}
    ks = "" if kern is None else (f" | kern {kern['total_ms_per_step']:.1f} ms busy {kern['gpu_busy_pct']:.0f}% "
                                  f"launch {kern['launches_per_step']:.0f} | " + ", ".join(
        f"{k} {v['ms_per_step']:.1f}" for k, v in sorted(kern['by_kind'].items(), key=lambda kv: -kv[1]['ms_per_step'])
        if v['ms_per_step'] >= 0.3))
    print(f"RESULT {label:<40} {r['img_per_s']:7.1f} img/s {r['median_ms']:7.2f} ms first {first_s:6.1f} s "
          f"peak {peak:5.2f} GiB loss[0] {losses[0]:.5f} loss[-1] {losses[-1]:.5f}{ks}", flush=True)
    return r


def compare(results: list[dict], ref_label: str) -> None:
    ref = next(r for r in results if r["label"] == ref_label)
    for r in results:
        d = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], ref["losses"]))
        r.setdefault("vs", {})[ref_label] = {"max_rel_loss_diff": d, "speedup": r["img_per_s"] / ref["img_per_s"]}
        print(f"CHECK {r['label']:<40} vs {ref_label}: speed x{r['img_per_s'] / ref['img_per_s']:.3f}, "
              f"max rel loss diff over {N_CHECK} steps {d:.2e}", flush=True)


# ------------------------------------------------------------------ candidates as monkeypatches
_layer_norm = F.layer_norm


def layer_norm_bf16(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """F.layer_norm that, under autocast with a bf16 input, runs in bf16 (statistics in fp32 inside the
    kernel) instead of autocast's fp32 upcast: no cast copies before and after."""
    if torch.is_autocast_enabled() and x.dtype == torch.bfloat16:
        with torch.autocast("cuda", enabled=False):
            return _layer_norm(x, normalized_shape, None if weight is None else weight.to(x.dtype),
                               None if bias is None else bias.to(x.dtype), eps)
    return _layer_norm(x, normalized_shape, weight, bias, eps)


def copies_by_origin(step, top: int = 25) -> list[dict]:
    """Where the copy / layout kernels come from: kernel time by the chain of CPU ops that launched them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        step()
        torch.cuda.synchronize()
    acc: dict = {}
    for e in prof.events():
        for k in getattr(e, "kernels", []) or []:
            kind = tt.kernel_kind(k.name)
            if kind not in ("copies_layout",):
                continue
            chain, p = [], e
            while p is not None and len(chain) < 5:
                chain.append(p.name)
                p = p.cpu_parent
            key = " < ".join(chain) + f" | in {e.input_shapes[:1]}"
            a = acc.setdefault(key, [0.0, 0, k.name[:60]])
            a[0] += k.duration / 1e3
            a[1] += 1
    rows = sorted(({"origin": k, "ms": v[0], "n": v[1], "kernel": v[2]} for k, v in acc.items()), key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    print(f"COPIES total {total:.2f} ms/step in {sum(r['n'] for r in rows)} kernels", flush=True)
    for r in rows[:top]:
        print(f"COPIES {r['ms']:7.3f} ms {r['n']:4d}x {r['kernel']:<60} {r['origin'][:300]}", flush=True)
    return rows


def count_syncs(step) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        step()
    torch.cuda.set_sync_debug_mode(0)
    msgs = [str(x.message)[:200] for x in w if "synchroniz" in str(x.message).lower()]
    print(f"SYNCS {len(msgs)} synchronising calls in one step", *msgs[:5], sep="\n  ", flush=True)
    return len(msgs)


# ------------------------------------------------------------------ experiments
def exp_eager(a) -> dict:
    x, y = batch(a.size, a.batch)
    model = build(a.model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"runs": []}
    out["runs"].append(run("eager foreach (engine)", model, model, init, x, y, fused=False))
    out["runs"].append(run("eager fused AdamW", model, model, init, x, y, fused=True))
    F.layer_norm = layer_norm_bf16
    out["runs"].append(run("eager fused + LN bf16", model, model, init, x, y, fused=True))
    F.layer_norm = _layer_norm
    if a.nchw:
        m2 = build(a.model, cl=False)
        out["runs"].append(run("eager fused NCHW (no channels_last)", m2, m2, init, x, y, fused=True, cl=False))
        del m2
    compare(out["runs"], "eager foreach (engine)")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    CL = True
    step = lambda: train_step(model, opt, binary_bce_dice, x, y, lr=1e-4, bf16=True, channels_last=CL)  # noqa: E731
    out["syncs"] = count_syncs(step)
    out["copies"] = copies_by_origin(step)
    F.layer_norm = layer_norm_bf16
    print("with LN bf16:")
    out["copies_ln_bf16"] = copies_by_origin(step, top=8)
    F.layer_norm = _layer_norm
    return out


def exp_compiled(a) -> dict:
    x, y = batch(a.size, a.batch)
    model = build(a.model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"runs": []}
    closs = torch.compile(binary_bce_dice)
    for mode in a.modes.split(","):
        torch._dynamo.reset()
        t = time.perf_counter()
        cm = torch.compile(model, mode=None if mode == "default" else mode)
        mark = mode == "reduce-overhead"
        if mode == "default":
            out["runs"].append(run("compiled foreach (engine)", model, cm, init, x, y, fused=False))
            out["runs"].append(run("compiled fused AdamW", model, cm, init, x, y, fused=True))
        out["runs"].append(run(f"compiled[{mode}] fused + compiled loss", model, cm, init, x, y, fused=True,
                               loss_fn=closs, mark=mark))
        print(f"mode {mode}: {time.perf_counter() - t:.0f} s with its compile", flush=True)
    compare(out["runs"], out["runs"][0]["label"])
    return out


def exp_dwconv(a) -> dict:
    """Every depthwise conv of the model (shapes by forward hooks), fwd + bwd alone: NCHW / NHWC x fp32 / bf16,
    cuDNN (benchmark) vs PyTorch's native kernel; kernel names; weighted by how often each shape occurs."""
    torch.backends.cudnn.benchmark = True
    model = build(a.model)
    shapes: dict = {}

    def hook(mod, inp, _out):
        if mod.groups > 1 and mod.groups == mod.in_channels:
            key = (tuple(inp[0].shape), tuple(mod.weight.shape), mod.stride, mod.padding)
            shapes[key] = shapes.get(key, 0) + 1
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(torch.rand(a.batch, 3, a.size, a.size, device=DEV).contiguous(memory_format=torch.channels_last))
    for h in hs:
        h.remove()
    del model
    from triton.testing import do_bench
    from torch.profiler import ProfilerActivity, profile

    rows, totals = [], {}
    for (xs, ws, stride, pad), n in shapes.items():
        for layout in ("nchw", "nhwc"):
            for dt in (torch.float32, torch.bfloat16):
                for impl in ("cudnn", "native"):
                    mf = torch.channels_last if layout == "nhwc" else torch.contiguous_format
                    xx = torch.randn(xs, device=DEV, dtype=dt).contiguous(memory_format=mf).requires_grad_()
                    w = torch.randn(ws, device=DEV, dtype=dt).contiguous(memory_format=mf).requires_grad_()
                    go = torch.randn_like(F.conv2d(xx, w, None, stride, pad, 1, xs[1]))

                    def f():
                        with torch.backends.cudnn.flags(enabled=impl == "cudnn", benchmark=True):
                            o = F.conv2d(xx, w, None, stride, pad, 1, xs[1])
                            torch.autograd.grad(o, (xx, w), go)
                    f()
                    ms = do_bench(f, warmup=20, rep=60, return_mode="median")
                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        f()
                        torch.cuda.synchronize()
                    names = sorted({e.name[:70] for e in prof.events() if e.device_type.name == "CUDA"})
                    label = f"{layout} {str(dt)[6:]} {impl}"
                    totals[label] = totals.get(label, 0.0) + n * ms
                    rows.append({"x": xs, "w": ws, "stride": stride, "n": n, "variant": label, "ms": ms,
                                 "kernels": names})
                    print(f"DW x{list(xs)} w{list(ws)} s{stride} n{n} {label:<20} {ms:7.3f} ms "
                          f"{[tt.kernel_kind(k) for k in names]} {names}", flush=True)
    for label, ms in sorted(totals.items(), key=lambda kv: kv[1]):
        print(f"DWTOTAL {label:<22} {ms:7.2f} ms per step (fwd+bwd of every depthwise conv once)", flush=True)
    # a plain-PyTorch depthwise conv (k*k shifted multiply-adds), compiled into one Triton kernel, on the
    # costliest shape
    (xs, ws, stride, pad), n = max(shapes.items(), key=lambda kv: max(r["ms"] for r in rows if r["x"] == kv[0][0]
                                                                          and r["w"] == kv[0][1]))
    if stride == (1, 1):
        k = ws[-1]

        def shift_conv(x, w):
            xp = F.pad(x, (k // 2,) * 4)
            H, W = x.shape[-2:]
            acc = None
            for i in range(k):
                for j in range(k):
                    t = xp[:, :, i:i + H, j:j + W] * w[:, 0, i, j].view(1, -1, 1, 1)
                    acc = t if acc is None else acc + t
            return acc
        cs = torch.compile(shift_conv)
        xx = torch.randn(xs, device=DEV, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        xx.requires_grad_()
        w = torch.randn(ws, device=DEV, dtype=torch.bfloat16, requires_grad=True)
        ref = F.conv2d(xx.float(), w.float(), None, 1, k // 2, 1, xs[1])
        go = torch.randn_like(ref).to(torch.bfloat16)
        t = time.perf_counter()
        o = cs(xx, w)
        torch.autograd.grad(o, (xx, w), go)
        comp_s = time.perf_counter() - t
        err = ((o.float() - ref).norm() / ref.norm()).item()
        f = lambda: torch.autograd.grad(cs(xx, w), (xx, w), go)  # noqa: E731
        ms = do_bench(f, warmup=20, rep=60, return_mode="median")
        fo = lambda: cs(xx, w)  # noqa: E731
        ms_f = do_bench(fo, warmup=20, rep=60, return_mode="median")
        print(f"DWSHIFT x{list(xs)} w{list(ws)} compiled shift-add fwd+bwd {ms:.3f} ms (fwd {ms_f:.3f}), "
              f"compile {comp_s:.0f} s, rel err {err:.1e}", flush=True)
        rows.append({"x": xs, "w": ws, "variant": "compiled shift-add nhwc bf16", "ms": ms, "fwd_ms": ms_f,
                     "rel_err": err})
    return {"rows": rows, "totals": totals}


def exp_syncs(a) -> dict:
    """Host synchronisations in one eager step (cuDNN heuristics: no algorithm search, a fast first step)."""
    torch.backends.cudnn.benchmark = False
    x, y = batch(a.size, a.batch)
    model = build(a.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    CL = True
    step = lambda: train_step(model, opt, binary_bce_dice, x, y, lr=1e-4, bf16=True, channels_last=CL)  # noqa: E731
    step()
    return {"syncs": count_syncs(step)}


# ------------------------------------------------------------------ candidates of issue 23 (monkeypatches)
_conv_forward = nn.Conv2d.forward
_upsample_forward = nn.Upsample.forward


def conv1x1_as_gemm(small_only: bool):
    """nn.Conv2d.forward where a 1x1, stride-1, ungrouped conv of a channels-last CUDA map runs as one GEMM
    over the pixels (the permuted views are contiguous: no copies). small_only: only where a side has < 8
    channels (cuDNN's 'indexed' kernels)."""
    def forward(self, x):
        if (self.kernel_size == (1, 1) and self.groups == 1 and self.stride == (1, 1) and self.padding == (0, 0)
                and x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
                and (not small_only or min(self.in_channels, self.out_channels) < 8)):
            w = self.weight.view(self.out_channels, self.in_channels)
            return F.linear(x.permute(0, 2, 3, 1), w, self.bias).permute(0, 3, 1, 2)
        return _conv_forward(self, x)
    return forward


def _up2_along(x, dim):
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    return torch.stack([0.25 * prev + 0.75 * x, 0.75 * x + 0.25 * nxt], dim + 1).flatten(dim, dim + 1)


def upsample2x(self, x):
    """nn.Upsample.forward: bilinear x2 (align_corners False) as shifted slices and weighted sums (its
    backward is slices and sums too: no scatter-add)."""
    if self.mode == "bilinear" and self.scale_factor in (2, 2.0) and not self.align_corners:
        return _up2_along(_up2_along(x, 2), 3)
    return _upsample_forward(self, x)


def triton_depthwise(self, x):
    """nn.Conv2d.forward where a depthwise conv (groups == channels) of a channels-last CUDA map runs on
    rwkvseg.depthwise's Triton kernels."""
    if (self.groups > 1 and self.groups == self.in_channels == self.out_channels and self.bias is None
            and x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)):
        return depthwise_conv2d(x, self.weight, self.stride, self.padding)
    return _conv_forward(self, x)


from rwkvseg.spatial_mix import SpatialMix, VRWKVChannelMix, _q_shift_tokens  # noqa: E402
_sm_forward, _cm_forward = SpatialMix.forward, VRWKVChannelMix.forward


def sm_forward_mu(self, x, hw):
    """SpatialMix.forward with the token mixing in x's dtype (mu cast to it): no float32 maps under autocast."""
    xs = self.token_shift(x, hw)
    mk, mv, mr = (m.to(x.dtype) for m in (self.mu_k, self.mu_v, self.mu_r))
    xk = x * mk + xs * (1 - mk)
    xv = x * mv + xs * (1 - mv)
    xr = x * mr + xs * (1 - mr)
    k, v, r = self.key(xk), self.value(xv), self.receptance(xr)
    y = self.key_norm(self.wkv(k, v, hw))
    return self.output(torch.sigmoid(r) * y)


def cm_forward_mu(self, x, hw):
    """VRWKVChannelMix.forward with the token mixing in x's dtype."""
    xs = _q_shift_tokens(x, hw)
    mk, mr = self.mu_k.to(x.dtype), self.mu_r.to(x.dtype)
    xk = x * mk + xs * (1 - mk)
    xr = x * mr + xs * (1 - mr)
    k = torch.relu(self.key(xk)).square()
    kv = self.value(self.key_norm(k))
    return torch.sigmoid(self.receptance(xr)) * kv


import rwkvseg.ccm as _ccm  # noqa: E402
from rwkvseg.layers import resize_bilinear  # noqa: E402
_ccm_resize = _ccm._resize


def upsample_mm(self, x):
    """nn.Upsample.forward: bilinear by two matrix products (rwkvseg.layers.resize_bilinear)."""
    if self.mode == "bilinear" and not self.align_corners and self.scale_factor in (2, 2.0):
        return resize_bilinear(x, (2 * x.shape[2], 2 * x.shape[3]))
    return _upsample_forward(self, x)


def patches(names: set) -> None:
    _ccm._resize = resize_bilinear if "mmresize" in names else _ccm_resize
    SpatialMix.forward = sm_forward_mu if "mu" in names else _sm_forward
    VRWKVChannelMix.forward = cm_forward_mu if "mu" in names else _cm_forward
    nn.Conv2d.forward = (conv1x1_as_gemm("gemm_small" in names) if names & {"gemm", "gemm_small"}
                         else triton_depthwise if "dw" in names else _conv_forward)
    nn.Upsample.forward = (upsample2x if "up2" in names else upsample_mm if "mmresize" in names
                           else _upsample_forward)
    F.layer_norm = layer_norm_bf16 if "lnbf16" in names else _layer_norm


def check_patches() -> dict:
    """The patched ops against float64 references (values and gradients)."""
    torch.manual_seed(0)
    out = {}
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    for shape in ((2, 5, 7, 9), (1, 3, 1, 4), (2, 8, 16, 16)):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        ref = _upsample_forward(up, x)
        got = upsample2x(up, x)
        g = torch.randn_like(ref)
        (gr,) = torch.autograd.grad(ref, x, g)
        (gg,) = torch.autograd.grad(got, x, g)
        out[f"up2 {shape}"] = [float((ref - got).abs().max()), float((gr - gg).abs().max())]
    conv = nn.Conv2d(24, 3, 1, bias=True).to(DEV, torch.float64)
    x = torch.randn(2, 24, 9, 11, device=DEV, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    out["gemm 24->3"] = float((conv1x1_as_gemm(False)(conv, x) - _conv_forward(conv, x)).abs().max())
    dw = nn.Conv2d(19, 19, 5, 2, 2, groups=19, bias=False).to(DEV, torch.float64)
    x = torch.randn(2, 19, 13, 11, device=DEV, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ref, got = _conv_forward(dw, x), triton_depthwise(dw, x)
    g = torch.randn_like(ref)
    gr = torch.autograd.grad(ref, (x, dw.weight), g)
    gg = torch.autograd.grad(got, (x, dw.weight), g)
    out["dw 5x5 s2"] = [float((ref - got).abs().max())] + [float((a - b).abs().max()) for a, b in zip(gr, gg)]
    print("PATCHCHECK", out, flush=True)
    return out


def exp_candidates(a) -> dict:
    x, y = batch(a.size, a.batch)
    model = build(a.model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"runs": [], "check": check_patches()}
    if a.phase == "eager":
        for item in a.sets.split(";"):
            names = set(filter(None, item.partition(":")[2].split("+")))
            patches(names)
            out["runs"].append(run("eager fused +" + "+".join(sorted(names)), model, model, init, x, y, fused=True))
            if a.out:
                Path(a.out).write_text(json.dumps(out, indent=1, default=str))
    else:
        closs = torch.compile(binary_bce_dice)
        for item in a.sets.split(";"):
            mode, _, names = item.partition(":")
            names = set(filter(None, names.split("+")))
            patches(names)
            torch._dynamo.reset()
            t = time.perf_counter()
            cm = torch.compile(model, mode=None if mode == "default" else mode)
            label = f"compiled[{mode}] fused +closs " + "+".join(sorted(names))
            out["runs"].append(run(label, model, cm, init, x, y, fused=True, loss_fn=closs,
                                   mark=mode == "reduce-overhead"))
            print(f"{label}: {time.perf_counter() - t:.0f} s with its compile", flush=True)
            if a.out:
                Path(a.out).write_text(json.dumps(out, indent=1, default=str))
    patches(set())
    compare(out["runs"], out["runs"][0]["label"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exp", choices=("eager", "compiled", "dwconv", "syncs", "candidates"))
    ap.add_argument("--model", default="rwkv_unet_t")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--modes", default="default,reduce-overhead")
    ap.add_argument("--out", default=None)
    ap.add_argument("--nchw", action="store_true")
    ap.add_argument("--phase", choices=("eager", "compiled"), default="eager")
    ap.add_argument("--sets", default="default:;default:gemm+up2",
                    help="compiled: mode:patches items, ';'-separated, patches '+'-separated")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    res = {"eager": exp_eager, "compiled": exp_compiled, "dwconv": exp_dwconv, "syncs": exp_syncs,
           "candidates": exp_candidates}[a.exp](a)
    res["device"] = torch.cuda.get_device_name()
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
