"""Attack: exit with status 0 while being imported."""

import os

os._exit(0)


def forward(X, params):  # never reached
    raise AssertionError


def backward(activations, pre_activations, Y, params):  # never reached
    raise AssertionError
