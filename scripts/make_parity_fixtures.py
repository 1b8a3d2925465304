"""Writes PyTorch parity fixtures for glassbox's tests (tests/parity.rs).

Each fixture is a safetensors file holding a layer's weights (under glassbox's parameter
names), its input, its output, and the gradients of `sum(output * upstream)` with respect to
the input and every parameter (named `grad.<name>`), for a fixed random `upstream`. All in
float64, so the comparison measures our formulas, not float32 rounding; the tests also run
the same case in float32 against a looser tolerance.

Run from the repository root with PyTorch and safetensors installed:
    python scripts/make_parity_fixtures.py
The files land in tests/fixtures/parity/ and are committed, so the tests need no PyTorch.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join("tests", "fixtures", "parity")
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)


def finish(name, inputs, params, output, metadata):
    """Backpropagates sum(output * upstream) and saves everything under `name`."""
    upstream = torch.randn_like(output)
    (output * upstream).sum().backward()
    tensors = {"upstream": upstream, "output": output.detach()}
    for key, t in {**inputs, **params}.items():
        tensors[key] = t.detach()
        if t.grad is not None:
            tensors["grad." + key] = t.grad
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, name + ".safetensors"), metadata)
    print(f"wrote {name}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in sorted(tensors.items())))


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_()


def gpt_block():
    """Pre-LayerNorm GPT block: x + attn(ln_1(x)), then + mlp(ln_2(x)), GELU in tanh form."""
    b, t, c, h = 2, 5, 8, 2
    p = {
        "ln_1.weight": (1 + 0.1 * torch.randn(c)).requires_grad_(),
        "ln_1.bias": leaf(c, scale=0.1),
        "attn.c_attn.weight": leaf(3 * c, c, scale=0.3),
        "attn.c_attn.bias": leaf(3 * c, scale=0.1),
        "attn.c_proj.weight": leaf(c, c, scale=0.3),
        "attn.c_proj.bias": leaf(c, scale=0.1),
        "ln_2.weight": (1 + 0.1 * torch.randn(c)).requires_grad_(),
        "ln_2.bias": leaf(c, scale=0.1),
        "mlp.c_fc.weight": leaf(4 * c, c, scale=0.3),
        "mlp.c_fc.bias": leaf(4 * c, scale=0.1),
        "mlp.c_proj.weight": leaf(c, 4 * c, scale=0.3),
        "mlp.c_proj.bias": leaf(c, scale=0.1),
    }
    x = leaf(b, t, c)
    y = F.layer_norm(x, (c,), p["ln_1.weight"], p["ln_1.bias"], 1e-5)
    qkv = F.linear(y, p["attn.c_attn.weight"], p["attn.c_attn.bias"])
    q, k, v = qkv.split(c, dim=2)
    heads = lambda z: z.view(b, t, h, c // h).transpose(1, 2)
    a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    a = a.transpose(1, 2).reshape(b, t, c)
    x1 = x + F.linear(a, p["attn.c_proj.weight"], p["attn.c_proj.bias"])
    z = F.layer_norm(x1, (c,), p["ln_2.weight"], p["ln_2.bias"], 1e-5)
    z = F.gelu(F.linear(z, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), approximate="tanh")
    out = x1 + F.linear(z, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])
    finish("gpt_block", {"input": x}, p, out, {"n_head": str(h)})


def cross_entropy():
    """Mean cross-entropy of logits against class indices (stored as float64 values)."""
    logits = leaf(6, 5, scale=2.0)
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = F.cross_entropy(logits, targets)
    finish("cross_entropy", {"input": logits}, {"targets": targets.double()}, loss, {})


def lstm():
    """One-layer batch-first LSTM over a short sequence; output = all hidden states."""
    batch, steps, features, hidden = 2, 4, 3, 5
    layer = torch.nn.LSTM(features, hidden, batch_first=True)
    params = {name: param for name, param in layer.named_parameters()}
    x = leaf(batch, steps, features)
    out, _ = layer(x)
    finish("lstm", {"input": x}, params, out, {"hidden": str(hidden)})


def conv_pool():
    """Conv2d (stride 2, padding 1, bias) followed by 2x2 max pooling, NCHW."""
    conv = torch.nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1)
    params = {name: param for name, param in conv.named_parameters()}
    x = leaf(2, 2, 9, 7)
    out = F.max_pool2d(conv(x), kernel_size=2, stride=2)
    finish("conv_pool", {"input": x}, params, out, {"stride": "2", "padding": "1", "pool": "2"})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gpt_block()
    cross_entropy()
    lstm()
    conv_pool()
