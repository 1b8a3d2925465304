"""PyTorch yardstick for examples/step_bench.rs: times the same three workloads on the CPU.

1. One MNIST MLP training step: 784-256-128-10, ReLU, cross-entropy, Adam, batch 128.
2. One char-level GPT training step: vocab 65, block 128, 4 layers, 4 heads, width 128,
   batch 16, AdamW (GELU tanh form, pre-LayerNorm blocks, causal attention).
3. Causal attention forward + backward: batch 16, 4 heads, T 128, head dim 32.
4. With --mnist DIR: one training epoch of the MLP in (1) on the MNIST training set (loaded
   into memory first), reshuffled, cut into 469 batches of 128 (the last one 96), each batch
   gathered, scaled to floats and normalized, then one training step.

Prints one JSON object per line: {"name": ..., "ms": median milliseconds per run}.
    python scripts/pytorch_steps.py --threads 2
"""

import argparse
import gzip
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def mnist_step():
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def read_idx(path, header):
    with gzip.open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()[header:]), dtype=torch.uint8)


def mnist_epoch(mnist_dir):
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Real images, not random bytes: on noise the ReLUs die, and Adam's decaying moments of
    # their zero gradients sit in denormal floats, which time the CPU's slow path instead.
    images = read_idx(os.path.join(mnist_dir, "train-images-idx3-ubyte.gz"), 16).view(60000, 784)
    labels = read_idx(os.path.join(mnist_dir, "train-labels-idx1-ubyte.gz"), 8).long()

    def epoch():
        order = torch.randperm(60000)
        for start in range(0, 60000, 128):
            batch = order[start : start + 128]
            x = (images[batch].float() / 255.0 - 0.1307) / 0.3081
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), labels[batch]).backward()
            opt.step()

    return epoch


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.h, c // self.h).transpose(1, 2)
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        x = x + self.c_proj(a.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab=65, block=128, layers=4, heads=4, width=128):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def gpt_step():
    model = Gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, 65, (16, 128))
    y = torch.randint(0, 65, (16, 128))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        F.cross_entropy(logits.view(-1, 65), y.view(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def attention_fwd_bwd():
    q, k, v = (torch.randn(16, 4, 128, 32, requires_grad=True) for _ in range(3))
    g = torch.randn(16, 4, 128, 32)

    def run():
        for t in (q, k, v):
            t.grad = None
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)

    return run


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mnist", help="directory of the gzipped MNIST files: also time an epoch")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    workloads = [
        ("mnist_mlp_step", mnist_step, 5, args.runs * 4),
        ("gpt_step", gpt_step, 5, args.runs),
        ("attention_fwd_bwd", attention_fwd_bwd, 5, args.runs * 2),
    ]
    if args.mnist:
        workloads.append(("mnist_epoch", lambda: mnist_epoch(args.mnist), 1, max(args.runs // 6, 3)))
    for name, make, warmup, runs in workloads:
        ms = median_ms(make(), warmup=warmup, runs=runs)
        print(json.dumps({"name": name, "ms": ms, "threads": args.threads, "torch": torch.__version__}), flush=True)
