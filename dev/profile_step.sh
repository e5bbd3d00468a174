#!/bin/bash
# GPU calls of 10 minutes: the training-step profile (one variant per process, cold caches), then the
# depthwise benchmark; steps past the limit are skipped (a second call with a larger LIMIT offset runs them).
# On the device: pytest needs `-o addopts=` (pyproject's nbval options; no nbval there); RWKVSEG_COMMIT must be
# given (the copy's .git is not this checkout's HEAD, so git_commit() would record a stale commit); a cold eager
# RWKV-UNet-T process needs ~60-70 s to its record (first step ~30 s: cuDNN's search, Triton builds).
# Usage (the device machine, carry nothing): bash dev/profile_step.sh "$(git rev-parse HEAD)" 585, then here:
#   mkdir -p /tmp/r && tar xzf <files>/res.tgz -C /tmp/r && PYTHONPATH=. python dev/ingest_profile.py /tmp/r
export RWKVSEG_COMMIT=$1 PYTHONUNBUFFERED=1 PYTHONPATH=.
START=$(date +%s); LIMIT=${2:-585}
R=/root/res; mkdir -p $R
left() { echo $(( LIMIT - ($(date +%s) - START) )); }
pack() { cp $R/log $OUT/log 2>/dev/null; tar czf $OUT/res.tgz -C /root res; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee $R/log
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.backends.cudnn.version())" | tee -a $R/log
step() {  # name timeout command...
  n=$1; t=$2; shift 2
  l=$(( $(left) - 4 )); [ $t -gt $l ] && t=$l
  [ $t -lt 15 ] && { echo "=== skip $n: $t s left" | tee -a $R/log; return; }
  echo "=== $n (timeout $t s, $(left) s left) $(date -u +%T)" | tee -a $R/log
  timeout $t "$@" 2>&1 | grep -v "Warning\|warn(\|USDT\|self.profiler" | tee -a $R/log
  pack
}
one() {  # model compile timeout extra-args...   (a variant with --cuda-graph: compile off_graph / on_graph)
  m=$1; c=$2; t=$3; shift 3; mkdir -p /root/c_${m}_$c
  g=""; [ "${c%_graph}" != "$c" ] && g="--cuda-graph"
  TMPDIR=/root/c_${m}_$c step "${m}_$c" $t python3 benchmarks/train_throughput.py --model $m --compile ${c%_graph} \
    $g --out $R/${m}_$c.json --profile $R/prof_${m}${g:+_graph} "$@"
}
step gpu_tests 150 python3 -m pytest -q -x -o addopts= -p no:cacheprovider tests/test_depthwise_triton.py \
  tests/test_wkv_gluon.py tests/test_wkv_triton.py tests/test_cuda_graph.py
one rwkv_unet_t off 90 --steps 30 --warmup 8
one rwkv_unet_t on 200 --steps 30 --warmup 8
one rwkv_unet_t off_graph 90 --steps 30 --warmup 8
one rwkv_unet_t on_graph 200 --steps 30 --warmup 8
one unet off 50 --steps 30 --warmup 8
one unet on 130 --steps 30 --warmup 8
one ms_rwkv_unet off 130 --steps 12 --warmup 4 --profile-steps 2
one ms_rwkv_unet on 300 --steps 12 --warmup 4 --profile-steps 2
one ms_rwkv_unet off_graph 130 --steps 12 --warmup 5 --profile-steps 2
step dwbench 300 python3 benchmarks/depthwise.py --out $R/depthwise.json
step dwsweep 150 python3 benchmarks/depthwise.py --sweep --out $R/depthwise_sweep.json
echo "=== done $(date -u +%T), $(( $(date +%s) - START )) s" | tee -a $R/log
pack
