#!/usr/bin/env bash
# `federate export`: a short run's final model and an earlier round's model come
# out of the store as safetensors that `federate evaluate` scores exactly as the
# run recorded for that round; a round without a model names the rounds that
# have one; bad run ids and unwritable outputs fail cleanly, leaving no file.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
D="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
[ -e "$D/t10k-labels-idx1-ubyte" ] || [ -e "$D/t10k-labels-idx1-ubyte.gz" ] || { echo "MNIST missing: skipped"; exit 77; }
"$BIN" export --help >/dev/null 2>&1 || { echo "SKIP: $BIN has no export command"; exit 77; }
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"

cat > small.yaml <<'YAML'
name: export-test
seed: 5
dataset: mnist
num_clients: 10
clients_per_round: 3
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 20
learning_rate: 0.1
threads: 2
YAML
"$BIN" run small.yaml --db a.db >/dev/null || fail "run failed"
show="$("$BIN" runs show 1 --db a.db)" || fail "runs show failed"
# test accuracy the store recorded for a round (column 2 of its row)
recorded() { echo "$show" | awk -v r="$1" '$1 == r && NF > 5 { print $2 }'; }

out="$("$BIN" export 1 --db a.db --out final.safetensors)" || fail "export of the final model failed: $out"
echo "$out" | grep -q "^round: 3$" || fail "final export is not round 3: $out"
out="$("$BIN" export 1 --round 1 --db a.db --out r1.safetensors)" || fail "export --round 1 failed: $out"
echo "$out" | grep -q "^round: 1$" || fail "round 1 export says: $out"
cmp -s final.safetensors r1.safetensors && fail "round 1 and the final model are the same bytes"
head -c 8 final.safetensors | od -An -tu1 >/dev/null || fail "no header"

for pair in "final.safetensors 3" "r1.safetensors 1"; do
  set -- $pair
  ours="$("$BIN" evaluate --model mlp --hidden 32 --weights "$1" | sed -n 's/^accuracy: //p')"
  want="$(recorded "$2")"
  [ -n "$ours" ] && [ -n "$want" ] || fail "no accuracy for $1 (evaluate: '$ours', store: '$want')"
  echo "$1: evaluate $ours%, store $want% (round $2)"
  [ "$ours" = "$want" ] || fail "$1 evaluates to $ours%, the store recorded $want% for round $2"
done

# a round without a model: a clear error naming the rounds that have one
err="$("$BIN" export 1 --round 9 --db a.db --out r9.safetensors 2>&1)" && fail "round 9 exported"
echo "$err" | grep -q "round 9" || fail "error does not name the round: $err"
echo "$err" | grep -q "1, 2, 3" || fail "error does not list the rounds: $err"
[ -e r9.safetensors ] && fail "a file was left for a missing round"

# unknown run, bad id, missing --out, unwritable output, missing store
"$BIN" export 7 --db a.db --out x.safetensors >/dev/null 2>&1 && fail "unknown run exported"
"$BIN" export abc --db a.db --out x.safetensors >/dev/null 2>&1 && fail "bad run id accepted"
"$BIN" export 1 --db a.db >/dev/null 2>&1 && fail "missing --out accepted"
"$BIN" export 1 --db nope.db --out x.safetensors >/dev/null 2>&1 && fail "missing store accepted"
[ -e nope.db ] && fail "export created a store"
err="$("$BIN" export 1 --db a.db --out no/such/dir/m.safetensors 2>&1)" && fail "unwritable output accepted"
echo "$err" | grep -q "no/such/dir/m.safetensors" || fail "error does not name the output: $err"
[ -e x.safetensors ] && fail "a file was left behind"
ls | grep -q "tmp-" && fail "a temp file was left behind: $(ls)"

echo "1 passed, 0 failed"
