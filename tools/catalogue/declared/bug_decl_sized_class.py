"""Buggy variant judged through a declaration (bug_decl_sized_class.toml beside it): the output error
is not divided by the batch size. A class built from its layer sizes (it draws its own weights; the suite puts its case's params in
the attributes model_params names), samples in columns, column biases, forward caching what
backward reads, gradients as two lists."""

import numpy as np


class Network:
    def __init__(self, sizes):
        rng = np.random.default_rng(0)
        self.sizes = sizes
        self.weights = [rng.standard_normal((n, m)) * np.sqrt(2.0 / m) for m, n in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.zeros((n, 1)) for n in sizes[1:]]

    def feedforward(self, X):
        self.activations, self.zs = [X], []
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = W @ self.activations[-1] + b
            self.zs.append(z)
            if i == len(self.weights) - 1:
                e = np.exp(z - z.max(axis=0, keepdims=True))
                self.activations.append(e / e.sum(axis=0, keepdims=True))
            else:
                self.activations.append(np.maximum(z, 0))
        return self.activations[-1]

    def backprop(self, Y):
        delta = self.activations[-1] - Y  # no division by the batch size
        nabla_w, nabla_b = [None] * len(self.weights), [None] * len(self.weights)
        for i in reversed(range(len(self.weights))):
            nabla_w[i] = delta @ self.activations[i].T
            nabla_b[i] = delta.sum(axis=1, keepdims=True)
            if i:
                delta = (self.weights[i].T @ delta) * (self.zs[i - 1] > 0)
        return nabla_w, nabla_b
