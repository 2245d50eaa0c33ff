# Shared set-up for the deployment tests (tests/cli_deploy*.sh): sourced, not
# run, and not a test itself (CMakeLists.txt registers tests/cli_*.sh only).
# A script sources it by an absolute path before it changes directory:
#   . "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
# and then, typically:
#   deploy_init curl                  # BIN, skips (77), temp dir, trap, cd
#   deploy_federation 2 --scheme iid --seed 1
#   cat > server.yaml ...             # the script's own configuration
#   deploy_server server.yaml         # SERVER, PORT, URL
#   deploy_client 0 client0.log       # CLIENT[0]
# Every function fails the test through fail() when a step goes wrong.
# KEEP=1 in the environment keeps the temp dir (its path is printed at exit).

# fail MESSAGE: print it and the tail of every log and output in $T, exit 1
fail() { echo "FAIL: $*"; for f in "${T:-/nonexistent}"/*.log "${T:-/nonexistent}"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -15 "$f"; }; done; exit 1; }

# deploy_bin: BIN, the federate binary ($FEDERATE_BIN, else build/federate) as an absolute path
deploy_bin() {
  BIN="${FEDERATE_BIN:-build/federate}"
  BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
}

# deploy_have_mnist: true when MNIST is in $FEDERATE_DATA (default ~/.cache/federate)
deploy_have_mnist() {
  local d="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
  [ -e "$d/t10k-labels-idx1-ubyte" ] || [ -e "$d/t10k-labels-idx1-ubyte.gz" ]
}

# deploy_require_mnist: skip the test (exit 77) without MNIST
deploy_require_mnist() {
  deploy_have_mnist || { echo "MNIST missing: skipped"; exit 77; }
}

# deploy_require TOOL...: skip the test (exit 77) when a tool is not on PATH
deploy_require() {
  local t
  for t in "$@"; do command -v "$t" > /dev/null || { echo "$t missing: skipped"; exit 77; }; done
}

# deploy_tmp: a fresh temp dir T, removed at exit (unless KEEP=1) after every
# background job is continued (if stopped) and killed; cd into it
deploy_tmp() {
  T="$(mktemp -d)"
  trap 'kill -CONT $(jobs -p) 2>/dev/null; kill -9 $(jobs -p) 2>/dev/null; [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"' EXIT
  cd "$T" || fail "cd $T"
}

# deploy_init [TOOL...]: deploy_bin, skip without MNIST or a TOOL, deploy_tmp
deploy_init() {
  deploy_bin
  deploy_require_mnist
  deploy_require "$@"
  deploy_tmp
}

# deploy_certs [FLAGS...]: federate certs --out certs FLAGS (CA, server and client certificates)
deploy_certs() {
  "$BIN" certs --out certs "$@" > /dev/null || fail "certs${*:+ $*}"
}

# deploy_keygen NAME...: a client key pair NAME, NAME.pub per NAME
deploy_keygen() {
  local k
  for k in "$@"; do "$BIN" keygen --out "$k" > /dev/null || fail "keygen $k"; done
}

# deploy_enroll ID...: key pair kID per client, enrolled as ID in clients.db
deploy_enroll() {
  local i
  for i in "$@"; do
    deploy_keygen "k$i"
    "$BIN" enroll --db clients.db --id "$i" --public-key "k$i.pub" | grep -q "^enrolled: $i$" || fail "enroll $i"
  done
}

# deploy_partition N [FLAGS...]: MNIST split among N clients into parts/client_NNNNN (the id in five digits)
deploy_partition() {
  local n=$1
  shift
  "$BIN" partition --clients "$n" "$@" --out parts > /dev/null || fail "partition"
}

# deploy_federation N [PARTITION FLAGS...]: certificates (a client certificate
# each, certs/client-ID.pem, for server.client_ca), clients 0..N-1 enrolled with
# keys kID, and the partition of MNIST among them
deploy_federation() {
  local n=$1
  shift
  deploy_certs --clients "$n"
  deploy_enroll $(seq 0 $((n - 1)))
  deploy_partition "$n" "$@"
}

# deploy_server_defaults CONFIG: fills in, under CONFIG's `server:` section, each
# of the federation's standard keys the script left out: loopback on a free
# port, the certificates of deploy_certs, server.db, the allow-list of
# deploy_enroll, and the port file `port`. A key the script sets is kept.
deploy_server_defaults() {
  local kv
  for kv in "listen: 127.0.0.1:0" "cert: certs/server.pem" "key: certs/server-key.pem" "store: server.db" \
            "allow_list: clients.db" "port_file: port"; do
    grep -q "^  ${kv%%:*}:" "$1" || sed -i "/^server:\$/a\\  $kv" "$1"
  done
}

# deploy_server CONFIG [OUT LOG]: a coordinator in the background (stdout
# appended to OUT, default server.out, stderr to LOG, default server.log) on
# CONFIG completed by deploy_server_defaults; waits (10 s at most) for its port
# file `port` and sets SERVER (pid), PORT and URL (https://127.0.0.1:PORT).
# DEPLOY_WRAP, when set, is a command prefix (e.g. "ip netns exec NAME").
deploy_server() {
  deploy_server_defaults "$1"
  rm -f port
  ${DEPLOY_WRAP:-} "$BIN" server --config "$1" >> "${2:-server.out}" 2>> "${3:-server.log}" &
  SERVER=$!
  for _ in $(seq 1 100); do [ -s port ] && break; sleep 0.1; done
  [ -s port ] || fail "the coordinator ($1) did not start"
  PORT=$(cat port)
  URL="https://127.0.0.1:$PORT"
}

# deploy_client ID LOG [FLAGS...]: client daemon ID of $URL in the background
# (data parts/client_NNNNN with ID in five digits, key kID, CA certs/ca.pem, stderr appended to LOG);
# its pid in CLIENT[ID] and $!. Environment for the daemon goes before the call
# (VAR=VALUE deploy_client ...); DEPLOY_WRAP as for deploy_server.
deploy_client() {
  local i=$1 log=$2
  shift 2
  local data
  data=$(printf 'parts/client_%05d' "$i")
  ${DEPLOY_WRAP:-} "$BIN" client --server "$URL" --id "$i" --data "$data" --key "k$i" --ca certs/ca.pem "$@" 2>> "$log" &
  CLIENT[$i]=$!
}
