"""Reference implementation of the textbook's from-scratch NumPy MLP (section 9.8)."""

from conformance.reference.mlp import (
    Params,
    accuracy,
    backward,
    cross_entropy,
    forward,
    init_params,
    relu,
    softmax,
    train,
)

__version__ = "0.1.0"

__all__ = [
    "Params",
    "accuracy",
    "backward",
    "cross_entropy",
    "forward",
    "init_params",
    "relu",
    "softmax",
    "train",
]
