#!/usr/bin/env bash
# The deployment across two hosts: the coordinator and three client daemons in
# two network namespaces of their own, joined by a veth pair that tc netem
# slows to 50 ms each way and makes drop 1% of packets each way (when the kernel
# has netem; without it the hosts are still separate, only unimpaired). The
# clients reach the coordinator over TLS by a host name (resolved through
# /etc/netns/NAME/hosts), not loopback; client 2 and a curl by its IP address
# (in the certificate as an IP SAN: federate certs --host NAME,IP). The run must finish with the
# simulator's final_accuracy (deployment == simulation). Needs root, ip and tc;
# skipped (77) otherwise. The namespaces are always removed.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_bin
deploy_require_mnist
[ "$(id -u)" = 0 ] || { echo "not root: skipped (network namespaces need root)"; exit 77; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "ip/tc (iproute2) missing: skipped"; exit 77; }

NS_S="fedsrv$$"; NS_C="fedcli$$"; V_S="fvs$$"; V_C="fvc$$"
T="$(mktemp -d)"
cleanup() {
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  ip netns del "$NS_S" 2>/dev/null
  ip netns del "$NS_C" 2>/dev/null
  ip link del "$V_S" 2>/dev/null
  rm -rf "/etc/netns/$NS_C" "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$NS_S" 2>/dev/null || { echo "cannot create network namespaces here: skipped"; exit 77; }
ip netns add "$NS_C" || fail "ip netns add"
ip link add "$V_S" type veth peer name "$V_C" || { echo "cannot create veth pairs here: skipped"; exit 77; }
ip link set "$V_S" netns "$NS_S" && ip link set "$V_C" netns "$NS_C" || fail "moving the veth ends"
ip -n "$NS_S" addr add 10.231.0.1/24 dev "$V_S" && ip -n "$NS_C" addr add 10.231.0.2/24 dev "$V_C" || fail "addresses"
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up || fail "lo up"; done
ip -n "$NS_S" link set "$V_S" up && ip -n "$NS_C" link set "$V_C" up || fail "link up"
impaired=1
for pair in "$NS_S:$V_S" "$NS_C:$V_C"; do
  ip netns exec "${pair%%:*}" tc qdisc add dev "${pair#*:}" root netem delay 50ms loss 1% 2>/dev/null || impaired=0
done
if [ $impaired = 1 ]; then echo "link: 50 ms each way, 1% loss each way (tc netem)"
else echo "link: tc netem is not available in this kernel; separate hosts without delay or loss"; fi
# the clients' host name for the coordinator (ip netns exec mounts this over /etc/hosts)
mkdir -p "/etc/netns/$NS_C" && echo "10.231.0.1 fedserver" > "/etc/netns/$NS_C/hosts" || fail "hosts file"
ip netns exec "$NS_C" ping -c 1 -W 5 fedserver > /dev/null 2>&1 || ip netns exec "$NS_C" getent hosts fedserver > /dev/null ||
  fail "the client namespace cannot resolve the coordinator"

cd "$T"
deploy_certs --host fedserver,10.231.0.1
deploy_enroll 0 1 2
deploy_partition 3 --scheme iid --local-test-fraction 0.1 --seed 3
cat > run.yaml <<'YAML'
name: deploy-netns
seed: 11
dataset: mnist
num_clients: 3
clients_per_round: 3
num_rounds: 2
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 32
learning_rate: 0.1
threads: 1
YAML
{ cat run.yaml; cat <<'YAML'; } > server.yaml
server:
  listen: 10.231.0.1:0
  round_timeout: 60
  register_timeout: 60
  long_poll: 5
YAML
{ cat run.yaml; echo "data_dir: parts"; } > sim.yaml

start=$(date +%s)
DEPLOY_WRAP="ip netns exec $NS_S" deploy_server server.yaml
for i in 0 1 2; do
  host=fedserver; [ $i = 2 ] && host=10.231.0.1   # by address: the certificate's IP SAN
  URL="https://$host:$PORT" DEPLOY_WRAP="ip netns exec $NS_C" deploy_client $i client$i.log --timeout 30 --quiet
done
if command -v curl > /dev/null; then
  ip netns exec "$NS_C" curl -sS -m 20 --cacert certs/ca.pem "https://10.231.0.1:$PORT/api/status" > status.out 2>&1 ||
    fail "curl --cacert https://10.231.0.1:$PORT (IP SAN): $(cat status.out)"
  echo "ok: https://10.231.0.1:$PORT verified by its IP address"
fi
# the coordinator is not reachable from this (the root) namespace: the hosts really are apart
curl -s -m 2 --cacert certs/ca.pem "https://10.231.0.1:$PORT/api/status" > /dev/null 2>&1 && fail "the coordinator answered outside its namespace"
( for _ in $(seq 80); do sleep 1; done; kill -9 $SERVER "${CLIENT[@]}" ) > /dev/null 2>&1 &
WATCHDOG=$!
wait $SERVER || fail "the coordinator exited with $? (or was stopped by the 80 s watchdog)"
for i in 0 1 2; do wait ${CLIENT[$i]} || fail "client $i exited with $?"; done
kill $WATCHDOG 2>/dev/null
tail -3 server.out
[ "$(tail -1 server.out | cut -d: -f1)" = final_accuracy ] || fail "final_accuracy is not the last line"
acc=$(sed -n 's/^final_accuracy: //p' server.out)
grep -q "clients 3/3 (0 dropped)" server.out || fail "a round lost a client"
sim=$("$BIN" run sim.yaml --db sim.db) || fail "simulation failed"
sacc=$(echo "$sim" | sed -n 's/^final_accuracy: //p')
[ -n "$acc" ] && [ "$acc" = "$sacc" ] || fail "deployment accuracy '$acc' != simulation '$sacc'"
echo "ok: two hosts$([ $impaired = 1 ] && echo ", 50 ms + 1% loss each way"), final_accuracy $acc == simulation ($(( $(date +%s) - start )) s)"
echo PASS
