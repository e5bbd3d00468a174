#!/bin/bash
# Issue 23, item 5: the shipped ISIC recipe from the command line, wall time from the command's start to its exit.
# On the device machine, carrying a copy of the ISIC 2018 folder (images/, masks/, splits/, SOURCE.md) as .carry/isic2018:
#   bash dev/time_to_accuracy.sh COMMIT [extra train arguments...]     (TTA_LIMIT: the run's timeout, s; 560)
# Writes train.log, results.json, metrics.csv, history.json and the record folder under $OUT.
export RWKVSEG_COMMIT=$1 PYTHONUNBUFFERED=1 PYTHONPATH=.; shift
S=$(date +%s.%N)
timeout ${TTA_LIMIT:-560} python3 -m rwkvseg train --config configs/isic2018_rwkv_unet_t.yaml --data_dir .carry/isic2018 \
  --out_dir /root/runs/isic --progress line "$@" 2>&1 | grep -v "Warning\|warn(" | tee $OUT/train.log
E=$(date +%s.%N)
python3 -c "print(f'WALL {float($E) - float($S):.1f} s (command start to exit)')" | tee -a $OUT/train.log
cp /root/runs/isic/results.json /root/runs/isic/metrics.csv /root/runs/isic/history.json $OUT/ 2>/dev/null
timeout 30 python3 -m rwkvseg record --run /root/runs/isic --out $OUT/record 2>&1 | tail -3
