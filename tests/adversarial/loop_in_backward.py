"""Attack: a correct forward, and a backward that never returns (stall the grader)."""

import numpy as np


def forward(X, params):
    outputs, inputs_to_nonlinearity = [X], []
    for layer, (W, b) in enumerate(params):
        Z = outputs[-1] @ W + b
        inputs_to_nonlinearity.append(Z)
        if layer + 1 < len(params):
            outputs.append(np.maximum(Z, 0.0))
        else:
            shifted = np.exp(Z - Z.max(axis=1, keepdims=True))
            outputs.append(shifted / shifted.sum(axis=1, keepdims=True))
    return outputs, inputs_to_nonlinearity


def backward(activations, pre_activations, Y, params):
    while True:
        pass
