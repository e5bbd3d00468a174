"""The files one profile_step.sh call returned (untarred res/) -> committed records
(rwkvseg/results/train_throughput/train_throughput_<model>.json, rwkvseg/results/profile/*.txt), and the table for the note."""
import json, shutil, subprocess, sys
from pathlib import Path
src = Path(sys.argv[1])          # folder holding res/
res = src / "res"
out = Path("rwkvseg/results/train_throughput"); prof = Path("rwkvseg/results/profile")
for m in ("rwkv_unet_t", "unet", "ms_rwkv_unet"):
    files = [res / f"{m}_{c}.json" for c in ("off", "on", "off_graph", "on_graph") if (res / f"{m}_{c}.json").exists()]
    if not files:
        print("missing", m); continue
    subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--merge", *map(str, files),
                    "--out", str(out / f"train_throughput_{m}.json")], check=True, env={"PYTHONPATH": "."})
    for c in ("eager", "compiled"):
        p = res / f"prof_{m}_{c}.txt"
        if p.exists():
            shutil.copy(p, prof / f"{m}_{c}.txt")
    d = json.loads((out / f"train_throughput_{m}.json").read_text())
    for r in d["results"]:
        k = r["kernels"] or {}
        by = k.get("by_kind", {})
        shares = " ".join(f"{n}={v['share_pct']:.0f}%/{v['ms_per_step']:.1f}ms" for n, v in
                          sorted(by.items(), key=lambda kv: -kv[1]['share_pct']) if v['share_pct'] >= 0.5)
        print(f"| {m} | {'compiled' if r['compile'] else 'eager'}{' + graph' if r.get('cuda_graph') else ''} | {r['img_per_s']:.0f} | {r['inference']['img_per_s']:.0f} | "
              f"{r['peak_memory_gib']:.2f} | {r['time_to_first_step_s']:.1f} | {r['median_step_ms']:.1f} | "
              f"{k.get('total_ms_per_step', 0):.1f} ({k.get('gpu_busy_pct', 0):.0f}% busy, {k.get('launches_per_step', 0):.0f} launches) | {shares} |")
