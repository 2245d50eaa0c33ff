#!/usr/bin/env bash
# Our saved model in PyTorch: `federate train --save` writes safetensors that a
# few lines of Python load into the equivalent torch.nn.Module (docs/pytorch.md),
# and PyTorch then classifies the MNIST test set exactly as `federate evaluate`
# does. Needs Debian's python3-torch (`bash scripts/bootstrap.sh torch`);
# without it the test reports itself skipped (exit 77), not passed.
set -u
BIN="${FEDERATE_BIN:-build/federate}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "python3-torch not installed: skipped"; exit 77; }
# A file-format check, not a memory-safety one: too slow for the sanitizer build.
[ -n "${FEDERATE_SANITIZED:-}" ] && { echo "sanitizer build: skipped"; exit 77; }
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$BIN" train --model cnn --limit 2000 --epochs 1 --batch-size 32 --lr 0.05 --seed 2 --save "$T/m.safetensors" >/dev/null || fail "train failed"
ours="$("$BIN" evaluate --model cnn --weights "$T/m.safetensors" | sed -n 's/^accuracy: //p')"
theirs="$(cd "$SRC/bench" && /usr/bin/python3 - "$T/m.safetensors" <<'PY'
import json, os, struct, sys
import numpy as np, torch
from torch_train import CNN
from torch_fedavg import load

def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype={"F32": np.float32, "I64": np.int64}[t["dtype"]])
        out[name] = torch.from_numpy(arr.reshape(t["shape"]).copy())
    return out

model = CNN()
model.load_state_dict(load_safetensors(sys.argv[1]))
model.eval()
root = os.path.join(os.environ.get("FEDERATE_DATA", os.path.expanduser("~/.cache/federate")), "mnist")
x, y = load(root, "test")
with torch.no_grad():
    acc = (model(x).argmax(1) == y).float().mean().item()
print(f"{100 * acc:.2f}")
PY
)" || fail "PyTorch could not load the model"
echo "federate: $ours%  PyTorch: $theirs%"
[ "$ours" = "$theirs" ] || fail "PyTorch's accuracy $theirs differs from federate's $ours"
echo "1 passed, 0 failed"
