"""Every benchmark script's CPU smoke mode runs (they are run for real only on a GPU, where a
crash costs device time: the wkv.py --quick mode and one benchmark call both broke unnoticed)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["wkv.py", "train_throughput.py"])
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
