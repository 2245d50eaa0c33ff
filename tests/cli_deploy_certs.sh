#!/usr/bin/env bash
# `federate certs --host` with an IP address puts it in the server certificate
# as an IP address SAN, so clients reach https://ADDRESS:PORT with verification
# on: the coordinator listens on 127.0.0.2 (not among the default names);
# curl --cacert and a client daemon connect by the address; a certificate made
# without --host is refused for that address; a bad --host is refused.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
command -v curl >/dev/null || { echo "curl missing: skipped"; exit 77; }
T="$(mktemp -d)"
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log "$T"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -12 "$f"; }; done; exit 1; }
cd "$T"
ADDR=127.0.0.2

"$BIN" certs --out certs --host "$ADDR,coordinator.test" > /dev/null || fail "certs --host $ADDR"
"$BIN" certs --out plain > /dev/null || fail "certs"
if command -v openssl > /dev/null; then
  openssl x509 -in certs/server.pem -noout -text | grep -q "IP Address:$ADDR" || fail "no IP SAN $ADDR in the certificate"
  openssl x509 -in certs/server.pem -noout -text | grep -q "DNS:coordinator.test" || fail "no DNS SAN coordinator.test"
  openssl x509 -in certs/server.pem -noout -text | grep -q "DNS:$ADDR" && fail "the address went in as a DNS name"
  echo "ok: $(openssl x509 -in certs/server.pem -noout -text | grep -A1 'Alternative Name' | tail -1 | sed 's/^ *//')"
fi
"$BIN" certs --out bad --host "not a host" 2> bad.err && fail "a bad --host was accepted"
grep -q "neither an IP address nor a DNS name" bad.err || fail "bad --host: $(cat bad.err)"
echo "ok: bad --host refused: $(cat bad.err)"

"$BIN" keygen --out k0 > /dev/null && "$BIN" enroll --db clients.db --id 0 --public-key k0.pub > /dev/null || fail "enroll"
serve() {  # serve CERTDIR
  rm -f port
  cat > server.yaml <<YAML
seed: 1
dataset: mnist
num_clients: 2
model: mlp
server:
  listen: $ADDR:0
  cert: $1/server.pem
  key: $1/server-key.pem
  store: server.db
  allow_list: clients.db
  port_file: port
  long_poll: 1
YAML
  "$BIN" server --config server.yaml >> server.out 2>> server.log &
  SERVER=$!
  for _ in $(seq 1 100); do [ -s port ] && break; sleep 0.1; done
  [ -s port ] || fail "the coordinator did not start on $ADDR (cannot bind?)"
  URL="https://$ADDR:$(cat port)"
}

serve certs
out=$(curl -sS --cacert certs/ca.pem "$URL/api/status" 2>&1) || fail "curl --cacert $URL: $out"
echo "$out" | grep -q '"phase":"waiting"' || fail "status: $out"
echo "ok: curl --cacert $URL/api/status verified the certificate"
D="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
if [ -e "$D/t10k-labels-idx1-ubyte" ] || [ -e "$D/t10k-labels-idx1-ubyte.gz" ]; then
  "$BIN" partition --clients 2 --scheme iid --seed 1 --out parts > /dev/null || fail "partition"
  "$BIN" client --server "$URL" --id 0 --data parts/client_00000 --key k0 --ca certs/ca.pem --max-retries 3 2> client0.log &
  for _ in $(seq 1 200); do curl -s --cacert certs/ca.pem "$URL/api/status" | grep -q '"clients_registered":1' && break; sleep 0.1; done
  curl -s --cacert certs/ca.pem "$URL/api/status" | grep -q '"clients_registered":1' || fail "the client daemon did not register over $URL"
  echo "ok: a client daemon registered over $URL"
fi
kill -9 $(jobs -p) 2> /dev/null; wait 2> /dev/null

serve plain
curl -s --cacert plain/ca.pem "$URL/api/status" > /dev/null 2> curl.err && fail "a certificate without $ADDR was accepted for $URL"
echo "ok: without --host $ADDR the certificate is refused for $URL (curl exit $(curl -s --cacert plain/ca.pem "$URL/api/status" > /dev/null 2>&1; echo $?))"
kill -9 $SERVER; wait $SERVER 2> /dev/null
echo PASS
