#!/usr/bin/env bash
# `federate plot`: PNG and SVG files for two runs (one with DP), each path
# printed once; PNGs carry the PNG signature and a plausible size, SVGs parse
# as XML; the privacy plot is skipped with a note when no run has DP; bad
# input fails cleanly.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
D="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
[ -e "$D/t10k-labels-idx1-ubyte" ] || [ -e "$D/t10k-labels-idx1-ubyte.gz" ] || { echo "MNIST missing: skipped"; exit 77; }
"$BIN" plot --help >/dev/null 2>&1 || { echo "SKIP: $BIN has no plot command"; exit 77; }
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"
# fontconfig (under cairo's text) keeps its configuration for the process's
# life; a sanitized build's leak checker must not count that as ours
echo "leak:libfontconfig" > lsan.supp
export LSAN_OPTIONS="suppressions=$T/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

cat > small.yaml <<'YAML'
name: plain
seed: 6
dataset: mnist
num_clients: 10
clients_per_round: 3
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 20
learning_rate: 0.1
threads: 2
YAML
"$BIN" run small.yaml --db a.db >/dev/null || fail "run 1 failed"
"$BIN" run small.yaml --db a.db --set name=dp --set privacy.mode=local --set privacy.noise_multiplier=0.3 >/dev/null \
  || fail "run 2 failed"

out="$("$BIN" plot 1 --db a.db --out one 2>err.txt)" || fail "plot 1 failed: $out $(cat err.txt)"
grep -q "privacy_accuracy skipped" err.txt || fail "no note for the skipped privacy plot: $(cat err.txt)"
[ -e one/privacy_accuracy.png ] && fail "privacy plot drawn without DP"

out="$("$BIN" plot 1 2 --db a.db --out plots)" || fail "plot failed: $out"
echo "$out"
for name in accuracy loss confusion_1 confusion_2 client_accuracy_1 client_accuracy_2 privacy_accuracy; do
  for ext in png svg; do
    f="plots/$name.$ext"
    [ -s "$f" ] || fail "$f missing"
    [ "$(echo "$out" | grep -cx "$f")" = 1 ] || fail "$f not printed exactly once"
  done
  sig="$(head -c 8 "plots/$name.png" | od -An -tx1 | tr -d ' \n')"
  [ "$sig" = "89504e470d0a1a0a" ] || fail "plots/$name.png lacks the PNG signature ($sig)"
  size=$(wc -c < "plots/$name.png")
  [ "$size" -gt 3000 ] && [ "$size" -lt 2000000 ] || fail "plots/$name.png has an implausible size $size"
done
[ "$(echo "$out" | wc -l)" = 14 ] || fail "expected 14 files printed"
if command -v python3 >/dev/null; then
  python3 -c 'import sys, xml.dom.minidom
for f in sys.argv[1:]: xml.dom.minidom.parse(f)' plots/*.svg || fail "an SVG does not parse"
else
  for f in plots/*.svg; do grep -q "<svg" "$f" || fail "$f is not SVG"; done
fi

# bad input: unknown run, no run, output that is a file, missing store
"$BIN" plot 1 9 --db a.db --out bad >/dev/null 2>&1 && fail "unknown run plotted"
[ -e bad ] && fail "a directory was created for an unknown run"
"$BIN" plot --db a.db --out bad >/dev/null 2>&1 && fail "no run id accepted"
touch file
"$BIN" plot 1 --db a.db --out file >/dev/null 2>&1 && fail "a file as --out accepted"
"$BIN" plot 1 --db nope.db --out bad >/dev/null 2>&1 && fail "missing store accepted"
ls plots | grep -q "tmp-" && fail "a temp file was left behind"
echo "1 passed, 0 failed"
