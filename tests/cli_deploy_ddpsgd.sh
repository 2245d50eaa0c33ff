#!/usr/bin/env bash
# Record-level DP-SGD under secure aggregation over the network (privacy.mode
# distributed-dp-sgd): a coordinator and 4 client daemons on loopback over TLS. Each
# round every daemon takes one DP-SGD step without noise (Poisson sample, per-example
# clip), and adds its own discrete Gaussian share before masking; the coordinator
# unmasks only the noised sum. The coordinator's per-round epsilon is the accountant's
# for exactly these releases: it equals the simulator's on the same per-client folders
# (the accountant needs only each client's data size and the shares released), and the
# model learns. Client 0 runs with --min-noise-multiplier at the run's value.
set -u
. "$(cd "$(dirname "$0")" && pwd)/deploy_lib.sh"
deploy_init
N=4
deploy_federation $N --scheme iid --local-test-fraction 0.02 --seed 5

cat > run.yaml <<'YAML'
name: deploy-ddpsgd
seed: 11
dataset: mnist
num_clients: 4
clients_per_round: 4
num_rounds: 3
model: mlp
hidden: "32"
batch_size: 16
learning_rate: 0.5
strategy: fedavgm
server_momentum: 0.5
threads: 1
secure_aggregation:
  enabled: true
  bits: 16
  dropout_fraction: 0.25
privacy:
  mode: distributed-dp-sgd
  clip_norm: 1.0
  noise_multiplier: 0.5
  delta: 1e-5
YAML
{ cat run.yaml; cat <<'YAML'; } > server.yaml
server:
  round_timeout: 30
  round_retries: 0
  long_poll: 2
  register_timeout: 60
YAML
{ cat run.yaml; echo "data_dir: parts"; } > sim.yaml

deploy_server server.yaml
deploy_client 0 client0.log --max-retries 20 --min-noise-multiplier 0.5
for i in 1 2 3; do deploy_client $i client$i.log --max-retries 20; done
wait $SERVER || fail "coordinator exited with $?"
for i in 0 1 2 3; do wait ${CLIENT[$i]} || fail "client $i exited with $?"; done

for i in 0 1 2 3; do
  for r in 1 2 3; do
    grep -q "round $r: secure aggregation done .*with a record-level distributed DP noise share (noise multiplier 0.5 over 3 shares)" \
      client$i.log || fail "client $i did not add its record-level noise share in round $r"
  done
  grep -q "refused\|not taking part" client$i.log && fail "client $i refused a round"
done
for r in 1 2 3; do
  grep -q "round $r: secure aggregation done: 4 of 4 clients in the sum" server.log || fail "round $r did not sum 4 shares"
done

# per-round epsilon: the coordinator's store against the simulator's, same folders
"$BIN" run sim.yaml --db sim.db > sim.out || fail "simulation failed: $(tail -3 sim.out)"
"$BIN" runs show 1 --db server.db > show.out || fail "runs show"
"$BIN" runs show 1 --db sim.db > simshow.out || fail "runs show (simulation)"
col() { awk -v name="$1" -v r="$2" '$1 == "round" { for (i = 1; i <= NF; i++) if ($i == name) k = NF - i }
                                    $1 == r && k != "" { print $(NF - k) }' "$3"; }
for r in 1 2 3; do
  e=$(col epsilon $r show.out); s=$(col epsilon $r simshow.out)
  [[ $e =~ ^[0-9]+\.[0-9]+$ ]] || fail "round $r: epsilon '$e': $(cat show.out)"
  [ "$e" = "$s" ] || fail "round $r: epsilon $e over the network, $s in the simulation"
done
eps=$(sed -n 's/^epsilon: //p' server.out)
[ "$eps" = "$(sed -n 's/^epsilon: //p' sim.out)" ] || fail "final epsilon $eps differs from the simulation's"
grep -q "^delta: 1e-05$" server.out || fail "no delta line"
acc=$(sed -n 's/^final_accuracy: //p' server.out)
awk -v a="$acc" 'BEGIN { exit !(a != "" && a > 25) }' || fail "the model did not learn (3 steps; chance is 10%): $acc%"
echo "ok: record-level DP-SGD under secure aggregation over the network; epsilon $eps (= simulation); accuracy $acc%"
echo PASS
