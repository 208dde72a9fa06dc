"""Attack: crash the interpreter (read address 0 through ctypes) to take the grader down."""

import ctypes


def forward(X, params):
    return ctypes.string_at(0)


def backward(activations, pre_activations, Y, params):
    return ctypes.string_at(0)
