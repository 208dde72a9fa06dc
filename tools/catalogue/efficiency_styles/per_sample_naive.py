"""Measured by tools/bench_efficiency.py (not a catalogue variant). Correct: per-sample loop written naively (new arrays every step, forward recomputed per sample)."""
import numpy as np

def relu(z): return np.maximum(0, z)
def relu_prime(z): return (z > 0).astype(float)
def softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)

def forward(X, params):
    A, Z = [X], []
    for i, (W, b) in enumerate(params):
        z = A[-1] @ W + b
        Z.append(z)
        A.append(softmax(z) if i == len(params) - 1 else relu(z))
    return A, Z

def backward(activations, pre_activations, Y, params):
    n = len(Y)
    dWs = [np.zeros(W.shape) for W, b in params]
    dbs = [np.zeros(b.shape) for W, b in params]
    for s in range(n):
        x = activations[0][s]
        a_list, z_list = [x], []
        for i, (W, b) in enumerate(params):  # this sample's forward, again
            z = np.dot(a_list[-1], W) + b
            z_list.append(z)
            a_list.append(softmax(z) if i == len(params) - 1 else relu(z))
        d = (a_list[-1] - Y[s]) / n
        for i in reversed(range(len(params))):
            dWs[i] = dWs[i] + np.outer(a_list[i], d)
            dbs[i] = dbs[i] + d
            if i > 0:
                d = np.dot(params[i][0], d) * relu_prime(z_list[i - 1])
    return list(zip(dWs, dbs))
