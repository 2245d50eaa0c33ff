#!/usr/bin/env python3
"""Reference for `federate bench train`: the same model and batch size trained
with PyTorch (Debian's python3-torch) on random MNIST-shaped data.
Prints samples_per_s and gflops lines like federate's own bench."""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN(nn.Module):
    """McMahan et al. 2017 MNIST CNN; same state_dict names as federate's `cnn`."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(30):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0
    sps = args.steps * args.batch_size / dt
    flops = 2 * (32 * 25 * 784 * 2 + 64 * 800 * 196 * 3 + 3136 * 512 * 3 + 512 * 10 * 3)
    print(f"torch_version: {torch.__version__}")
    print(f"samples_per_s: {sps:.0f}")
    print(f"gflops: {sps * flops / 1e9:.1f}")


if __name__ == "__main__":
    main()
