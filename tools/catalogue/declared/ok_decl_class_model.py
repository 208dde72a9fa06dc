"""Correct variant judged through a declaration (ok_decl_class_model.toml beside it, no glue):
the existing code of ADAPTERS.md's ok_adapter_class_model.py, unchanged, without its adapter."""


import numpy as np


class MLP:
    def __init__(self, weights, biases):
        self.weights, self.biases = weights, biases
        self.cache = None

    def forward(self, X):
        acts, zs = [X], []
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = acts[-1] @ W + b
            zs.append(z)
            if i == len(self.weights) - 1:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                acts.append(e / e.sum(axis=1, keepdims=True))
            else:
                acts.append(np.maximum(z, 0))
        self.cache = (acts, zs)
        return acts[-1]

    def backward(self, Y):
        acts, zs = self.cache
        delta = (acts[-1] - Y) / len(Y)
        self.grads = []
        for i in reversed(range(len(self.weights))):
            self.grads.insert(0, (acts[i].T @ delta, delta.sum(axis=0)))
            if i:
                delta = (delta @ self.weights[i].T) * (zs[i - 1] > 0)
        return self.grads
