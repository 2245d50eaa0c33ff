#!/bin/sh
# Simulated time to a target accuracy on heterogeneous simulated phones
# (device_profiles: lognormal): uniform, speed, oort and power-of-choice
# selection under synchronous FedAvg, and asynchronous FedBuff.
#   examples/sim-bench.sh [TARGET_PERCENT] [extra --set flags, e.g. --set model=cnn]
# Prints one line per run: rounds (server steps for FedBuff) and cumulative
# sim_time_s until the global test accuracy first reaches the target.
set -e
FEDERATE=${FEDERATE_BIN:-federate}
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=${1:-95}
[ $# -gt 0 ] && shift
DB=${DB:-sim-bench.db}
rm -f "$DB"
tta() {
    "$FEDERATE" runs show "$1" --db "$DB" | awk -v T="$TARGET" -v N="$2" '
      $1 ~ /^[0-9]+$/ && NF >= 10 { r = $1; cum += $NF; if (!hit && $2 != "-" && $2 + 0 >= T) { hit = 1; hr = r; hc = cum } }
      END { if (hit) printf "%-18s %3d rounds  %8.1f s simulated to %s%%\n", N, hr, hc, T;
            else printf "%-18s not reached in %d rounds (%.1f s simulated)\n", N, r, cum }'
}
run() {
    name=$1; shift
    "$FEDERATE" run "$@" --db "$DB" --set name="$name" > /dev/null
    id=$("$FEDERATE" runs list --db "$DB" | awk 'NR == 2 { print $1 }')
    tta "$id" "$name"
}
run uniform "$HERE/mnist-sim-uniform.yaml" "$@"
run speed "$HERE/mnist-sim-uniform.yaml" --set client_selection=speed "$@"
run power-of-choice "$HERE/mnist-sim-uniform.yaml" --set client_selection=power-of-choice "$@"
run oort "$HERE/mnist-oort.yaml" "$@"
run fedbuff "$HERE/mnist-fedbuff.yaml" --set num_rounds=150 --set evaluation_every=2 "$@"
