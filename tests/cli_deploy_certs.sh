#!/usr/bin/env bash
# `federate certs --host` with an IP address puts it in the server certificate
# as an IP address SAN, so clients reach https://ADDRESS:PORT with verification
# on: the coordinator listens on 127.0.0.2 (not among the default names);
# curl --cacert and a client daemon connect by the address; a certificate made
# without --host is refused for that address; a bad --host is refused.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_bin
deploy_require curl   # MNIST is optional here: only the client daemon step needs it
deploy_tmp
ADDR=127.0.0.2

deploy_certs --host "$ADDR,coordinator.test"
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

deploy_enroll 0
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
  long_poll: 1
YAML
  deploy_server server.yaml
  URL="https://$ADDR:$PORT"
}

serve certs
out=$(curl -sS --cacert certs/ca.pem "$URL/api/status" 2>&1) || fail "curl --cacert $URL: $out"
echo "$out" | grep -q '"phase":"waiting"' || fail "status: $out"
echo "ok: curl --cacert $URL/api/status verified the certificate"
if deploy_have_mnist; then
  deploy_partition 2 --scheme iid --seed 1
  deploy_client 0 client0.log --max-retries 3
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
