"""Buggy variant judged through a declaration (bug_decl_fused_update.toml beside it): the training
step that updates in place, with the ReLU mask of the layer itself instead of the layer below."""


import numpy as np


class Network:
    def __init__(self, weights, biases):
        self.W, self.b = weights, biases

    def feedforward(self, X):
        self.a, self.z = [X], []
        for i in range(len(self.W)):
            z = self.a[-1] @ self.W[i] + self.b[i]
            self.z.append(z)
            if i == len(self.W) - 1:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                self.a.append(e / e.sum(axis=1, keepdims=True))
            else:
                self.a.append(np.maximum(z, 0))
        return self.a[-1]

    def backprop_and_step(self, Y, lr):
        delta = (self.a[-1] - Y) / len(Y)
        for i in reversed(range(len(self.W))):
            dW, db = self.a[i].T @ delta, delta.sum(axis=0)
            if i:
                delta = (delta @ self.W[i].T) * (self.z[i] > 0)  # the i-1 bug: this layer's mask
            self.W[i] -= lr * dW  # update fused into backward
            self.b[i] -= lr * db
