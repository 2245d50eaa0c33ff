#!/usr/bin/env python3
"""Reference for `federate bench aggregate`: numpy's weighted average of K client
updates of the cnn's size, as a Python FL server writes it: acc += w[i] * u[i]."""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--floats", type=int, default=1663370)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    u = rng.uniform(-1e-3, 1e-3, size=(args.clients, args.floats)).astype(np.float32)
    n = np.arange(500, 500 + args.clients, dtype=np.float64)
    w = (n / n.sum()).astype(np.float32)
    best = 1e30
    for _ in range(args.reps):
        t0 = time.perf_counter()
        acc = np.zeros(args.floats, dtype=np.float32)
        for i in range(args.clients):
            acc += w[i] * u[i]
        best = min(best, time.perf_counter() - t0)
    print(f"ms: {best * 1e3:.1f}")
    print(f"gb_per_s: {u.nbytes / best / 1e9:.2f}")


if __name__ == "__main__":
    main()
