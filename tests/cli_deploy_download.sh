#!/usr/bin/env bash
# Compressed downloads on the wire: with `download_compression: q8,zstd` the
# coordinator sends each fit client the global model as a codec frame (a U8
# tensor "federate.model"): a delta against the copy the client holds (named by
# its SHA-256 in X-Federate-Model-Base) or, when the client holds none or
# another one, the full model. Both sides keep that copy on disk.
# 1. Coordinator and three daemons over TLS for 3 rounds: the run ends with the
#    simulator's final accuracy (the same frames, the same decoded copies), and
#    bytes_down is below that of the same run without download compression.
# 2. A daemon killed with SIGKILL and restarted with its state folder deleted
#    asks for the model with "none", gets the full frame and trains on: every
#    round completes with both clients.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init
deploy_federation 3 --scheme iid --seed 5
# mlp 784-32-10: 25450 parameters, 101800 bytes as float32
cat > run.yaml <<'YAML'
name: download
seed: 5
dataset: mnist
num_clients: 3
clients_per_round: 3
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
local_steps: 60
batch_size: 32
learning_rate: 0.1
download_compression: q8,zstd
threads: 1
YAML
server_yaml() {  # server_yaml RUNYAML STORE > server.yaml
  cat "$1"; cat <<YAML
server:
  store: $2
  round_timeout: 50
  long_poll: 2
YAML
}
client() {  # client ID STATEDIR LOG
  deploy_client $1 "$3" --state-dir "$2"
}

# 1. three daemons, download compression
server_yaml run.yaml server.db > server.yaml
deploy_server server.yaml server.out server.log
for i in 0 1 2; do client $i state$i client$i.log; done
wait $SERVER || fail "coordinator exited with $?"
wait
grep -q "^round   3/3 .*clients 3/3 (0 dropped)" server.out || fail "round 3: $(grep '^round' server.out)"
ls state0/run_*_download/client_000000.state > /dev/null 2>&1 || fail "client 0 kept no copy of the model in its state dir"
ls server.db.state/run_*_download/client_000002.state > /dev/null 2>&1 || fail "the coordinator kept no reference copy of client 2"
grep -q "sending the full model" server.log && fail "a client got a full frame in an undisturbed run: $(grep 'full model' server.log)"
acc=$(sed -n 's/^final_accuracy: //p' server.out)
{ cat run.yaml; echo "data_dir: parts"; echo "state_dir: sim-state"; } > sim.yaml
sacc=$("$BIN" run sim.yaml --db sim.db | sed -n 's/^final_accuracy: //p') || fail "simulation failed"
[ -n "$acc" ] && [ "$acc" = "$sacc" ] || fail "deployment final_accuracy '$acc' != simulation '$sacc'"
echo "ok: 3 rounds with q8,zstd downloads; final_accuracy $acc, as in simulation"
down=$(sed -n 's/^bytes_down: //p' server.out)

# the same run without download compression: more bytes down
grep -v '^download_compression' run.yaml > plain.yaml
server_yaml plain.yaml plain.db > server_plain.yaml
deploy_server server_plain.yaml plain.out plain.log
for i in 0 1 2; do client $i pstate$i pclient$i.log; done
wait $SERVER || fail "plain coordinator exited with $?"
wait
pdown=$(sed -n 's/^bytes_down: //p' plain.out)
[ -n "$down" ] && [ -n "$pdown" ] && [ "$down" -gt 0 ] || fail "bytes_down missing: '$down' / '$pdown'"
[ $(( down * 2 )) -lt "$pdown" ] || fail "bytes_down $down with q8,zstd is not below half of $pdown without"
echo "ok: bytes_down $down with download compression, $pdown without"

# 2. a daemon restarted without its state: two clients, 3 rounds. Client 0 is
#    held with SIGSTOP once registered, so round 1 stays open (nothing here
#    depends on timing) while client 1 delivers round 1, is killed, loses its
#    state folder and comes back; round 2 then finds it without a copy.
sed -e 's/^num_clients: 3/num_clients: 2/' -e 's/^clients_per_round: 3/clients_per_round: 2/' run.yaml > run2.yaml
server_yaml run2.yaml server2.db > server2.yaml
deploy_server server2.yaml server2.out server2.log
client 0 r0 r0.log
C0=$!
for _ in $(seq 1 300); do grep -q "registered" r0.log && break; sleep 0.1; done
grep -q "registered" r0.log || fail "client 0 did not register"
kill -STOP $C0
client 1 r1 r1.log
C1=$!
for _ in $(seq 1 600); do grep -q "round 1: .*uploaded" r1.log && break; sleep 0.1; done
grep -q "round 1: .*uploaded" r1.log || { kill -CONT $C0; fail "client 1 did not deliver round 1"; }
kill -9 $C1
wait $C1 2> /dev/null
ls r1/run_*_download/client_000001.state > /dev/null 2>&1 || { kill -CONT $C0; fail "client 1 kept no copy in round 1"; }
rm -rf r1
client 1 r1 r1b.log
kill -CONT $C0
wait $SERVER || fail "restart coordinator exited with $?"
wait
for r in 1 2 3; do
  grep -q "^round   $r/3 .*clients 2/2 (0 dropped)" server2.out || fail "restart run, round $r: $(grep '^round' server2.out)"
done
grep -q "client 1 holds no copy of the model; sending the full model" server2.log || fail "no full-model fallback logged for client 1"
ls r1/run_*_download/client_000001.state > /dev/null 2>&1 || fail "the restarted client kept no copy"
acc2=$(sed -n 's/^final_accuracy: //p' server2.out)
awk -v a="$acc2" 'BEGIN { exit !(a + 0 > 80) }' || fail "restart run final_accuracy '$acc2' is not above 80%"
echo "ok: client 1 restarted without state got the full model and trained on; final_accuracy $acc2"
echo PASS
