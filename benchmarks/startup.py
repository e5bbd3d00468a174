"""How long `python -m rwkvseg train` takes to its first optimizer step, on a cold machine and again.

    python benchmarks/startup.py --data_dir $RWKVSEG_DATA --out rwkvseg/results/train_throughput/startup.json
    python benchmarks/startup.py --data_dir $RWKVSEG_DATA --train_args="--compile true" --out ...
    python benchmarks/startup.py --quick          # CPU smoke test (the shipped samples, a tiny model)

The training command of --config (default: the shipped ISIC 2018 recipe of RWKV-UNet-T), cut to
--max_steps steps, runs twice in fresh processes:

- cold: empty Triton, Inductor and data caches (new temporary folders), what a fresh machine pays:
  the data set's cache file is built, every Triton kernel is compiled, cuDNN searches its algorithms;
- warm: the same command again with the caches the cold run left: what the next run on that machine
  pays (cuDNN's search has no cache across processes and is paid again).

Per run the record gives time_to_first_step_s (the run's own provenance: from the training set-up to the
end of its first optimizer step, synchronised), setup_s (the same provenance's first parts of it: data,
the data set loaded onto the device, its cache file built on a cold run; model, the network built and
moved to the device and its optimizer made; the rest of time_to_first_step_s is the first step itself,
with its Triton builds and, compiled, Dynamo and Inductor), command_wall_s (the command's start to its
exit, the test evaluation included), triton_builds (the kernels Triton compiled during the run, by name:
the cache folders it added; the warm run should add none), triton_builds_written_s (when each build's
files were written, in seconds from the command's start: the builds run one after another, so the gaps
between them are roughly their build times) and data_cache_written_s (the same for the data set's cache
file) and, once, import_s: a fresh `python -c "import rwkvseg.cli"`, the time before the set-up starts.
import_s + time_to_first_step_s is the time from the command to its first step.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rwkvseg.env import provenance

QUICK = ["--model", "rwkv_unet_test", "--dataset", "isic2018_samples", "--img_size", "32", "--batch_size", "4",
         "--max_train_images", "8", "--max_eval_items", "2", "--tta", "false"]


def files(folder: Path, pattern: str) -> set[Path]:
    """The files under `folder` that match `pattern`."""
    return set(folder.rglob(pattern)) if folder.is_dir() else set()


def added(folder: Path, pattern: str, before: set[Path], t0: float) -> dict[Path, float]:
    """The files matching `pattern` that are not in `before`, with seconds from t0 to their last write."""
    return {f: f.stat().st_mtime - t0 for f in files(folder, pattern) - before}


def build_name(group_file: Path) -> str:
    """The kernel's name from a Triton cache entry (one `__grp__<name>.json` per build)."""
    return group_file.name[len("__grp__"):-len(".json")]


def timed_run(cmd: list[str], env: dict) -> float:
    """Seconds from the start of `cmd` to its exit; raises if it fails."""
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/isic2018_rwkv_unet_t.yaml")
    ap.add_argument("--data_dir", default=None, help="the data root (default: $RWKVSEG_DATA)")
    ap.add_argument("--max_steps", type=int, default=30)
    ap.add_argument("--train_args", default="",
                    help='more options for the training command, e.g. --train_args="--compile true"')
    ap.add_argument("--quick", action="store_true", help="CPU smoke test: the shipped samples, a tiny model")
    ap.add_argument("--out", default=None, help="write the JSON here")
    a = ap.parse_args(argv)
    if a.quick:
        a.max_steps = 2

    env = dict(os.environ)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "RWKVSEG_CACHE"):
            env[name] = str(tmp / name.lower())
        import_s = timed_run([sys.executable, "-c", "import rwkvseg.cli"], env)
        for leg in ("cold", "warm"):
            out_dir = tmp / f"run_{leg}"
            cmd = [sys.executable, "-m", "rwkvseg", "train", "--config", a.config, "--out_dir", str(out_dir),
                   "--max_steps", str(a.max_steps), "--progress", "line"]
            if a.data_dir:
                cmd += ["--data_dir", a.data_dir]
            if a.quick:
                cmd += QUICK
            cmd += shlex.split(a.train_args)
            triton_dir, data_dir = Path(env["TRITON_CACHE_DIR"]), Path(env["RWKVSEG_CACHE"])
            builds_before, data_before = files(triton_dir, "__grp__*.json"), files(data_dir, "*.npz")
            t0 = time.time()
            wall = timed_run(cmd, env)
            builds = added(triton_dir, "__grp__*.json", builds_before, t0)
            data = added(data_dir, "*.npz", data_before, t0)
            built = dict(Counter(build_name(f) for f in builds))
            p = json.loads((out_dir / "results.json").read_text())["provenance"]
            runs.append({"caches": leg, "time_to_first_step_s": p["time_to_first_step_s"],
                         "setup_s": p.get("setup_s"), "command_wall_s": wall,
                         "train_img_per_s": p.get("train_img_per_s"), "triton_builds": built,
                         "triton_builds_written_s": sorted([round(t, 2), build_name(f)] for f, t in builds.items()),
                         "data_cache_written_s": {f.name: round(t, 2) for f, t in data.items()}})
            print(f"{leg}: first step {p['time_to_first_step_s']:.1f} s after the set-up began "
                  f"(+ {import_s:.1f} s of imports), command {wall:.1f} s, {sum(built.values())} Triton builds",
                  flush=True)
    command = " ".join(["startup.py", *(argv if argv is not None else sys.argv[1:])])
    record = {"config": a.config, "train_args": a.train_args, "max_steps": a.max_steps, "import_s": import_s,
              "runs": runs,
              "provenance": provenance(mode="quick" if a.quick else "full", command=command)}
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
