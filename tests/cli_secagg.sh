#!/usr/bin/env bash
# The secure aggregation commands: secagg-params gives Google's (k, t) for the
# issue's example, bench secagg prints the lines README quotes with an exact sum
# on both graphs with per-stage times and bytes, its ring follows the input bits the way a run's does (packed
# on the wire, so fewer bits travel fewer bytes), and bad flags are refused.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
fail() { echo "FAIL: $*"; exit 1; }
field() { echo "$1" | sed -n "s/^$2: //p"; }

p="$("$BIN" secagg-params --clients 100 --adversarial-fraction 0.05 --dropout-fraction 0.33)" || fail "secagg-params failed"
[ "$(field "$p" degree)" = 28 ] || fail "degree for n=100, 5%, 33%: $p"
[ "$(field "$p" threshold)" = 6 ] || fail "threshold for n=100, 5%, 33%: $p"
out="$("$BIN" secagg-params --clients 100 --adversarial-fraction 0.05 2>&1)"; [ $? -ne 0 ] || fail "missing flag accepted"
echo "$out" | grep -q -- "--dropout-fraction is required" || fail "no message for the missing flag: $out"

# full graph, 30% dropping after sharing keys: 16-bit inputs of 20 clients -> a 21-bit ring
b="$("$BIN" bench secagg --clients 20 --length 3001 --dropout 0.3 --threads 2)" || fail "bench secagg failed: $b"
for k in client_ms server_ms bytes_per_client; do
    echo "$b" | grep -q "^$k: [0-9]" || fail "bench secagg lacks $k: $b"
done
[ "$(field "$b" exact)" = yes ] || fail "full graph: sum not exact: $b"
echo "$b" | grep -q "^prg_gb_per_s: [0-9]*\.[0-9]" || fail "bench secagg lacks prg_gb_per_s: $b"
[ "$(field "$b" ring_bits)" = 21 ] || fail "ring for 20 clients of 16 bits: $b"
[ "$(field "$b" survivors)" = 14 ] || fail "survivors: $b"
# per-stage bytes: the masked input is its 28 bytes of framing and 3001 elements of
# 21 bits; the stages add up to bytes_per_client
[ "$(field "$b" client_stage2_bytes_up)" = $((28 + (3001 * 21 + 7) / 8)) ] || fail "stage-2 upload: $b"
tot=0
for s in 0 1 2 3; do
    for d in up down; do
        v="$(field "$b" client_stage${s}_bytes_$d)"; [ -n "$v" ] || fail "bench lacks client_stage${s}_bytes_$d"
        tot=$((tot + v))
    done
    echo "$b" | grep -q "^server_stage${s}_ms: [0-9]" || fail "bench lacks server_stage${s}_ms"
done
[ "$tot" = "$(field "$b" bytes_per_client)" ] || fail "stages add up to $tot: $b"
b32="$("$BIN" bench secagg --clients 20 --length 3001 --dropout 0.3 --ring-bits 32)" || fail "bench --ring-bits 32 failed"
[ "$(field "$b32" exact)" = yes ] || fail "32-bit ring: sum not exact: $b32"
# the masked input is 21 bits an element on the wire, not 32
small=$(field "$b" bytes_per_client); big=$(field "$b32" bytes_per_client)
[ $((big - small)) -ge $((3001 * 11 / 8)) ] || fail "packing saves too little: $small vs $big bytes"

# SecAgg+ over a Harary graph, 8-bit inputs
h="$("$BIN" bench secagg --clients 60 --length 2000 --dropout 0.2 --graph harary --bits 8 --threads 2)" || fail "harary failed: $h"
[ "$(field "$h" exact)" = yes ] || fail "harary: sum not exact: $h"
[ "$(field "$h" graph)" = harary ] || fail "graph: $h"
[ "$(field "$h" ring_bits)" = 14 ] || fail "ring for 60 clients of 8 bits: $h"
[ "$(field "$h" degree)" -lt 59 ] || fail "harary degree is the full graph's: $h"

# a ring that cannot hold the sum is refused with a message
out="$("$BIN" bench secagg --clients 5000 --bits 52 --length 10 2>&1)"; [ $? -ne 0 ] || fail "65-bit ring accepted"
echo "$out" | grep -q "ring" || fail "no message for the ring: $out"
out="$("$BIN" bench secagg --graph ring 2>&1)"; [ $? -ne 0 ] || fail "unknown graph accepted"
echo "$out" | grep -q -- "--graph" || fail "bad graph message lacks the flag: $out"
echo "cli_secagg: ok"
