"""Buggy variant judged through a declaration (bug_decl_layer_cache.toml beside it): the
column-major style of a popular online course, whose ReLU mask is read from the next layer's Z. Parameters in a dict, forward returns (AL, caches)
with one ((A_prev, W, b), Z) tuple per layer, backward returns a dict of gradients (dA keys too),
and helpers relu/softmax that return (A, Z) pairs (so the declaration maps no function to them)."""
import numpy as np


def initialize_parameters_deep(layer_dims):
    rng = np.random.default_rng(1)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters["W" + str(l)] = rng.standard_normal((layer_dims[l], layer_dims[l - 1])) * np.sqrt(2 / layer_dims[l - 1])
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def linear_forward(A, W, b):
    Z = W @ A + b
    return Z, (A, W, b)


def relu(Z):
    return np.maximum(0, Z), Z


def softmax(Z):
    e = np.exp(Z - Z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True), Z


def linear_activation_forward(A_prev, W, b, activation):
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = (softmax(Z) if activation == "softmax" else relu(Z))
    return A, (linear_cache, activation_cache)


def L_model_forward(X, parameters):
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L):
        A, cache = linear_activation_forward(A, parameters["W" + str(l)], parameters["b" + str(l)], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters["W" + str(L)], parameters["b" + str(L)], "softmax")
    caches.append(cache)
    return AL, caches


def compute_cost(AL, Y):
    m = Y.shape[1]
    return float(-np.sum(Y * np.log(AL + 1e-12)) / m)


def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = dZ @ A_prev.T / m
    db = np.sum(dZ, axis=1, keepdims=True) / m
    dA_prev = W.T @ dZ
    return dA_prev, dW, db


def relu_backward(dA, Z):
    return dA * (Z > 0)


def L_model_backward(AL, Y, caches):
    grads = {}
    L = len(caches)
    dZ = AL - Y
    linear_cache, _ = caches[L - 1]
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = linear_backward(dZ, linear_cache)
    for l in reversed(range(L - 1)):
        linear_cache, _ = caches[l]
        _, Z = caches[l + 1]  # the i-1 bug: the next layer's Z
        dZ = relu_backward(grads["dA" + str(l + 1)], Z)
        grads["dA" + str(l)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = linear_backward(dZ, linear_cache)
    return grads
