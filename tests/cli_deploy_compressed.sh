#!/usr/bin/env bash
# Compressed updates on the wire: with `compression: q4,zstd` the client daemons
# upload their update as the codec frame (a U8 tensor "federate.update", error
# feedback kept on the client's disk) and the coordinator decodes it.
# 1. Coordinator and two daemons over TLS for 2 rounds: the run ends with the
#    simulator's final accuracy (the coordinator aggregates exactly what the
#    simulator's compress stage decodes), and bytes_up is a fraction of the
#    uncompressed updates.
# 2. A client written with curl and openssl: malformed frames (garbage, a
#    truncated header, a frame of another codec, a frame tensor of the wrong
#    dtype) get 400 naming what is wrong and are counted by reason; an update
#    sent as plain F32 tensors is still accepted.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init curl openssl
hex() { od -An -tx1 -v | tr -d ' \n'; }
le() {  # le VALUE BYTES: little-endian bytes on stdout
  for ((i = 0; i < $2; i++)); do printf "\\$(printf '%03o' $(( ($1 >> (8 * i)) & 255 )))"; done
}

deploy_federation 2 --scheme iid --seed 4
# mlp 784-32-10: 25450 parameters, 101800 bytes as float32
cat > run.yaml <<'YAML'
name: compressed
seed: 4
dataset: mnist
num_clients: 2
clients_per_round: 2
num_rounds: 2
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 32
learning_rate: 0.1
compression: q4,zstd
threads: 1
YAML
{ cat run.yaml; cat <<'YAML'; } > server.yaml
server:
  round_timeout: 50
  long_poll: 2
YAML
{ cat run.yaml; echo "data_dir: parts"; echo "state_dir: sim-state"; } > sim.yaml

# 1. two daemons
deploy_server server.yaml
for i in 0 1; do deploy_client $i client$i.log --state-dir state$i; done
wait $SERVER || fail "coordinator exited with $?"
wait
grep -q "^round   2/2 .*clients 2/2 (0 dropped)" server.out || fail "round 2: $(grep '^round' server.out)"
ls -d state0/run_*_residual > /dev/null 2>&1 || fail "client 0 kept no error-feedback residual in its state dir"
acc=$(sed -n 's/^final_accuracy: //p' server.out)
sacc=$("$BIN" run sim.yaml --db sim.db | sed -n 's/^final_accuracy: //p') || fail "simulation failed"
[ -n "$acc" ] && [ "$acc" = "$sacc" ] || fail "deployment final_accuracy '$acc' != simulation '$sacc'"
echo "ok: 2 rounds with q4,zstd uploads; final_accuracy $acc, as in simulation"
for r in 1 2; do
  up=$(sed -n "s/^round   $r\/2 .* up \([0-9]*\) B .*/\1/p" server.out)
  [ -n "$up" ] && [ "$up" -gt 0 ] || fail "no bytes_up for round $r: $(grep '^round' server.out)"
  [ $(( up * 5 )) -lt $(( 2 * 101800 )) ] || fail "round $r: bytes_up $up is not < 1/5 of two float32 updates (203600)"
  echo "ok: round $r bytes_up $up for 2 updates (float32: 203600)"
done

# 2. malformed frames from a curl client (client 0 of a one-client federation)
openssl genpkey -algorithm ed25519 -out c0.pem 2> /dev/null || { echo "openssl lacks ed25519: skipped"; exit 77; }
PUB=$(openssl pkey -in c0.pem -pubout -outform DER | tail -c 32 | hex)
"$BIN" enroll --db clients2.db --id 0 --public-key "$PUB" > /dev/null || fail "enroll curl client"
sed -e 's/^num_clients: 2/num_clients: 1/' -e 's/^clients_per_round: 2/clients_per_round: 1/' \
    -e 's/^num_rounds: 2/num_rounds: 1/' -e 's/store: server.db/store: server2.db/' -e 's/clients.db/clients2.db/' \
    server.yaml > server2.yaml
deploy_server server2.yaml server2.out server2.log
req() {  # req METHOD PATH RUN ROUND BODYFILE: signed; prints the status, body in resp
  local ts nonce sum sig
  ts=$(date +%s)
  nonce=$(head -c 16 /dev/urandom | hex)
  sum=$(sha256sum < "$5" | cut -d' ' -f1)
  printf 'federate-v1\n%s\n%s\n%s\n%s\n0\n%s\n%s\n%s' "$1" "$2" "$3" "$4" "$ts" "$nonce" "$sum" > msg
  sig=$(openssl pkeyutl -sign -inkey c0.pem -rawin -in msg | hex)
  printf 'X-Federate-Client: 0\nX-Federate-Timestamp: %s\nX-Federate-Nonce: %s\nX-Federate-Signature: %s\nX-Federate-Run: %s\nX-Federate-Round: %s\n' \
    "$ts" "$nonce" "$sig" "$3" "$4" > hdrs
  if [ "$1" = GET ]; then curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -H @hdrs "$URL$2"
  else curl -s -o resp -w '%{http_code}' --cacert certs/ca.pem -X POST -H @hdrs --data-binary @"$5" "$URL$2"; fi
}
expect() {  # expect CODE TEXT-IN-BODY WHAT
  [ "$got" = "$1" ] || fail "$3: HTTP $got (expected $1): $(cat resp)"
  grep -q "$2" resp || fail "$3: body lacks '$2': $(cat resp)"
  echo "ok: $3 -> $got $(head -c 220 resp)"
}
: > empty
echo '{"protocol": 1, "train_examples": 100, "test_examples": 0}' > reg.json
got=$(req POST /v1/register 0 0 reg.json); expect 200 '"config"' "register"
for _ in $(seq 1 20); do got=$(req GET /v1/task 0 0 empty); [ "$got" = 200 ] && break; done
expect 200 '"kind":"fit"' "task"
RUN=$(sed -n 's/.*"run_id":\([0-9]*\).*/\1/p' resp)
got=$(req GET /v1/model "$RUN" 1 empty); [ "$got" = 200 ] || fail "model: $got $(cat resp)"
cp resp model.st
HL=$(od -An -tu8 -N8 model.st | tr -d ' ')
DATA=$(( $(stat -c %s model.st) - 8 - HL ))
N=$(( DATA / 4 ))
META='"__metadata__":{"num_examples":"100","steps":"2","lr":"0.1","loss_before":"nan","train_loss":"0.5","train_accuracy":"nan","update_norm":"0"}'
st() {  # st OUT HEADER-JSON DATAFILE: a safetensors file
  local h=$2 n pad
  n=${#h}; pad=$(( (8 - n % 8) % 8 )); h="$h$(printf '%*s' $pad '')"; n=$(( n + pad ))
  { le $n 8; printf '%s' "$h"; cat "$3"; } > "$1"
}
framed() {  # framed OUT FRAMEFILE [DTYPE]: an upload carrying FRAMEFILE as "federate.update"
  local l e=1; l=$(stat -c %s "$2"); [ "${3:-U8}" = F32 ] && e=4
  st "$1" "{$META,\"federate.update\":{\"dtype\":\"${3:-U8}\",\"shape\":[$(( l / e ))],\"data_offsets\":[0,$l]}}" "$2"
}
head -c 64 /dev/urandom > garbage.frame
{ printf 'FDC\001\000\001\000\000'; le $N 8; printf '\002\001\004'; } > truncated.frame
# a well-formed f32 frame (one raw-float32 stage) of N zeros: valid, but not this run's q4,zstd
{ printf 'FDC\001\000\001\000\000'; le $N 8; printf '\001\001\000\000'; le 0 4; le $N 8; le 0 8; le $(( 4 * N )) 8;
  head -c $(( 4 * N )) /dev/zero; } > f32.frame
framed up_garbage.st garbage.frame
framed up_truncated.st truncated.frame
framed up_f32.st f32.frame
head -c 64 /dev/zero > f32x16
framed up_dtype.st f32x16 F32
got=$(req POST /v1/result "$RUN" 1 up_garbage.st); expect 400 "bad codec frame" "garbage codec frame"
got=$(req POST /v1/result "$RUN" 1 up_truncated.st); expect 400 "bad codec frame" "truncated codec frame"
got=$(req POST /v1/result "$RUN" 1 up_f32.st); expect 400 "bad codec frame" "frame of another codec (f32, not q4,zstd)"
got=$(req POST /v1/result "$RUN" 1 up_dtype.st); expect 400 "U8" "frame tensor of dtype F32"
# the same round still takes a plain float32 update
dd if=model.st of=header bs=1 skip=8 count="$HL" 2> /dev/null
head -c "$DATA" /dev/zero > zeros
st up_plain.st "$(sed 's/"__metadata__":{/'"${META%\}},"'/' header | sed 's/ *$//')" zeros
got=$(req POST /v1/result "$RUN" 1 up_plain.st); expect 200 '"accepted":true' "plain float32 update with compression on"
wait $SERVER || fail "second coordinator exited with $?"
M=$(grep -c "rejected (400" server2.log)
[ "$M" -ge 4 ] || fail "rejections not logged: $(cat server2.log)"
grep -q "^round   1/1 .*clients 1/1" server2.out || fail "round 1 did not complete: $(cat server2.out)"
echo PASS
