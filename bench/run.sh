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
printf "%-8s %12s %16s %12s %8s\n" threads federate "(reference kern.)" pytorch ratio
for t in 1 2; do
  ours=$(OPENBLAS_NUM_THREADS=1 "$BIN" bench train --model cnn --batch-size 10 --threads "$t" --steps "$STEPS" | sed -n 's/^samples_per_s: //p')
  slow=$(OPENBLAS_NUM_THREADS=1 "$BIN" bench train --model cnn --batch-size 10 --threads "$t" --steps "$STEPS" --reference --unfused | sed -n 's/^samples_per_s: //p')
  ref=$(/usr/bin/python3 bench/torch_train.py --batch-size 10 --threads "$t" --steps "$STEPS" | sed -n 's/^samples_per_s: //p')
  printf "%-8s %12s %16s %12s %8.2f\n" "$t" "$ours" "$slow" "$ref" "$(echo "$ours / $ref" | bc -l)"
done

echo
echo "## server aggregation: FedAvg over 100 cnn updates (665 MB), single-threaded, best of 5"
ours=$("$BIN" bench aggregate --model cnn --clients 100 | sed -n 's/^ms: //p')
ref=$(/usr/bin/python3 bench/numpy_aggregate.py --clients 100 | sed -n 's/^ms: //p')
printf "%-10s %10s ms\n%-10s %10s ms\nnumpy/federate: %.2f\n" federate "$ours" numpy "$ref" "$(echo "$ref / $ours" | bc -l)"

echo
echo "## federated round time: 10 of 100 IID MNIST clients, E=5, B=10, cnn (seconds per round)"
DB="$(mktemp -d)/bench.db"
"$BIN" run examples/mnist-fedavg.yaml --db "$DB" --set num_rounds=2 --set threads=2 | grep '^round'
for t in 1 2; do
  /usr/bin/python3 bench/torch_fedavg.py --threads "$t" --rounds 1 | sed "s/^/pytorch $t thread(s): /"
done
