"""benchmarks/ddp.py --quick: 1 and 2 gloo processes on the CPU, synthetic 64x64, rwkv_unet_test.

Checks that the driver launches both torchrun jobs and writes every field the GPU run reports:
img/s, the scaling efficiency, peak memory per rank, and the loss after the same number of samples.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_benchmark_quick(tmp_path):
    out = tmp_path / "ddp.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ddp.py"), "--quick", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert set(d["runs"]) == {"1", "2"}
    one, two = d["runs"]["1"], d["runs"]["2"]
    assert (one["world_size"], two["world_size"]) == (1, 2) and two["backend"] == "gloo"
    assert one["batch_per_gpu"] == two["batch_per_gpu"] and two["global_batch"] == 2 * one["global_batch"]
    assert one["timed_steps"] == two["timed_steps"]
    assert one["samples"] == two["samples"] == d["samples_per_run"]         # same samples, 2x the steps on 1
    assert one["total_steps"] == 2 * two["total_steps"] == len(one["losses"])
    for run in (one, two):
        assert run["img_per_s"] > 0 and len(run["ranks"]) == run["world_size"]
        assert all("peak_allocated_gib" in rank for rank in run["ranks"])   # None on the CPU
        assert all(math.isfinite(x) for x in run["losses"])
    eff = d["scaling_efficiency"]["2"]
    assert math.isfinite(eff) and eff > 0
    assert math.isclose(eff, two["img_per_s"] / (2 * one["img_per_s"]))
    curves = d["loss_vs_samples"]
    assert len(curves["1"]) == len(curves["2"]) == len(curves["samples"]) >= 1
    assert curves["samples"][-1] == d["samples_per_run"]
    for w in ("1", "2"):
        assert math.isfinite(d["final_window_loss"][w]) and math.isfinite(d["heldout_loss"][w])
    prov = d["provenance"]
    assert prov["world_sizes"] == [1, 2] and prov["mode"] == "quick" and prov["git_commit"]
    assert prov["devices"] and "torch" in prov and "nccl" in prov and "date" in prov
