"""Fits the polynomial for e^r on |r| <= ln(2)/2 that `sigmoid_f32` (src/tensor/dtype.rs) uses.

A near-minimax fit of the relative error: least squares on Chebyshev nodes, reweighted
(Lawson's iteration) so the error's peaks level out, then the coefficients rounded to f32.
It prints the coefficients and the worst relative error of the f32 evaluation in the same
order of operations as the Rust code (Estrin's scheme), over 200,001 points of the interval.

    python scripts/fit_exp_poly.py [--degree 6]

Needs only NumPy. The Rust code pins the printed values; rerunning gives the same ones.
"""

import argparse

import numpy as np


def fit(degree, nodes=2000, rounds=200):
    half = np.log(2.0) / 2.0
    k = np.arange(nodes)
    r = half * np.cos(np.pi * (k + 0.5) / nodes)
    basis = np.vander(r, degree + 1, increasing=True)
    target = np.exp(r)
    weights = np.ones(nodes)
    for _ in range(rounds):
        # Relative error: divide each row by the value it should reach.
        scale = np.sqrt(weights) / target
        coeffs, *_ = np.linalg.lstsq(basis * scale[:, None], target * scale, rcond=None)
        error = np.abs(basis @ coeffs - target) / target
        weights = weights * error
        weights /= weights.sum()
    return coeffs.astype(np.float32)


def estrin_f32(c, r):
    """The Rust code's evaluation order, in f32."""
    r2 = r * r
    if len(c) == 7:
        r4 = r2 * r2
        p01 = c[0] + r * c[1]
        p23 = c[2] + r * c[3]
        p45 = c[4] + r * c[5]
        return (p01 + r2 * p23) + r4 * (p45 + r2 * c[6])
    return np.polyval(c[::-1], r)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--degree", type=int, default=6)
    args = parser.parse_args()
    c = fit(args.degree)
    half = np.log(2.0) / 2.0
    r = np.linspace(-half, half, 200001).astype(np.float32)
    got = estrin_f32(c, r).astype(np.float64)
    want = np.exp(r.astype(np.float64))
    print("coefficients (c0 first):", ", ".join(repr(float(v)) for v in c))
    print("worst relative error in f32:", float(np.max(np.abs(got - want) / want)))


if __name__ == "__main__":
    main()
