#!/usr/bin/env python3
"""Reference for federate's round time: the same FedAvg loop in PyTorch (Debian's
python3-torch) -- 100 IID MNIST clients, 10 per round, E=5, B=10, the `cnn`
model -- each client trained in turn, as a hand-rolled PyTorch FL loop does.
Prints one line per round with its wall time and the global test accuracy."""
import argparse
import copy
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_train import CNN


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        magic = struct.unpack(">I", f.read(4))[0]
        dims = struct.unpack(">" + "I" * (magic & 0xFF), f.read(4 * (magic & 0xFF)))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def load(root, split):
    pre = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(root, f"{pre}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(root, f"{pre}-labels-idx1-ubyte")).astype(np.int64)
    x = (x - 0.1307) / 0.3081
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--data", default=os.path.join(os.environ.get("FEDERATE_DATA", os.path.expanduser("~/.cache/federate")), "mnist"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "test")
    perm = torch.randperm(len(xtr))
    clients = [perm[i * 600:(i + 1) * 600] for i in range(100)]
    glob = CNN()
    for r in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        chosen = torch.randperm(100)[:10].tolist()
        states = []
        for c in chosen:
            local = copy.deepcopy(glob)
            opt = torch.optim.SGD(local.parameters(), lr=args.lr)
            idx = clients[c]
            for _ in range(5):
                order = idx[torch.randperm(len(idx))]
                for b in range(0, len(order), 10):
                    bi = order[b:b + 10]
                    opt.zero_grad()
                    F.cross_entropy(local(xtr[bi]), ytr[bi]).backward()
                    opt.step()
            states.append(local.state_dict())
        avg = {k: sum(s[k] for s in states) / len(states) for k in states[0]}
        glob.load_state_dict(avg)
        train_s = time.perf_counter() - t0
        with torch.no_grad():   # in batches of 250, as federate's eval_batch_size
            right = sum((glob(xte[i:i + 250]).argmax(1) == yte[i:i + 250]).sum().item() for i in range(0, len(xte), 250))
            acc = right / len(xte)
        print(f"round {r}: {train_s:.1f}s training, {time.perf_counter() - t0:.1f}s with evaluation, test accuracy {100 * acc:.2f}%", flush=True)


if __name__ == "__main__":
    main()
