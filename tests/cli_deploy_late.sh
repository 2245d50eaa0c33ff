#!/usr/bin/env bash
# Late registration: with server.min_registered: 2 the coordinator starts round 1
# with the first two of four clients; the other two register while round 1 is
# open and take part from round 2 on. Round 1 is held open by stopping client 0
# (SIGSTOP) right after it registered, so the test depends on no timing: the
# late clients register before client 0 is continued and round 1 can close.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl
deploy_federation 4 --scheme iid --seed 3
cat > server.yaml <<'YAML'
seed: 3
dataset: mnist
num_clients: 4
clients_per_round: 4
min_clients: 2
num_rounds: 3
model: mlp
hidden: "16"
local_epochs: 1
batch_size: 50
threads: 1
server:
  min_registered: 2
  round_timeout: 50
  long_poll: 2
YAML
deploy_server server.yaml
status() { curl -s --cacert certs/ca.pem "$URL/api/status"; }
wait_for() {  # wait_for PATTERN WHAT: polls /api/status (at most 30 s)
  for _ in $(seq 1 300); do status | grep -q "$1" && return 0; sleep 0.1; done
  fail "$2: $(status)"
}
client() { deploy_client "$1" client$1.log; }

client 0; C0=$!
wait_for '"clients_registered":1' "client 0 did not register"
kill -STOP $C0
client 1
wait_for '"round":1,.*"round_open":true' "round 1 did not start with two clients registered"
status | grep -q '"phase":"running"' || fail "not running: $(status)"
status | grep -q '"selected":2' || fail "round 1 should select the two registered clients: $(status)"
echo "ok: round 1 started with 2 of 4 clients registered: $(status | grep -o '"clients_registered":[0-9]*'), selected 2"
client 2; client 3
wait_for '"clients_registered":4' "the late clients did not register"
status | grep -q '"round":1,' || fail "round 1 closed while client 0 was stopped: $(status)"
echo "ok: clients 2 and 3 registered during round 1"
kill -CONT $C0
wait $SERVER || fail "coordinator exited with $?"
wait
grep -q "^round   1/3 .*clients 2/2 (0 dropped)" server.out || fail "round 1: $(grep '^round' server.out)"
grep -q "^round   2/3 .*clients 4/4 (0 dropped)" server.out || fail "round 2 lacks the late clients: $(grep '^round' server.out)"
grep -q "^round   3/3 .*clients 4/4 (0 dropped)" server.out || fail "round 3 lacks the late clients: $(grep '^round' server.out)"
grep -q "starting with 2 of 4 clients registered" server.log || fail "no late-start line in the log"
# the store: the late clients' updates were recorded in round 3
"$BIN" runs show 1 --db server.db --clients > show.out || fail "runs show"
for c in 2 3; do
  grep -qE "^ +$c +no +" show.out || fail "client $c not in round 3 of the store: $(cat show.out)"
  grep -q "round 2: .*update uploaded" client$c.log || fail "client $c did not upload in round 2"
done
echo "ok: $(grep '^round   1/3' server.out | cut -c1-60)"
echo "ok: $(grep '^round   3/3' server.out | cut -c1-60)"
tail -1 server.out | grep -q "^final_accuracy: " || fail "no final_accuracy"
echo PASS
