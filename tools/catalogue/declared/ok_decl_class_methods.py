"""Correct variant judged through a declaration (no glue): a class whose forward method (with
another name) caches what its backward method reads, built from the params."""

import numpy as np


class Net:
    def __init__(self, params):
        self.params = params

    def predict_proba(self, X):
        self.A, self.Z = [X], []
        for i, (W, b) in enumerate(self.params):
            z = self.A[-1] @ W + b
            self.Z.append(z)
            if i == len(self.params) - 1:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                self.A.append(e / e.sum(axis=1, keepdims=True))
            else:
                self.A.append(np.maximum(z, 0))
        return self.A[-1]

    def gradients(self, Y):
        delta = (self.A[-1] - Y) / Y.shape[0]
        grads = []
        for i in reversed(range(len(self.params))):
            grads.insert(0, (self.A[i].T @ delta, delta.sum(axis=0)))
            if i:
                delta = (delta @ self.params[i][0].T) * (self.Z[i - 1] > 0)
        return grads
