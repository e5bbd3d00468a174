"""DistributedDataParallel on the CPU: 2 gloo processes vs 1 process, same global batch.

Every rank takes its half of each global batch and BatchNorm statistics are summed over the ranks
(rwkvseg.engine.distributed.AllReduceBatchNorm), so the per-epoch mean loss of the two runs must agree up to
float rounding of the gradient all-reduce.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ARGS = ["--model", "rwkv_unet_test", "--dataset", "isic2018_samples", "--img_size", "32", "--batch_size", "4",
        "--epochs", "3", "--max_train_images", "8", "--max_eval_items", "2", "--selection", "last",
        "--augment", "false", "--tta", "false", "--progress", "line", "--seed", "3",
        "--model_kwargs", "{drop_path_rate: 0.0, ccm_drop_path: 0.0}"]


def _run(nproc, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "rwkvseg", "train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", "29533", "-m", "rwkvseg", "train"]
    r = subprocess.run(cmd + ARGS + ["--out_dir", str(out)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_two_gloo_processes_match_one_process(tmp_path):
    one = _run(1, tmp_path / "one")
    two = _run(2, tmp_path / "two")
    l1 = [r["train_loss"] for r in one["history"]]
    l2 = [r["train_loss"] for r in two["history"]]
    assert len(l1) == len(l2) == 3
    assert two["provenance"]["world_size"] == 2
    print("losses 1 proc", l1, "2 procs", l2)
    for a, b in zip(l1, l2):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (l1, l2)
    assert l1[0] != l1[-1]       # the model did train
