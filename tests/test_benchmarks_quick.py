"""Every benchmark script's CPU smoke mode runs (they are run for real only on a GPU, where a
crash costs device time: the wkv.py --quick mode and one benchmark call both broke unnoticed)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["wkv.py", "train_throughput.py", "startup.py"])
def test_quick_mode(script):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the script must set it itself
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_train_throughput_merge(tmp_path):
    """--merge keeps, per setting, the run with the median img/s (an actual run) and lists every run's."""
    import json

    def record(eager, compiled, commit):
        rows = [{"model": "m", "size": 64, "batch": 2, "bf16": True, "channels_last": True, "compile": c,
                 "img_per_s": ips, "median_step_ms": 1000 * 2 / ips} for c, ips in ((False, eager), (True, compiled))]
        return {"results": rows, "provenance": {"git_commit": commit}}

    files = []
    for i, (e, c) in enumerate([(10.0, 30.0), (12.0, 20.0), (11.0, 40.0), (9.0, 25.0)]):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(record(e, c, f"c{i}")))
    out = tmp_path / "merged.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--merge", *map(str, files),
                    "--out", str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=300)
    merged = json.loads(out.read_text())
    by = {r["compile"]: r for r in merged["results"]}
    assert by[False]["img_per_s"] == 10.0 and by[False]["runs_img_per_s"] == [9.0, 10.0, 11.0, 12.0]
    assert by[True]["img_per_s"] == 25.0 and by[True]["median_step_ms"] == 80.0
    assert [m["file"] for m in merged["merged_from"]] == [f.name for f in files]


def _load_train_throughput():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KERNEL_NAMES = {  # kernel names seen in the H100 profiles of results/profile/, and the kind each belongs to
    "_wkv_fwd_kernel": "wkv",
    "_wkv_fwd_gluon_kernel": "wkv",
    "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::"
    "TensorListMetadata<4>, at::native::(anonymous namespace)::PointwiseOpScalarFunctor<float, 4, 3, 3>": "optimizer",
    "void at::native::batch_norm_collect_statistics_channels_last_kernel<at::native::Var, c10::BFloat16>": "normalisation",
    "triton_red_fused__native_batch_norm_legit_functional_native_batch_norm_backward_threshold_backward_0":
        "normalisation",
    "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, false>": "normalisation",
    "void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernelTemplate<float, float>": "normalisation",
    "void at::native::(anonymous namespace)::upsample_bilinear2d_out_frame<c10::BFloat16, float>": "resampling",
    "triton_poi_fused__to_copy__unsafe_index_put_add_mul_neg_new_zeros_102": "resampling",
    "void at::native::_scatter_gather_elementwise_kernel<128, 8, at::native::_cuda_scatter_gather_internal_kernel":
        "scan_gathers_index",
    "void at::native::(anonymous namespace)::indexFuncLargeIndex<float, long, unsigned int, -1, -1, -1, true>":
        "scan_gathers_index",
    "triton_poi_fused_index_select_mul_sigmoid_4": "scan_gathers_index",
    "void cudnn::cnn::conv2d_grouped_direct_kernel<false, true, false, true, false, false, 0>": "depthwise_conv",
    "void cudnn::cnn::wgrad2d_grouped_direct_kernel<false, true, int, __nv_bfloat16, float, float>": "depthwise_conv",
    "dgrad2d_c1_k1_nhwc": "depthwise_conv",
    "void at::native::(anonymous namespace)::conv_depthwise2d_forward_kernel<5, c10::BFloat16, int>": "depthwise_conv",
    "void tensorTransformGeneric<__nv_bfloat16, __nv_bfloat16, float, true, false, false>": "copies_layout",
    "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)":
        "copies_layout",
    "void at::native::vectorized_elementwise_kernel<8, at::native::bfloat16_copy_kernel_cuda(at::TensorIteratorBase&)":
        "copies_layout",
    "void at::native::(anonymous namespace)::CatArrayBatchedCopy<at::native::(anonymous namespace)::OpaqueType<2>>":
        "copies_layout",
    "Memcpy DtoD (Device -> Device)": "copies_layout",
    "sm80_xmma_wgrad_implicit_gemm_indexed_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize64x64x64": "dense_conv_gemm",
    "sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x64x32": "dense_conv_gemm",
    "nvjet_tst_128x64_64x8_1x1_v_bz_coopA_NNT": "dense_conv_gemm",
    "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16>": "dense_conv_gemm",
    "triton_tem_fused_mm_3": "dense_conv_gemm",
    "triton_red_fused_convolution_backward_sum_7": "elementwise",
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, std::array<char*, 3>>":
        "elementwise",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float>>>":
        "elementwise",
    "triton_poi_fused_add_mul_sigmoid_3": "elementwise",
    "some_new_library_kernel": "other",
}


def test_train_throughput_kernel_kinds():
    """The kernel-kind table sorts the kernel names of real profiles as its docstring says."""
    tt = _load_train_throughput()
    assert {name: tt.kernel_kind(name) for name in KERNEL_NAMES} == KERNEL_NAMES


def test_every_rwkvseg_kernel_counts_in_its_kind():
    """Every GPU kernel of rwkvseg.kernels (the names a profile shows) falls in its kind: the depthwise
    convolution's in 'depthwise_conv', every other one in 'wkv'."""
    tt = _load_train_throughput()
    names = {}
    for path in (ROOT / "rwkvseg" / "kernels").glob("*.py"):
        kind = "depthwise_conv" if path.stem == "depthwise" else "wkv"
        for n in re.findall(r"^\s*def (\w+_kernel)\(", path.read_text(), flags=re.MULTILINE):
            names[n] = kind
    assert len(names) >= 11 and sum(k == "depthwise_conv" for k in names.values()) == 3
    assert {n: tt.kernel_kind(n) for n in names} == names


def test_train_throughput_kernel_breakdown():
    """Shares add up to 100 %, ms per step and launches per step divide by the profiled steps."""
    tt = _load_train_throughput()
    kernels = [("dgrad2d_c1_k1_nhwc", 300.0), ("dgrad2d_c1_k1_nhwc", 100.0), ("_wkv_fwd_kernel", 400.0),
               ("some_new_library_kernel", 200.0)] * 2
    b = tt.kernel_breakdown(kernels, steps=2, step_ms=2.0)
    assert b["total_ms_per_step"] == pytest.approx(1.0) and b["gpu_busy_pct"] == pytest.approx(50.0)
    assert b["launches_per_step"] == 4
    assert sum(v["share_pct"] for v in b["by_kind"].values()) == pytest.approx(100.0)
    assert b["by_kind"]["depthwise_conv"] == pytest.approx({"ms_per_step": 0.4, "share_pct": 40.0, "launches_per_step": 2})
    assert b["top"][0]["name"] == "dgrad2d_c1_k1_nhwc" and b["other_top"][0]["name"] == "some_new_library_kernel"


def test_train_throughput_resort_kinds():
    """A record's listed kernels move to the kind today's patterns give them; totals stay."""
    tt = _load_train_throughput()
    b = tt.kernel_breakdown([("dgrad2d_c1_k1_nhwc", 300.0), ("some_new_library_kernel", 100.0)], steps=1,
                            step_ms=1.0)
    old = {**b, "top": [dict(r) for r in b["top"]], "other_top": [dict(r) for r in b["other_top"]]}
    for r in old["top"] + old["other_top"]:                       # as if written before 'depthwise_conv'
        r["kind"] = "other" if r["name"] == "dgrad2d_c1_k1_nhwc" else r["kind"]
    old["by_kind"] = {k: dict(v) for k, v in b["by_kind"].items()}
    old["by_kind"]["other"] = {"ms_per_step": 0.4, "share_pct": 100.0, "launches_per_step": 2.0}
    old["by_kind"]["depthwise_conv"] = {"ms_per_step": 0.0, "share_pct": 0.0, "launches_per_step": 0.0}
    new = tt.resort_kinds(old)
    for kind in ("other", "depthwise_conv"):
        assert new["by_kind"][kind] == pytest.approx(b["by_kind"][kind])
    assert [r["name"] for r in new["other_top"]] == ["some_new_library_kernel"]
