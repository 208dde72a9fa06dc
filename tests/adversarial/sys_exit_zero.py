"""Attack: end the process with a success status in the middle of a check, hoping the runner
reads "exit 0" as "all tests passed"."""

import sys

import numpy as np


def forward(X, params):
    sys.exit(0)


def backward(activations, pre_activations, Y, params):
    sys.exit(0)


def softmax(z):
    return np.zeros_like(z)
