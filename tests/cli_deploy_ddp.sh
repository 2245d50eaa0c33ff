#!/usr/bin/env bash
# Distributed DP over the network (privacy.mode distributed, Kairouz et al. 2021): a
# coordinator and 5 client daemons on loopback over TLS with secure aggregation. The
# noise is split among 4 shares (5 per round, dropout_fraction 0.3). In round 1,
# clients 3 and 4 die (SIGKILL, the daemon's test hook) before their masked inputs:
# 3 shares are fewer than 4, so the coordinator does not unmask the sum, the round
# fails, the model stays as it was and no epsilon is spent. The two are restarted
# and rounds 2 and 3 release the noised mean of all 5; the epsilon stored per round
# (runs show) and printed at the end is finite and grows only with the released
# rounds. Client 0 runs with --min-noise-multiplier equal to the run's, which it
# accepts; then, against a run without DP, a client with the flag refuses its task.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init
N=5
deploy_federation $N --scheme iid --local-test-fraction 0.02 --seed 5

cat > server.yaml <<'YAML'
name: deploy-ddp
seed: 11
dataset: mnist
num_clients: 5
clients_per_round: 5
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
local_steps: 30
batch_size: 32
learning_rate: 0.1
threads: 1
secure_aggregation:
  enabled: true
  bits: 16
  dropout_fraction: 0.3
privacy:
  mode: distributed
  clip_norm: 0.5
  noise_multiplier: 0.05
  delta: 1e-5
server:
  round_timeout: 5
  round_retries: 0
  long_poll: 2
  register_timeout: 60
YAML

deploy_server server.yaml
FLOOR0=0.05
client() {  # client ID LOG: one daemon in the background, its pid in CLIENT[ID]; client 0 with FLOOR0
  local extra=()
  [ "$1" = 0 ] && [ -n "$FLOOR0" ] && extra=(--min-noise-multiplier "$FLOOR0")
  deploy_client "$1" "$2" --max-retries 20 "${extra[@]}"
}
for i in 0 1 2; do client $i client$i.log; done
for i in 3 4; do FEDERATE_TEST_DIE_AT_SECAGG_STAGE=2 client $i client$i.log; done

# clients 3 and 4 die in round 1's stage 2; back at once, they take part in round 2
for i in 3 4; do
  wait ${CLIENT[$i]}; st=$?
  [ $st = 137 ] || fail "client $i was to be killed at stage 2 (exit $st)"
  grep -q "killing myself before stage 2" client$i.log || fail "client $i did not reach stage 2"
  client $i client${i}b.log
done
wait $SERVER || fail "coordinator exited with $?"
for i in 0 1 2 3 4; do
  wait ${CLIENT[$i]} || fail "client $i exited with $?"
done
for i in 0 1 2; do
  grep -q "round 1: secure aggregation: GET /v1/secagg/1/3: HTTP 409" client$i.log ||
    fail "client $i was asked to unmask round 1"
done
for i in 0 1 2 3b 4b; do
  for r in 2 3; do
    grep -q "round $r: secure aggregation done .*with a distributed DP noise share (noise multiplier 0.05 over 4 shares)" \
      client$i.log || fail "client $i did not add its noise share in round $r"
  done
  grep -q "the federation finished" client$i.log || fail "client $i did not see the end"
done
grep -q "refused" client0.log && fail "client 0 refused a round at its floor"

grep -q "round 1: secure aggregation among 5 clients .*distributed DP noise from each client" server.log ||
  fail "round 1 did not start the protocol with noise shares"
grep -q "distributed DP: 3 of 5 clients survived secure aggregation's masked-input stage, fewer than the 4 .*not unmasked" \
  server.log || fail "round 1's 3 survivors were not refused"
grep -q "round 1: secure aggregation failed, the global model is unchanged" server.log || fail "round 1 did not fail cleanly"
for r in 2 3; do
  grep -q "round $r: secure aggregation done: 5 of 5 clients in the sum" server.log || fail "round $r did not sum 5 shares"
done
grep -q "^round   1/3 .*clients 0/5 (5 dropped)" server.out || fail "round 1 counts a release: $(grep '^round' server.out)"

# per round: test accuracy and epsilon from the store (counted from the right:
# train_loss spans three fields, or one when it is "-")
"$BIN" runs show 1 --db server.db > show.out || fail "runs show"
col() { awk -v name="$1" -v r="$2" '$1 == "round" { for (i = 1; i <= NF; i++) if ($i == name) k = NF - i }
                                    $1 == r && k != "" { print $(NF - k) }' show.out; }
eps1=$(col epsilon 1); eps2=$(col epsilon 2); eps3=$(col epsilon 3)
num='^[0-9]+(\.[0-9]+)?$'
[[ $eps1 =~ $num && $eps2 =~ $num && $eps3 =~ $num ]] || fail "epsilon per round: '$eps1' '$eps2' '$eps3': $(cat show.out)"
awk -v a="$eps1" -v b="$eps2" -v c="$eps3" 'BEGIN { exit !(b > 0 && b > a && c > b) }' ||
  fail "epsilon does not grow with the released rounds only: $eps1 $eps2 $eps3"
# the model unchanged by round 1 is the untrained one: round 1's accuracy is near chance
acc1=$(sed -n 's/^round   1\/3  test_acc *\([0-9.]*\)%.*/\1/p' server.out)
acc3=$(sed -n 's/^round   3\/3  test_acc *\([0-9.]*\)%.*/\1/p' server.out)
awk -v a="$acc1" -v c="$acc3" 'BEGIN { exit !(a != "" && c != "" && a < 30 && c > 50) }' ||
  fail "round 1 changed the model or rounds 2-3 did not train it: $(grep '^round' server.out)"
eps=$(sed -n 's/^epsilon: //p' server.out)
[ "$eps" = "$eps3" ] || fail "final epsilon '$eps' is not round 3's $eps3"
grep -q "^delta: 1e-05$" server.out || fail "no delta line"
echo "ok: distributed DP over the network; round 1 refused with 3 of 4 shares; epsilon $eps1 $eps2 $eps3; accuracy $acc1% -> $acc3%"

# --min-noise-multiplier against a run without distributed DP: client 1 refuses the
# task before training and never uploads; the round goes on with client 0
sed -e 's/^num_clients: 5/num_clients: 2/' -e 's/^clients_per_round: 5/clients_per_round: 2/' \
    -e 's/^num_rounds: 3/num_rounds: 1/' -e 's/store: server.db/store: server2.db/' \
    -e '/^secure_aggregation:/,/^  dropout_fraction/d' -e '/^privacy:/,/^  delta/d' server.yaml > server2.yaml
grep -q "privacy\|secure" server2.yaml && fail "server2.yaml: $(cat server2.yaml)"
deploy_server server2.yaml server2.out server2.log
FLOOR0=
client 0 plain0.log
deploy_client 1 plain1.log --max-retries 20 --min-noise-multiplier 0.5
wait $SERVER || fail "the second coordinator exited with $?"
wait ${CLIENT[0]} || fail "client 0 exited with $?"
wait ${CLIENT[1]} || fail "client 1 exited with $?"
grep -q "round 1: refused: the run has privacy.mode none without secure aggregation, and this client's --min-noise-multiplier 0.5" \
  plain1.log || fail "client 1 did not refuse a run without noise"
grep -q "update uploaded" plain1.log && fail "client 1 uploaded its update"
grep -q "^round   1/1 .*clients 1/2 (1 dropped)" server2.out || fail "the round did not go on without client 1: $(cat server2.out)"
echo "ok: a client with --min-noise-multiplier refuses a run without distributed DP"
echo PASS
