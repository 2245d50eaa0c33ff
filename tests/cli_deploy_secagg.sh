#!/usr/bin/env bash
# Secure aggregation over the network: a coordinator and 10 client daemons on
# loopback over TLS with secure_aggregation.enabled. In round 1, clients 2, 5
# and 8 die (SIGKILL, through the daemon's test hook) just before sending their
# stage-2 masked inputs, and client 9 sends a truncated stage-0 message that
# the coordinator refuses with a 4xx and drops. The protocol goes on without
# them, both rounds aggregate the survivors' masked updates, the run reports
# final_accuracy, and the coordinator's log, /api/rounds and /metrics show the
# drop-outs. No client ever uploads its plain update (the uploads are zeros).
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl
N=10
deploy_federation $N --scheme iid --local-test-fraction 0.02 --seed 5

cat > server.yaml <<'YAML'
name: deploy-secagg
seed: 11
dataset: mnist
num_clients: 10
clients_per_round: 10
num_rounds: 2
model: mlp
hidden: "32"
local_epochs: 1
local_steps: 30
batch_size: 32
learning_rate: 0.1
threads: 1
secure_aggregation:
  enabled: true
  clipping_range: 0.5
server:
  round_timeout: 6
  round_retries: 0
  long_poll: 2
  register_timeout: 60
YAML

deploy_server server.yaml
C="curl -s --cacert certs/ca.pem https://127.0.0.1:$PORT"
for i in $(seq 0 $((N - 1))); do
  hook=
  case $i in
    2|5|8) hook=FEDERATE_TEST_DIE_AT_SECAGG_STAGE=2 ;;
    9) hook=FEDERATE_TEST_TRUNCATE_SECAGG_STAGE=0 ;;
  esac
  DEPLOY_WRAP="env $hook" deploy_client $i client$i.log --max-retries 20
done

# the metrics while the run goes on (the last scrape before the coordinator exits is kept)
( while kill -0 $SERVER 2>/dev/null; do m=$($C/metrics 2>/dev/null) && [ -n "$m" ] && echo "$m" > metrics.txt;
    r=$($C/api/rounds 2>/dev/null) && [ -n "$r" ] && echo "$r" > rounds.json; sleep 0.5; done ) &
wait $SERVER || fail "coordinator exited with $?"
for i in 2 5 8; do
  wait ${CLIENT[$i]}; st=$?
  [ $st = 137 ] || fail "client $i was to be killed at stage 2 (exit $st)"
  grep -q "killing myself before stage 2" client$i.log || fail "client $i did not reach stage 2"
done
for i in 0 1 3 4 6 7; do
  wait ${CLIENT[$i]} || fail "client $i exited with $?"
  grep -q "round 1: secure aggregation done" client$i.log || fail "client $i did not finish round 1's protocol"
  grep -q "round 2: secure aggregation done" client$i.log || fail "client $i did not finish round 2's protocol"
  grep -q "the federation finished" client$i.log || fail "client $i did not see the end"
done
wait ${CLIENT[9]}
grep -q "round 1: secure aggregation: POST /v1/secagg/1/0: HTTP 400" client9.log || fail "client 9's truncated message was not refused with HTTP 400"

acc=$(sed -n 's/^final_accuracy: //p' server.out)
[ -n "$acc" ] || fail "no final_accuracy line"
awk -v a="$acc" 'BEGIN { exit !(a > 50) }' || fail "final_accuracy $acc: the masked means did not train the model"
grep -q "round 1: secure aggregation among 10 clients" server.log || fail "round 1 did not start the protocol among 10"
for i in 2 5 8; do
  grep -q "round 1: secure aggregation: client $i dropped out at stage 2" server.log || fail "the log does not show client $i's drop-out"
done
grep -q "rejected (400 secagg).*client 9" server.log || fail "client 9's malformed message was not rejected"
grep -q "round 1: secure aggregation done: 6 of 10 clients in the sum" server.log || fail "round 1 did not sum the 6 survivors"
grep -q "round 2: secure aggregation done: 6 of 7 clients in the sum" server.log || fail "round 2 did not sum the 6 survivors"
grep -q "secure aggregation failed" server.log && fail "a round's secure aggregation failed"
grep -q "^round   1/2 .*clients 6/10 (4 dropped)" server.out || fail "round 1's line lacks 4 dropped: $(grep '^round' server.out)"
grep -q '"dropped":4' rounds.json || fail "/api/rounds lacks round 1's 4 dropped: $(cat rounds.json)"
# the last snapshot polled before the coordinator exited: at least round 1's figures
# (round 2 may end between the last poll and the exit)
metric() { awk -v k="$1" '$1 == k { print $2 }' metrics.txt; }
[ "$(metric federate_secagg_dropped_total)" = 3 ] || fail "metrics: $(grep secagg metrics.txt)"
r=$(metric federate_secagg_refused_total); [ "${r:-0}" -ge 1 ] || fail "metrics: $(grep secagg metrics.txt)"
r=$(metric 'federate_secagg_rounds_total{result="ok"}'); [ "${r:-0}" -ge 1 ] || fail "metrics: $(grep secagg metrics.txt)"
echo "ok: secure aggregation over the network with 3 clients killed and 1 refused; final_accuracy $acc"
echo PASS
