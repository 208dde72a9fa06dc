"""Attack (issue 21 §5): randomness nothing can seed. Correct backprop, but at import each
process reads /dev/urandom and the clock, and perturbs every output by a relative 1e-6 from
them: the same inputs give other outputs in every process (yet the same ones twice within
one), so its grade could differ between runs. The determinism check (two fresh workers)
must fail it, in every run."""

import time

import numpy as np

with open("/dev/urandom", "rb") as _source:
    _bits = (int.from_bytes(_source.read(8), "big") ^ time.time_ns()) >> 11  # 53 random bits
# A relative 1e-6 to 2e-6: two processes agree within the check's ulps with odds ~1e-7.
JITTER = 1.0 + 1e-6 * (1.0 + _bits / 2.0**53)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward(X, params):
    acts, pres = [X], []
    for i, (W, b) in enumerate(params):
        z = (acts[-1] @ W + b) * JITTER
        pres.append(z)
        acts.append(_softmax(z) if i == len(params) - 1 else np.maximum(z, 0))
    return acts, pres


def backward(activations, pre_activations, Y, params):
    n = Y.shape[0]
    delta = (activations[-1] - Y) / n
    grads = []
    for layer in range(len(params) - 1, -1, -1):
        W = params[layer][0]
        grads.append((activations[layer].T @ delta * JITTER, delta.sum(axis=0) * JITTER))
        if layer:
            delta = (delta @ W.T) * (pre_activations[layer - 1] > 0)
    grads.reverse()
    return grads
