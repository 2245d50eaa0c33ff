#!/usr/bin/env bash
# The networked deployment end to end on loopback over TLS: certificates, keys
# and enrollment made by the CLI, a coordinator and two client daemons on MNIST
# per-client folders; the global model must equal the simulator's bit for bit
# (same seed and partition); clients also present TLS client certificates
# (server.client_ca). Then the read-only management API and /metrics
# with curl, and kill -9 of the coordinator mid-run: the same command resumes
# from the last completed round and ends with the simulator's model again.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl
deploy_federation 2 --scheme dirichlet --alpha 1 --local-test-fraction 0.1 --seed 5

cat > run.yaml <<'YAML'
name: deploy
seed: 7
dataset: mnist
num_clients: 2
clients_per_round: 2
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 32
learning_rate: 0.1
strategy: fedavgm
server_momentum: 0.5
threads: 1
YAML
{ cat run.yaml; cat <<'YAML'; } > server.yaml
server:
  client_ca: certs/ca.pem
  round_timeout: 30
  long_poll: 2
YAML
{ cat run.yaml; echo "data_dir: parts"; } > sim.yaml

start_clients() {
  for i in 0 1; do
    deploy_client $i client$i.log --cert certs/client-$i.pem --cert-key certs/client-$i-key.pem --compress
  done
}

# 1. a whole run over TLS equals the simulation
deploy_server server.yaml
start_clients
wait $SERVER || fail "coordinator exited with $?"
for i in 0 1; do wait ${CLIENT[$i]} || fail "client $i exited with $?"; done
tail -3 server.out
acc=$(sed -n 's/^final_accuracy: //p' server.out)
[ -n "$acc" ] || fail "no final_accuracy line"
[ "$(tail -1 server.out | cut -d: -f1)" = final_accuracy ] || fail "final_accuracy is not the last line"
grep -q "clients 2/2 (0 dropped)" server.out || fail "round lines lack clients 2/2"
grep -q "the federation finished" client0.log || fail "client 0 did not see the end"
sim=$("$BIN" run sim.yaml --db sim.db) || fail "simulation failed"
sacc=$(echo "$sim" | sed -n 's/^final_accuracy: //p')
[ "$acc" = "$sacc" ] || fail "deployment accuracy $acc != simulation $sacc"
if command -v sqlite3 >/dev/null; then
  a=$(sqlite3 server.db "select hex(model) from checkpoints where run_id=1" | sha256sum)
  b=$(sqlite3 sim.db "select hex(model) from checkpoints where run_id=1" | sha256sum)
  [ "$a" = "$b" ] || fail "the deployed global model differs from the simulated one"
fi
echo "ok: deployment == simulation (final_accuracy $acc)"

# 2. the management API and metrics (a second coordinator on the same store: the run is finished, so a new one)
cat >> server.yaml <<'YAML'
  register_timeout: 60
YAML
sed -i 's/^num_rounds: 3/num_rounds: 8/' server.yaml sim.yaml
deploy_server server.yaml
C="curl -s --cacert certs/ca.pem https://127.0.0.1:$PORT"
$C/api/status | grep -q '"phase":"waiting"' || fail "status before registration: $($C/api/status)"
# mutual TLS (server.client_ca): no client certificate, no /v1 access
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert certs/ca.pem -X POST https://127.0.0.1:$PORT/v1/register)" = 403 ] ||
  fail "a request without a client certificate was not refused"
start_clients
for _ in $(seq 1 200); do grep -q "^round   1/8" server.out && break; sleep 0.05; done
grep -q "^round   1/8" server.out || fail "no round 1 in the second run"
st=$($C/api/status); echo "$st" | grep -q '"num_clients":2' || fail "status: $st"
$C/api/clients | grep -q '"train_examples"' || fail "clients: $($C/api/clients)"
$C/api/rounds | grep -q '"round":1' || fail "rounds: $($C/api/rounds)"
$C/api/rounds/1 | grep -q '"clients":\[' || fail "round 1: $($C/api/rounds/1)"
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert certs/ca.pem https://127.0.0.1:$PORT/api/rounds/999)" = 404 ] || fail "missing round not 404"
m=$($C/metrics)
for k in federate_rounds_completed_total federate_clients_connected federate_updates_accepted_total \
         'federate_updates_rejected_total{reason="bad_signature"}' federate_bytes_received_total \
         federate_bytes_sent_total federate_round_duration_seconds_sum; do
  echo "$m" | grep -qF "$k" || fail "metrics lack $k"
done
# changes need the bearer token (none configured: read-only)
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert certs/ca.pem -X POST https://127.0.0.1:$PORT/api/stop)" = 403 ] || fail "stop without a token accepted"
# plain HTTP to the TLS port does not work
curl -s -m 3 http://127.0.0.1:$PORT/api/status | grep -q phase && fail "plaintext answered on the TLS port"

# 3. kill -9 the coordinator mid-run; the same command resumes and ends where the simulation ends
kill -9 $SERVER
wait $SERVER 2>/dev/null
[ "$(grep -c '^final_accuracy' server.out)" = 1 ] || fail "run 2 ended before the kill"
done_before=$(grep -c "^round .*/8" server.out)
sed -i "s/listen: 127.0.0.1:0/listen: 127.0.0.1:$PORT/" server.yaml
deploy_server server.yaml
wait $SERVER || fail "resumed coordinator exited with $?"
for i in 0 1; do wait ${CLIENT[$i]} || fail "client $i exited with $?"; done
grep -q "resuming run 2" server.log || fail "the coordinator did not resume run 2"
acc=$(tail -1 server.out | sed -n 's/^final_accuracy: //p')
sim=$("$BIN" run sim.yaml --db sim.db) || fail "simulation 2 failed"
sacc=$(echo "$sim" | sed -n 's/^final_accuracy: //p')
[ "$acc" = "$sacc" ] || fail "resumed accuracy $acc != simulation $sacc"
if command -v sqlite3 >/dev/null; then
  a=$(sqlite3 server.db "select hex(model) from checkpoints where run_id=2" | sha256sum)
  b=$(sqlite3 sim.db "select hex(model) from checkpoints where run_id=2" | sha256sum)
  [ "$a" = "$b" ] || fail "the resumed global model differs from the simulated one"
fi
echo "ok: killed after $done_before round(s), resumed, final_accuracy $acc == simulation"
echo PASS
