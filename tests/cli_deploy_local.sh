#!/usr/bin/env bash
# examples/deploy/local.sh 2: a coordinator and two client daemons on loopback
# over TLS run examples/deploy/server.yaml to the end; the last line is the
# coordinator's final_accuracy, and nothing it started is left running.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
D="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
[ -e "$D/t10k-labels-idx1-ubyte" ] || [ -e "$D/t10k-labels-idx1-ubyte.gz" ] || { echo "MNIST missing: skipped"; exit 77; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(FEDERATE_BIN="$BIN" bash "$HERE/../examples/deploy/local.sh" 2 2>&1)" || { echo "$out"; echo "FAIL: local.sh failed"; exit 1; }
echo "$out" | tail -3
last="$(echo "$out" | tail -1)"
acc="${last#final_accuracy: }"
[ "$acc" != "$last" ] || { echo "FAIL: the last line is not final_accuracy: $last"; exit 1; }
awk -v a="$acc" 'BEGIN { exit !(a > 90) }' || { echo "FAIL: accuracy $acc too low"; exit 1; }
echo "$out" | grep -q "^round   5/5 .*clients 2/2" || { echo "FAIL: no complete round 5"; exit 1; }
echo PASS
