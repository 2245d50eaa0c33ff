#!/usr/bin/env bash
# The dashboard end to end in headless Chromium (tests/dashboard.spec.js, driven by
# playwright-core from $FEDERATE_DATA/npm, both installed by scripts/bootstrap.sh):
# a live run's curves grow as rounds finish, a past run's page renders, the form
# starts a run; plus the address checks and the JSON API through curl.
# DASHBOARD_SCREENSHOT=path.png saves a screenshot of the live page.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
DATA="${FEDERATE_DATA:-$HOME/.cache/federate}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
SPEC="$(cd "$(dirname "$0")" && pwd)/dashboard.spec.js"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
T="$(mktemp -d)"
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"

# address checks (no browser needed)
err="$("$BIN" dashboard --listen 0.0.0.0:0 2>&1)"; [ $? -ne 0 ] || fail "a non-loopback address was accepted"
echo "$err" | grep -q "loopback" || fail "the refusal does not say why: $err"
err="$("$BIN" dashboard --listen 127.0.0.1:99999 2>&1)"; [ $? -ne 0 ] || fail "a bad port was accepted"
err="$("$BIN" dashboard --listen nonsense 2>&1)"; [ $? -ne 0 ] || fail "a bad address was accepted"
"$BIN" dashboard --help | grep -q -- "--listen" || fail "no --help"

# the API through curl, while the page is idle
"$BIN" dashboard --db api.db --listen 127.0.0.1:0 > d.out 2>&1 &
for _ in $(seq 50); do grep -q "^dashboard: " d.out && break; sleep 0.1; done
url="$(sed -n 's/^dashboard: //p' d.out)"
[ -n "$url" ] || fail "no dashboard URL: $(cat d.out)"
curl -sf "${url}" | grep -q "<title>federate dashboard</title>" || fail "no page at /"
curl -sf "${url}dashboard.js" > /dev/null || fail "no dashboard.js"
[ "$(curl -sf "${url}api/runs")" = "[]" ] || fail "a fresh store lists runs"
curl -sf "${url}metrics" | grep -q "^federate_rounds_completed_total 0" || fail "no metrics"
curl -sf "${url}api/config/keys" | grep -q '"num_clients"' || fail "no config keys"
code="$(curl -s -o e.json -w '%{http_code}' -XPOST -H 'Content-Type: application/json' -d '{"num_client": 3}' "${url}api/runs")"
[ "$code" = 400 ] && grep -q "did you mean 'num_clients'" e.json || fail "bad key: $code $(cat e.json)"
code="$(curl -s -o e.json -w '%{http_code}' -XPOST -H 'Content-Type: text/plain' -d '{}' "${url}api/runs")"
[ "$code" = 403 ] || fail "a non-JSON POST was accepted: $code"
code="$(curl -s -o e.json -w '%{http_code}' -XPOST -H 'Content-Type: application/json' -H 'Origin: http://evil.example' -d '{}' "${url}api/runs")"
[ "$code" = 403 ] || fail "a cross-origin POST was accepted: $code"
code="$(curl -s -o e.json -w '%{http_code}' -XPOST -H 'Content-Type: application/json' -d '{"data_root": "/"}' "${url}api/runs")"
[ "$code" = 400 ] || fail "data_root was settable: $code"
code="$(curl -s -o e.json -w '%{http_code}' "${url}api/runs/7")"
[ "$code" = 404 ] || fail "a missing run answered $code"
kill -INT %1; wait %1 || fail "federate dashboard did not exit cleanly on SIGINT"

# the browser part
if [ ! -x "$CHROMIUM" ]; then echo "SKIP: $CHROMIUM missing (scripts/bootstrap.sh installs chromium)"; exit 77; fi
if [ ! -f "$DATA/npm/node_modules/playwright-core/package.json" ] || ! command -v node >/dev/null; then
  echo "SKIP: playwright-core missing from $DATA/npm (run scripts/bootstrap.sh)"; exit 77
fi
shot=()
[ -n "${DASHBOARD_SCREENSHOT:-}" ] && shot=(--screenshot "$DASHBOARD_SCREENSHOT")
NODE_PATH="$DATA/npm/node_modules" CHROMIUM="$CHROMIUM" timeout 120 node "$SPEC" --bin "$BIN" --dir "$T/e2e" "${shot[@]}" \
  || fail "browser test failed"
echo "PASS"
