#!/usr/bin/env bash
# `federate report`: the HTML report of a short DP run holds its key contents
# (config, curves as inline SVG, clients, bytes and the update encoding, the
# privacy mechanism with (epsilon, delta) and the accountant, secure
# aggregation, the version, the confusion matrix), escapes what came from the
# store, needs no script and no external resource; bad input fails cleanly.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
D="${FEDERATE_DATA:-$HOME/.cache/federate}/mnist"
[ -e "$D/t10k-labels-idx1-ubyte" ] || [ -e "$D/t10k-labels-idx1-ubyte.gz" ] || { echo "MNIST missing: skipped"; exit 77; }
"$BIN" report --help >/dev/null 2>&1 || { echo "SKIP: $BIN has no report command"; exit 77; }
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"

cat > dp.yaml <<'YAML'
name: "report <b>&test</b>"
seed: 4
dataset: mnist
num_clients: 12
clients_per_round: 4
num_rounds: 3
model: mlp
hidden: "32"
local_epochs: 1
batch_size: 20
learning_rate: 0.1
threads: 2
compression: "q8,zstd"
secure_aggregation:
  enabled: true
privacy:
  mode: local
  noise_multiplier: 1.0
  clip_norm: 1.0
  delta: 1e-5
YAML
out="$("$BIN" run dp.yaml --db a.db)" || fail "run failed: $out"
# the epsilon column of `runs show` (counted from the right: train_loss spans three fields)
eps="$("$BIN" runs show 1 --db a.db | awk '$1 == "round" { for (i = 1; i <= NF; i++) if ($i == "epsilon") k = NF - i }
                                          $1 == 3 && k != "" { print $(NF - k) }')"
[ -n "$eps" ] || fail "runs show has no epsilon"
out="$("$BIN" report 1 --db a.db --out r.html)" || fail "report failed: $out"
echo "$out" | grep -q "^out: r.html$" || fail "no out line: $out"
[ -s r.html ] || fail "no report"
has() { grep -q -- "$1" r.html || fail "report lacks $2 ($1)"; }
has "<!DOCTYPE html>" "a doctype"
has "report &lt;b&gt;&amp;test&lt;/b&gt;" "the escaped run name"
grep -q "<b>&test" r.html && fail "the run name is not escaped"
has "num_clients: 12" "the config"
has "Test accuracy per round" "the accuracy chart"
has "Loss per round" "the loss chart"
[ "$(grep -c '<svg' r.html)" -ge 4 ] || fail "fewer than 4 inline SVG charts"
has "local DP" "the privacy mechanism"
has "RDP accountant, dp_accounting orders" "the accountant"
has "&delta; = 1e-05" "delta"
has "(&epsilon; = $eps, &delta; = 1e-05)" "the final epsilon $eps"
has "Secure aggregation</th><td class=\"ok\">on" "secure aggregation on"
has "q8,zstd" "the update encoding"
has "Bytes up" "bytes up"
has "Only model updates left the clients" "what left the clients"
has "federate $("$BIN" --version | awk '{ print $2 }')" "the version"
has "Confusion matrix" "the confusion matrix"
has "<th>client</th><th>selected</th>" "the client table"
grep -qi "<script" r.html && fail "the report has a script"
grep -Eqi "(src|href)=\"?(https?:)?//" r.html && fail "the report loads an external resource"
grep -Eqi "https?://" r.html && fail "the report has an http(s):// reference"
if command -v python3 >/dev/null; then
  python3 - r.html <<'PY' || fail "the report is not well-formed"
import sys, html.parser
class P(html.parser.HTMLParser):
    void = {"meta", "br", "img", "hr", "input", "link"}
    def __init__(self):
        super().__init__(); self.stack = []
    def handle_starttag(self, t, a):
        if t not in self.void: self.stack.append(t)
    def handle_startendtag(self, t, a): pass
    def handle_endtag(self, t):
        if not self.stack or self.stack[-1] != t:
            sys.exit(f"unbalanced </{t}> (open: {self.stack[-3:]})")
        self.stack.pop()
p = P(); p.feed(open(sys.argv[1]).read())
if p.stack: sys.exit(f"unclosed {p.stack}")
PY
fi

# bad input: unknown run, unwritable output, missing store, missing --out
cp r.html keep.html
"$BIN" report 9 --db a.db --out r.html >/dev/null 2>&1 && fail "unknown run reported"
cmp -s r.html keep.html || fail "a failed report touched the old file"
err="$("$BIN" report 1 --db a.db --out no/dir/r.html 2>&1)" && fail "unwritable output accepted"
echo "$err" | grep -q "no/dir/r.html" || fail "error does not name the output: $err"
"$BIN" report 1 --db nope.db --out x.html >/dev/null 2>&1 && fail "missing store accepted"
"$BIN" report 1 --db a.db >/dev/null 2>&1 && fail "missing --out accepted"
[ -e x.html ] && fail "a file was left behind"
ls | grep -q "tmp-" && fail "a temp file was left behind: $(ls)"
echo "1 passed, 0 failed"
