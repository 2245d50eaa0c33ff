#!/usr/bin/env bash
# Secure aggregation's consistency check over the network
# (secure_aggregation.consistency_check: the active-adversary variant): a
# coordinator and 7 client daemons on loopback over TLS, 2 rounds of five stages.
# The clients take their peers' keys from a file the operator exports from the
# allow-list (`federate enroll --export`), never from the coordinator. Client 2
# dies (SIGKILL, the daemon's test hook) just before its signature on U3: its
# masked input stays in round 1's sum. Client 4's pinned file has a wrong key for
# client 0, so it refuses the key list (before sharing anything) and drops out at
# stage 1 in both rounds. Client 6 has no --peer-keys and refuses to train. The
# rounds aggregate the rest; a client whose file pins another key for itself, and
# --require-consistency without --peer-keys, refuse to start.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl
N=7
deploy_federation $N --scheme iid --local-test-fraction 0.02 --seed 5

# the operator's export of the allow-list: the file every client pins
"$BIN" enroll --db clients.db --export peers.txt > export.out || fail "enroll --export"
grep -q "^exported: $N$" export.out || fail "enroll --export: $(cat export.out)"
# a mistyped --db is an error, not an empty export (nor a new, empty allow-list)
"$BIN" enroll --db no-such.db --export none.txt > /dev/null 2> export.err && fail "enroll --export of a missing allow-list succeeded"
grep -q "no allow-list at no-such.db" export.err || fail "enroll --export of a missing allow-list: $(cat export.err)"
[ -e no-such.db ] && fail "enroll --export created the missing allow-list"
[ "$(grep -cv '^#' peers.txt)" = $N ] || fail "peers.txt: $(cat peers.txt)"
for i in $(seq 0 $((N - 1))); do
  grep -q "^$i $(cat k$i.pub)$" peers.txt || fail "peers.txt lacks client $i's key"
done
# a copy with another key for client 0
deploy_keygen kx
sed "s/^0 .*/0 $(cat kx.pub)/" peers.txt > wrong0.txt
cmp -s peers.txt wrong0.txt && fail "wrong0.txt is peers.txt"

# refused at start: a file pinning another key for the client itself; the flag without a file
"$BIN" client --server https://127.0.0.1:1 --id 0 --data parts/client_00000 --key k0 --ca certs/ca.pem \
  --peer-keys wrong0.txt 2> own.log && fail "client 0 started with a file pinning another key for it"
grep -q "pins a different key for client 0" own.log || fail "own key: $(cat own.log)"
"$BIN" client --server https://127.0.0.1:1 --id 0 --data parts/client_00000 --key k0 --ca certs/ca.pem \
  --require-consistency 2> req.log && fail "--require-consistency started without --peer-keys"
grep -q "needs --peer-keys" req.log || fail "--require-consistency: $(cat req.log)"

cat > server.yaml <<'YAML'
name: deploy-secagg-check
seed: 11
dataset: mnist
num_clients: 7
clients_per_round: 7
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
  consistency_check: true
server:
  round_timeout: 5
  round_retries: 0
  long_poll: 2
  register_timeout: 60
YAML

deploy_server server.yaml
for i in $(seq 0 $((N - 1))); do
  hook= flags="--peer-keys peers.txt"
  case $i in
    0) flags="$flags --require-consistency" ;;
    2) hook=FEDERATE_TEST_DIE_AT_SECAGG_STAGE=3 ;;
    4) flags="--peer-keys wrong0.txt" ;;
    6) flags= ;;
  esac
  DEPLOY_WRAP="env $hook" deploy_client $i client$i.log --max-retries 20 $flags
done

wait $SERVER || fail "coordinator exited with $?"
wait ${CLIENT[2]}; st=$?
[ $st = 137 ] || fail "client 2 was to be killed at stage 3 (exit $st)"
grep -q "killing myself before stage 3" client2.log || fail "client 2 did not reach the check stage"
for i in 0 1 3 5; do
  wait ${CLIENT[$i]} || fail "client $i exited with $?"
  for r in 1 2; do
    grep -q "round $r: secure aggregation done (protocol id .*), consistency check passed" client$i.log ||
      fail "client $i did not pass round $r's check"
  done
  grep -q "the federation finished" client$i.log || fail "client $i did not see the end"
done
wait ${CLIENT[4]} || fail "client 4 exited with $?"
for r in 1 2; do
  grep -q "round $r: secure aggregation: the key list does not check out against --peer-keys wrong0.txt; not sharing anything .*: secagg client [0-9]*: the keys of client [0-9]* in the key list are not signed by it" client4.log ||
    fail "client 4 did not refuse round $r's key list"
done
grep -q "consistency check passed" client4.log && fail "client 4 took part despite its wrong key"
wait ${CLIENT[6]} || fail "client 6 exited with $?"
grep -q "round 1: refused: .*no --peer-keys" client6.log || fail "client 6 did not refuse without --peer-keys"

acc=$(sed -n 's/^final_accuracy: //p' server.out)
[ -n "$acc" ] || fail "no final_accuracy line"
awk -v a="$acc" 'BEGIN { exit !(a > 30) }' || fail "final_accuracy $acc: the masked means did not train the model"
grep -q "round 1: secure aggregation among 6 clients (t = 4, 5 neighbours each), with the consistency check" server.log ||
  fail "round 1 did not start the check among 6"
grep -q "round 1: secure aggregation: client 4 dropped out at stage 1" server.log || fail "client 4 did not drop at stage 1"
grep -q "round 1: secure aggregation: client 2 dropped out at stage 3" server.log || fail "client 2 did not drop at stage 3"
grep -q "round 1: secure aggregation done: 5 of 6 clients in the sum" server.log || fail "round 1 did not sum 5 (client 2's input included)"
grep -q "round 2: secure aggregation: client 4 dropped out at stage 1" server.log || fail "client 4 did not drop in round 2"
grep -q "round 2: secure aggregation done: 4 of 5 clients in the sum" server.log || fail "round 2 did not sum the 4 survivors"
grep -q "secure aggregation failed" server.log && fail "a round's secure aggregation failed"
echo "ok: the consistency check over the network with pinned keys, 1 client killed at the check, 1 refusing a wrong key; final_accuracy $acc"
echo PASS
