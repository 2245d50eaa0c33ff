#!/usr/bin/env bash
# Faults in a networked federation on loopback over TLS: a client that is not
# enrolled and one with the wrong key are refused (and exit saying why); a
# client killed with kill -9 mid-run costs only its own update (the round
# completes at its deadline with min_clients); a fresh daemon for it rejoins.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init
deploy_certs
deploy_enroll 0 1
deploy_keygen k2 kbad   # client 2 is enrolled later; kbad never
deploy_partition 3 --scheme iid --seed 2
cat > server.yaml <<'YAML'
seed: 2
dataset: mnist
num_clients: 3
clients_per_round: 3
min_clients: 2
num_rounds: 5
model: mlp
hidden: "16"
local_epochs: 1
batch_size: 50
threads: 1
server:
  round_timeout: 4
  round_retries: 1
  long_poll: 2
YAML
deploy_server server.yaml
client() {  # client ID KEY LOG
  exec "$BIN" client --server "$URL" --id "$1" --data parts/client_0000$1 --key "$2" --ca certs/ca.pem --max-retries 5 2>> "$3"
}
client 0 k0 client0.log &
client 1 k1 client1.log &

# not enrolled: refused with 403, the daemon says so and exits
timeout 20 bash -c "$(declare -f client); BIN='$BIN' URL='$URL' client 2 k2 unenrolled.log" && fail "an unenrolled client kept running"
grep -q "not enrolled" unenrolled.log || fail "unenrolled client: $(cat unenrolled.log)"
echo "ok: unenrolled client refused: $(grep -o 'HTTP 403.*' unenrolled.log | head -1)"
"$BIN" enroll --db clients.db --id 2 --public-key k2.pub > /dev/null || fail "enroll 2"
# enrolled, but the wrong key: refused with 401
timeout 20 bash -c "$(declare -f client); BIN='$BIN' URL='$URL' client 2 kbad wrongkey.log" && fail "a client with the wrong key kept running"
grep -q "bad signature" wrongkey.log || fail "wrong key: $(cat wrongkey.log)"
echo "ok: wrong key refused: $(grep -o 'HTTP 401.*' wrongkey.log | head -1)"
client 2 k2 client2.log &
C2=$!
for _ in $(seq 1 300); do grep -q "^round   1/5" server.out && break; sleep 0.05; done
grep -q "^round   1/5 .*clients 3/3" server.out || fail "round 1 lacks a client: $(cat server.out)"
kill -9 $C2
echo "ok: client 2 killed with kill -9 after round 1"
for _ in $(seq 1 300); do grep -q "(1 dropped)" server.out && break; sleep 0.05; done
grep -q "clients 2/3 (1 dropped)" server.out || fail "no round completed without the killed client: $(cat server.out)"
echo "ok: $(grep '(1 dropped)' server.out | head -1 | cut -c1-70)"
client 2 k2 client2b.log &
wait $SERVER || fail "coordinator exited with $?"
wait
tail -1 server.out | grep -q "^final_accuracy: " || fail "no final_accuracy"
grep -q "^round   5/5 .*clients 3/3" server.out || fail "the restarted client did not rejoin: $(cat server.out)"
grep -q "registered" client2b.log || fail "restarted client 2 did not register"
echo "ok: restarted client 2 rejoined; $(tail -1 server.out)"
echo PASS
