"""Attack: os._exit(0) skips every finally/atexit handler; in-process it would end pytest
with status 0 before any failure is reported."""

import os


def forward(X, params):
    os._exit(0)


def backward(activations, pre_activations, Y, params):
    os._exit(0)
