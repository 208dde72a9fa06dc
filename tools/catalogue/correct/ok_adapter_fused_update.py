"""Correct variant (ADAPTERS.md, recipe 6): existing code whose training step computes the
gradients and updates the weights in place, never returning the gradients.

The adapter runs that step on copies of the params with lr = 1 and reads the gradients back
as old - new. (This loses the low bits of gradients far smaller than the weights: about
eps * |W|, far inside the tolerance; the suite judges the result at its precision.)
"""

import numpy as np


# ---- existing code (unchanged) -------------------------------------------------------
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
                delta = (delta @ self.W[i].T) * (self.z[i - 1] > 0)
            self.W[i] -= lr * dW  # update fused into backward
            self.b[i] -= lr * db


# ---- adapter ----------------------------------------------------------------------------
def forward(X, params):
    net = Network([W.copy() for W, _ in params], [b.copy() for _, b in params])
    net.feedforward(X)
    return net.a, net.z


def backward(activations, pre_activations, Y, params):
    net = Network([W.copy() for W, _ in params], [b.copy() for _, b in params])
    net.a, net.z = list(activations), list(pre_activations)
    net.backprop_and_step(Y, lr=1.0)
    return [(W - W_new, b - b_new) for (W, b), W_new, b_new in zip(params, net.W, net.b)]
