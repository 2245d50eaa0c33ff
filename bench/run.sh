#!/usr/bin/env bash
# `make bench`: federate's benchmarks next to their references, measured in the
# same run on this machine (it is shared and noisy: compare ratios, not absolutes).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${FEDERATE_BIN:-build/federate}"
STEPS="${STEPS:-300}"
echo "# federate bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "## local training throughput: cnn, batch 10 (samples/s)"
printf "%-8s %12s %12s %8s\n" threads federate pytorch ratio
for t in 1 2; do
  ours=$(OPENBLAS_NUM_THREADS=1 "$BIN" bench train --model cnn --batch-size 10 --threads "$t" --steps "$STEPS" | sed -n 's/^samples_per_s: //p')
  ref=$(/usr/bin/python3 bench/torch_train.py --batch-size 10 --threads "$t" --steps "$STEPS" | sed -n 's/^samples_per_s: //p')
  printf "%-8s %12s %12s %8.2f\n" "$t" "$ours" "$ref" "$(echo "$ours / $ref" | bc -l)"
done
