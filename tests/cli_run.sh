#!/usr/bin/env bash
# `federate run` end to end on MNIST at small scale: the closing lines, JSON
# logs, --set, config errors that name the key, the store's runs commands, a run
# on per-client folders from `federate partition`, and kill -9 then --resume
# ending where an uninterrupted run ends.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
T="$(mktemp -d)"
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"

cat > small.yaml <<'YAML'
name: small
seed: 3
dataset: mnist
num_clients: 20
clients_per_round: 4
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 20
learning_rate: 0.1
threads: 2
state_dir: state
YAML

out="$("$BIN" run small.yaml --db a.db)" || fail "run failed: $out"
echo "$out" | tail -5
echo "$out" | grep -q "^round   3/3 " || fail "no round lines"
for key in run_id final_accuracy bytes_up bytes_down; do
  echo "$out" | grep -q "^$key: [0-9]" || fail "missing closing line $key"
done
acc="$(echo "$out" | sed -n 's/^final_accuracy: //p')"
awk -v a="$acc" 'BEGIN { exit !(a > 80) }' || fail "accuracy $acc too low"

# target_accuracy stops the run at the first round that reaches it, with a
# checkpoint there; an unreachable target runs every round and says 0
tg="$("$BIN" run small.yaml --db t.db --set target_accuracy=50 --set num_rounds=5 2>&1)" || fail "target run failed: $tg"
echo "$tg" | grep -q "^target_round: 1$" || fail "target 50% not reached at round 1: $tg"
echo "$tg" | grep -q "^round   2/5 " && fail "ran past the target: $tg"
echo "$tg" | grep -q "target_accuracy 50% reached at round 1" || fail "no target message: $tg"
tg="$("$BIN" run small.yaml --db t.db --set target_accuracy=100 --set num_rounds=2 2>&1)" || fail "target run failed: $tg"
echo "$tg" | grep -q "^target_round: 0$" || fail "unreachable target not reported as 0: $tg"
echo "$tg" | grep -q "^round   2/2 " || fail "unreachable target cut the run short: $tg"

# one JSON object per round, and --set overrides
js="$("$BIN" run small.yaml --db a.db --log-format json --set num_rounds=2 --set strategy=fedavgm)" || fail "json run failed"
[ "$(echo "$js" | grep -c '^{"round"')" = 2 ] || fail "expected 2 JSON round lines: $js"
echo "$js" | head -1 | grep -q '"test_accuracy"' || fail "JSON lacks test_accuracy"

# config errors name the key (and suggest one)
echo "num_client: 10" > bad.yaml
err="$("$BIN" run bad.yaml --db a.db 2>&1)"; [ $? -ne 0 ] || fail "unknown key accepted"
echo "$err" | grep -q "num_client" || fail "error does not name the key: $err"
echo "$err" | grep -q "did you mean 'num_clients'" || fail "no did-you-mean: $err"
err="$("$BIN" run small.yaml --db a.db --set num_rounds=ten 2>&1)"; [ $? -ne 0 ] || fail "bad value accepted"
echo "$err" | grep -q "num_rounds" || fail "error does not name the key: $err"
err="$("$BIN" run small.yaml --db a.db --set clients_per_round=50 2>&1)"; [ $? -ne 0 ] || fail "clients_per_round > num_clients accepted"
err="$("$BIN" run missing.yaml 2>&1)"; [ $? -ne 0 ] || fail "missing config accepted"

# clients whose training diverges are reported and the run goes on without them
out="$("$BIN" run small.yaml --db a.db --set learning_rate=1000 --set num_rounds=1 2>&1)" || fail "diverging clients stopped the run: $out"
echo "$out" | grep -q "failed: client .*NaN or Inf" || fail "no message for the failed clients: $out"
echo "$out" | grep -q "clients 0/4 (4 dropped)" || fail "failed clients not recorded: $out"

# the store
"$BIN" runs list --db a.db | grep -q "small" || fail "runs list lacks the run"
"$BIN" runs show 1 --db a.db | grep -q "3" || fail "runs show failed"
"$BIN" runs compare 1 2 --db a.db >/dev/null || fail "runs compare failed"
"$BIN" runs show 99 --db a.db >/dev/null 2>&1 && fail "missing run shown"

# per-client folders: each client reads only its own folder
"$BIN" partition --dataset mnist --clients 20 --scheme dirichlet --alpha 0.5 --seed 3 --out parts >/dev/null || fail "partition failed"
out="$("$BIN" run small.yaml --db a.db --set data_dir=parts)" || fail "data_dir run failed: $out"
echo "$out" | grep -q "^final_accuracy: " || fail "data_dir run has no result"

# kill -9 in the middle, resume, and end at the uninterrupted run's model (enough
# rounds that an idle, fast machine cannot finish them between two polls)
ref="$("$BIN" run small.yaml --db ref.db --set num_rounds=40 --set checkpoint_every=1 --log-format json | tail -4)"
"$BIN" run small.yaml --db kill.db --set num_rounds=40 --set checkpoint_every=1 --log-format json > killed.log 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  [ "$(grep -c '^{"round"' killed.log)" -ge 2 ] && break
  sleep 0.02
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
grep -q '"round":40' killed.log && fail "the run finished before it could be killed"
res="$("$BIN" run --resume 1 --db kill.db --log-format json | tail -4)" || fail "resume failed"
a="$(echo "$ref" | grep -v run_id)"; b="$(echo "$res" | grep -v run_id)"
[ "$a" = "$b" ] || fail "resumed run differs: [$a] vs [$b]"
"$BIN" runs show 1 --db kill.db | grep -q "finished" || fail "resumed run not finished"
echo "1 passed, 0 failed"
