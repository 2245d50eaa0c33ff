#!/usr/bin/env bash
# examples/deploy/local.sh N: a coordinator and N client daemons on loopback
# over TLS. Certificates and client keys are made on the spot, MNIST is split
# into N client folders with `federate partition`, the federation of
# examples/deploy/server.yaml runs to the end, everything started here is
# stopped, and the coordinator's `final_accuracy: X` is printed last.
# Environment: FEDERATE_BIN (default: federate on PATH, else build/federate),
# FEDERATE_DATA (MNIST under $FEDERATE_DATA/mnist), KEEP=1 keeps the work folder.
set -euo pipefail
N="${1:-4}"
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 ]] || { echo "usage: $0 N (number of clients)" >&2; exit 2; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${FEDERATE_BIN:-$(command -v federate || echo "$HERE/../../build/federate")}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
W="$(mktemp -d "${TMPDIR:-/tmp}/federate-deploy.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
cd "$W"

"$BIN" certs --out certs --clients "$N" >/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > token
for ((i = 0; i < N; i++)); do
  "$BIN" keygen --out "client-$i.key" >/dev/null
  "$BIN" enroll --db clients.db --id "$i" --public-key "client-$i.key.pub" >/dev/null
done
"$BIN" partition --clients "$N" --scheme iid --seed 1 --out parts >/dev/null

# DASHBOARD=127.0.0.1:8080 also serves the live dashboard from the coordinator
"$BIN" server --config "$HERE/server.yaml" --set "num_clients=$N" --listen 127.0.0.1:0 --port-file port \
  ${DASHBOARD:+--dashboard "$DASHBOARD"} > server.out 2> server.log &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do [ -s port ] && break; kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
[ -s port ] || { cat server.log >&2; echo "the coordinator did not start" >&2; exit 1; }
PORT="$(cat port)"
for ((i = 0; i < N; i++)); do
  "$BIN" client --server "https://127.0.0.1:$PORT" --id "$i" --data "parts/$(printf 'client_%05d' "$i")" \
    --key "client-$i.key" --ca certs/ca.pem --cert "certs/client-$i.pem" --cert-key "certs/client-$i-key.pem" \
    --compress --max-retries 20 2> "client-$i.log" &
  pids+=($!)
done
status=0
wait "$server" || status=$?
[ "$status" = 0 ] || { tail -20 server.log >&2; echo "the coordinator failed (exit $status)" >&2; exit "$status"; }
grep -v '^final_accuracy:' server.out
grep '^final_accuracy:' server.out
