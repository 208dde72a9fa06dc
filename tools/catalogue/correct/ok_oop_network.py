"""Correct variant: an object-oriented MLP; the required functions are thin wrappers.

Differences from the reference: layers are objects, ReLU is np.clip, weights are drawn with
rng.normal(0, scale) (the same numbers as scale * standard_normal), softmax divides by a
reciprocal, forward returns a NamedTuple and each gradient pair is a NamedTuple too (both
are tuples), and train is a loop over the wrappers.
"""

from typing import NamedTuple

import numpy as np


class ForwardPass(NamedTuple):
    activations: list
    pre_activations: list


class LayerGradient(NamedTuple):
    dW: np.ndarray
    db: np.ndarray


class DenseLayer:
    def __init__(self, weights, bias, is_output):
        self.weights = weights
        self.bias = bias
        self.is_output = is_output

    def linear(self, inputs):
        return np.matmul(inputs, self.weights) + self.bias

    def activate(self, z):
        if self.is_output:
            shifted = z - np.max(z, axis=1, keepdims=True)
            expz = np.exp(shifted)
            return expz * (1.0 / np.sum(expz, axis=1, keepdims=True))
        return np.clip(z, 0.0, None)


class Network:
    def __init__(self, params):
        last = len(params) - 1
        self.layers = [DenseLayer(W, b, k == last) for k, (W, b) in enumerate(params)]

    def run(self, X):
        outputs, linears = [X], []
        for layer in self.layers:
            z = layer.linear(outputs[-1])
            linears.append(z)
            outputs.append(layer.activate(z))
        return ForwardPass(outputs, linears)

    def gradients(self, outputs, linears, targets):
        batch = targets.shape[0]
        error = (outputs[-1] - targets) / batch
        collected = [None] * len(self.layers)
        for k in range(len(self.layers) - 1, -1, -1):
            collected[k] = LayerGradient(outputs[k].T @ error, np.sum(error, axis=0))
            if k:
                error = (error @ self.layers[k].weights.T) * (linears[k - 1] > 0)
        return collected


def init_params(layer_sizes, seed=0):
    generator = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(layer_sizes, layer_sizes[1:]):
        W = generator.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        params.append((W, np.zeros(fan_out)))
    return params


def relu(z):
    return np.clip(z, 0.0, None)


def softmax(z):
    return DenseLayer(None, None, True).activate(z)


def cross_entropy(Y_hat, Y):
    per_sample = -np.sum(Y * np.log(Y_hat + 1e-12), axis=1)
    return float(per_sample.mean())


def forward(X, params):
    return Network(params).run(X)


def backward(activations, pre_activations, Y, params):
    return Network(params).gradients(activations, pre_activations, Y)


def train(X, Y, X_test, Y_test, params, lr=0.5, epochs=10, batch_size=64):
    order_rng = np.random.default_rng(42)
    count = len(X)
    for epoch in range(epochs):
        order = order_rng.permutation(count)
        Xs, Ys = X[order], Y[order]
        for start in range(0, count, batch_size):
            xb, yb = Xs[start:start + batch_size], Ys[start:start + batch_size]
            outs, lins = forward(xb, params)
            for k, (dW, db) in enumerate(backward(outs, lins, yb, params)):
                params[k] = (params[k][0] - lr * dW, params[k][1] - lr * db)
        hits = forward(X_test, params)[0][-1].argmax(axis=1) == Y_test.argmax(axis=1)
        print(f"epoch {epoch}: test accuracy {hits.mean():.4f}")
    return params
