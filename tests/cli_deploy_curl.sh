#!/usr/bin/env bash
# The coordinator driven with curl alone (signatures made with openssl), as a
# client written from docs/protocol.md would: register, long-poll, fetch the
# model, upload. Bad input gets a 4xx that says what is wrong and is counted in
# /metrics: unsigned, wrongly signed, replayed, unknown client, garbage,
# NaN, an update norm above the bound, an oversized body, a late result; the
# coordinator keeps serving and the round completes with the honest client.
# The management API needs the bearer token to stop the run.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl openssl
hex() { od -An -tx1 -v | tr -d ' \n'; }

deploy_certs
deploy_enroll 0
# client 1 is this script: an Ed25519 key made by openssl, enrolled by its raw public key
openssl genpkey -algorithm ed25519 -out c1.pem 2> /dev/null || { echo "openssl lacks ed25519: skipped"; exit 77; }
PUB=$(openssl pkey -in c1.pem -pubout -outform DER | tail -c 32 | hex)
"$BIN" enroll --db clients.db --id 1 --public-key "$PUB" > /dev/null || fail "enroll 1"
openssl genpkey -algorithm ed25519 -out other.pem 2> /dev/null
deploy_partition 2 --scheme iid --seed 1
head -c 24 /dev/urandom | hex > token

cat > server.yaml <<'YAML'
seed: 1
dataset: mnist
num_clients: 2
clients_per_round: 2
min_clients: 1
num_rounds: 4
model: mlp
hidden: "16"
local_epochs: 1
batch_size: 50
threads: 1
server:
  token_file: token
  round_timeout: 15   # generous: a loaded machine must not close round 1 before the scripted uploads
  round_retries: 0
  long_poll: 2
  max_body_bytes: 200000
  max_update_norm: 50
YAML
deploy_server server.yaml
deploy_client 0 client0.log

# req METHOD PATH RUN ROUND BODYFILE [KEY] [CLIENT]: a signed request; prints the status, body in resp
req() {
  local key=${6:-c1.pem} id=${7:-1} ts nonce sum sig
  ts=$(date +%s)
  nonce=$(head -c 16 /dev/urandom | hex)
  sum=$(sha256sum < "$5" | cut -d' ' -f1)
  printf 'federate-v1\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s' "$1" "$2" "$3" "$4" "$id" "$ts" "$nonce" "$sum" > msg
  sig=$(openssl pkeyutl -sign -inkey "$key" -rawin -in msg | hex)
  printf 'X-Federate-Client: %s\nX-Federate-Timestamp: %s\nX-Federate-Nonce: %s\nX-Federate-Signature: %s\nX-Federate-Run: %s\nX-Federate-Round: %s\n' \
    "$id" "$ts" "$nonce" "$sig" "$3" "$4" > hdrs
  send "$1" "$2" "$5"
}
send() {  # (re)sends with the headers of the last req
  # POSTs ask for 100-continue, as libcurl does for large bodies: a body the
  # coordinator refuses from its headers (413) is then never sent, and the answer
  # cannot be lost to a connection closed mid-upload
  if [ "$1" = GET ]; then curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -H @hdrs "$URL$2"
  else curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST -H 'Content-Type: application/octet-stream' \
         -H 'Expect: 100-continue' -H @hdrs --data-binary @"$3" "$URL$2"; fi
}
expect() {  # expect CODE TEXT-IN-BODY WHAT
  [ "$got" = "$1" ] || fail "$3: HTTP $got (expected $1): $(cat resp)"
  grep -q "$2" resp || fail "$3: body lacks '$2': $(cat resp)"
  echo "ok: $3 -> $got $(head -c 150 resp)"
}
: > empty

got=$(curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST --data-binary '{}' "$URL/v1/register")
expect 401 "unsigned" "unsigned register"
echo '{"protocol": 1, "train_examples": 100, "test_examples": 0}' > reg.json
got=$(req POST /v1/register 0 0 reg.json other.pem); expect 401 "bad signature" "register signed with another key"
got=$(req POST /v1/register 0 0 reg.json c1.pem 7); expect 403 "unknown client" "unknown client id"
echo '{"protocol": 1, "train_examples": ' > bad.json
got=$(req POST /v1/register 0 0 bad.json); expect 400 "not a JSON object" "malformed JSON"
got=$(req POST /v1/register 0 0 reg.json); expect 200 '"config"' "register"
got=$(send POST /v1/register reg.json); expect 403 "replayed" "replayed register (same nonce)"

# the first task
for _ in 1 2 3 4 5 6 7 8 9 10; do got=$(req GET /v1/task 0 0 empty); [ "$got" = 200 ] && break; done
expect 200 '"kind":"fit"' "task"
RUN=$(sed -n 's/.*"run_id":\([0-9]*\).*/\1/p' resp)
ROUND=$(sed -n 's/.*"round":\([0-9]*\).*/\1/p' resp)
[ "$ROUND" = 1 ] || fail "first task is for round $ROUND"
got=$(req GET /v1/model "$RUN" 1 empty); [ "$got" = 200 ] || fail "model: $got $(cat resp)"
cp resp model.st

head -c 5000 /dev/urandom > garbage
got=$(req POST /v1/result "$RUN" 1 garbage); expect 400 "safetensors\|header" "garbage upload"
got=$(send POST /v1/result garbage); expect 403 "replayed" "replayed upload (same nonce)"
head -c 300000 /dev/zero > big
got=$(req POST /v1/result "$RUN" 1 big); expect 413 "max_body_bytes" "oversized upload"
# the model's own bytes as an update: names and shapes are right, metadata is not
got=$(req POST /v1/result "$RUN" 1 model.st); expect 400 "num_examples" "upload without metadata"

# a well-formed update: header with our metadata, data all zeros (or one NaN)
HL=$(od -An -tu8 -N8 model.st | tr -d ' ')
dd if=model.st of=header bs=1 skip=8 count="$HL" 2> /dev/null
DATA=$(( $(stat -c %s model.st) - 8 - HL ))
META='"__metadata__":{"num_examples":"100","steps":"2","lr":"0.1","loss_before":"nan","train_loss":"0.5","train_accuracy":"nan","update_norm":"0",'
mk() {  # mk OUT DATAFILE [NORM_OK]
  local h; h=$(sed 's/"__metadata__":{/'"$META"'/' header)
  local n=${#h}
  local pad=$(( (8 - n % 8) % 8 )); h="$h$(printf '%*s' $pad '')"; n=$(( n + pad ))
  : > "$1"
  for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (n >> (8 * i)) & 255 )))" >> "$1"; done
  printf '%s' "$h" >> "$1"
  cat "$2" >> "$1"
}
head -c "$DATA" /dev/zero > zeros
head -c "$DATA" /dev/zero | tr '\0' '?' > weights   # every float 0x3f3f3f3f = 0.75: norm ~ 0.75 sqrt(n)
cp zeros nan; printf '\x00\x00\xc0\x7f' | dd of=nan bs=1 seek=8 conv=notrunc 2> /dev/null
mk up_nan.st nan; mk up_big.st weights; mk up_ok.st zeros
got=$(req POST /v1/result "$RUN" 1 up_nan.st); expect 400 "NaN" "update with a NaN"
got=$(req POST /v1/result "$RUN" 1 up_big.st); expect 422 "max_update_norm" "update norm above the bound"
got=$(req POST /v1/result "$RUN" 2 up_ok.st); expect 409 "no fit task for round 2" "upload for a future round"
got=$(req POST /v1/result $((RUN + 1)) 1 up_ok.st); expect 409 "run" "upload for another run"
got=$(req POST /v1/result "$RUN" 1 up_ok.st); expect 200 '"accepted":true' "valid update"
got=$(req POST /v1/result "$RUN" 1 up_ok.st); expect 403 "already delivered" "replayed update (fresh nonce, same round)"

# round 1 completes with both; round 2 then goes on without us (late after its deadline)
for _ in $(seq 1 100); do grep -q "^round   1/4" server.out && break; sleep 0.1; done
grep -q "^round   1/4 .*clients 2/2" server.out || fail "round 1 did not complete with both clients: $(cat server.out)"
for _ in $(seq 1 300); do grep -q "^round   2/4" server.out && break; sleep 0.1; done
grep -q "^round   2/4 .*clients 1/2 (1 dropped)" server.out || fail "round 2 did not complete without us: $(cat server.out)"
got=$(req POST /v1/result "$RUN" 2 up_ok.st); expect 409 "late result" "late update"

# metrics count the rejections by reason
curl -s --cacert certs/ca.pem "$URL/metrics" > metrics
for r in unsigned bad_signature unknown_client replay too_large malformed_body non_finite norm late; do
  v=$(sed -n "s/^federate_requests_rejected_total{reason=\"$r\"} //p" metrics)
  [ "${v:-0}" -ge 1 ] || fail "metrics: reason $r not counted: $(grep rejected metrics)"
done
grep -q '^federate_updates_accepted_total [1-9]' metrics || fail "no accepted updates counted"
echo "ok: rejections counted in /metrics"

# management: stop needs the bearer token
got=$(curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST "$URL/api/stop"); expect 401 "Bearer" "stop without a token"
got=$(curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST -H "Authorization: Bearer wrongwrongwrongwrong" "$URL/api/stop")
expect 401 "wrong bearer token" "stop with a wrong token"
got=$(curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST -H "Authorization: Bearer $(cat token)" "$URL/api/stop")
expect 200 "stopping" "stop with the token"
wait $SERVER || fail "coordinator exited with $?"
grep -q "^stopped after round" server.out || fail "no stop line: $(cat server.out)"
echo PASS
