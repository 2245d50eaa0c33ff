#!/usr/bin/env bash
# Replay protection survives a coordinator restart: an upload accepted in round
# 1 is captured (headers and body), the coordinator is killed with kill -9 before
# round 1 completes and started again with the same command; it resumes round 1
# (so the upload's run and round are open again) and the captured upload,
# replayed within the timestamp window, is refused with 403 "replay" because its
# nonce is in the store. The same body signed afresh is accepted. Both clients
# are this script (curl + openssl), as in cli_deploy_curl.sh.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl openssl
hex() { od -An -tx1 -v | tr -d ' \n'; }

deploy_certs
for i in 0 1; do
  openssl genpkey -algorithm ed25519 -out c$i.pem 2> /dev/null || { echo "openssl lacks ed25519: skipped"; exit 77; }
  PUB=$(openssl pkey -in c$i.pem -pubout -outform DER | tail -c 32 | hex)
  "$BIN" enroll --db clients.db --id $i --public-key "$PUB" > /dev/null || fail "enroll $i"
done
cat > server.yaml <<'YAML'
seed: 1
dataset: mnist
num_clients: 2
clients_per_round: 2
min_clients: 1
num_rounds: 2
model: mlp
hidden: "16"
threads: 1
server:
  round_timeout: 50
  long_poll: 1
YAML

# req METHOD PATH RUN ROUND BODYFILE CLIENT: a signed request; prints the status, body in resp
req() {
  local id=$6 ts nonce sum sig
  ts=$(date +%s)
  nonce=$(head -c 16 /dev/urandom | hex)
  sum=$(sha256sum < "$5" | cut -d' ' -f1)
  printf 'federate-v1\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s' "$1" "$2" "$3" "$4" "$id" "$ts" "$nonce" "$sum" > msg
  sig=$(openssl pkeyutl -sign -inkey c$id.pem -rawin -in msg | hex)
  printf 'X-Federate-Client: %s\nX-Federate-Timestamp: %s\nX-Federate-Nonce: %s\nX-Federate-Signature: %s\nX-Federate-Run: %s\nX-Federate-Round: %s\n' \
    "$id" "$ts" "$nonce" "$sig" "$3" "$4" > hdrs
  send "$1" "$2" "$5" hdrs
}
send() {  # send METHOD PATH BODYFILE HEADERFILE
  if [ "$1" = GET ]; then curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -H @"$4" "$URL$2"
  else curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST -H 'Content-Type: application/octet-stream' \
         -H @"$4" --data-binary @"$3" "$URL$2"; fi
}
expect() {  # expect CODE TEXT-IN-BODY WHAT
  [ "$got" = "$1" ] || fail "$3: HTTP $got (expected $1): $(cat resp)"
  grep -q "$2" resp || fail "$3: body lacks '$2': $(cat resp)"
  echo "ok: $3 -> $got $(head -c 150 resp)"
}
register_both() {
  for i in 0 1; do got=$(req POST /v1/register 0 0 reg.json $i); expect 200 '"config"' "register client $i"; done
}
task0() {  # waits for client 0's fit task of round 1; sets RUN
  for _ in $(seq 1 20); do got=$(req GET /v1/task 0 0 empty 0); [ "$got" = 200 ] && break; done
  expect 200 '"kind":"fit"' "client 0's task"
  RUN=$(sed -n 's/.*"run_id":\([0-9]*\).*/\1/p' resp)
  grep -q '"round":1,' resp || fail "the task is not for round 1: $(cat resp)"
}
: > empty
echo '{"protocol": 1, "train_examples": 100, "test_examples": 0}' > reg.json

deploy_server server.yaml
register_both
task0
got=$(req GET /v1/model "$RUN" 1 empty 0); [ "$got" = 200 ] || fail "model: $got $(cat resp)"
cp resp model.st
# a valid update: the model's header with our metadata, data all zeros
HL=$(od -An -tu8 -N8 model.st | tr -d ' ')
dd if=model.st of=header bs=1 skip=8 count="$HL" 2> /dev/null
DATA=$(( $(stat -c %s model.st) - 8 - HL ))
META='"__metadata__":{"num_examples":"100","steps":"2","lr":"0.1","loss_before":"nan","train_loss":"0.5","train_accuracy":"nan","update_norm":"0",'
h=$(sed 's/"__metadata__":{/'"$META"'/' header); n=${#h}; pad=$(( (8 - n % 8) % 8 ))
h="$h$(printf '%*s' $pad '')"; n=$(( n + pad ))
: > up.st
for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (n >> (8 * i)) & 255 )))" >> up.st; done
printf '%s' "$h" >> up.st
head -c "$DATA" /dev/zero >> up.st

got=$(req POST /v1/result "$RUN" 1 up.st 0); expect 200 '"accepted":true' "client 0's update for round 1"
cp hdrs captured
got=$(send POST /v1/result up.st captured); expect 403 "nonce" "replay before the restart"

# kill -9 mid-round 1 (client 1 never uploaded), restart with the same command
kill -9 $SERVER; wait $SERVER 2> /dev/null
deploy_server server.yaml
got=$(send POST /v1/result up.st captured); expect 403 "nonce .* was already used" "replay right after the restart"
register_both
task0
grep -q "resuming run $RUN" server.log || fail "the restarted coordinator did not resume run $RUN"
got=$(send POST /v1/result up.st captured); expect 403 "replay" "replay into the resumed round 1"
curl -s --cacert certs/ca.pem "$URL/metrics" | grep -q '^federate_requests_rejected_total{reason="replay"} [1-9]' ||
  fail "replays not counted in /metrics"
# the body itself is fine: signed afresh it is accepted
got=$(req POST /v1/result "$RUN" 1 up.st 0); expect 200 '"accepted":true' "the same update signed afresh"
kill -9 $SERVER; wait $SERVER 2> /dev/null
echo PASS
