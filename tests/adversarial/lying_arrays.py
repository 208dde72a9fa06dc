"""Attack: results whose comparisons lie. An ndarray subclass equal to everything and close to
everything (its ufuncs answer "all true"), and a non-array whose __array__ / __float__ /
__eq__ say whatever the checker hopes to hear."""

import numpy as np


class AgreeableArray(np.ndarray):
    def __eq__(self, other):
        return True

    __ne__ = lambda self, other: False  # noqa: E731

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        shape = np.broadcast_shapes(*(np.shape(i) for i in inputs if hasattr(i, "shape")))
        if ufunc in (np.isclose, np.equal, np.less_equal, np.isfinite, np.less):
            return np.ones(shape, dtype=bool)
        return np.zeros(shape)

    def __array_function__(self, func, types, args, kwargs):
        return True


class Chameleon:
    """Not an array at all, but converts to whatever is asked."""

    def __init__(self, shape):
        self.shape = shape

    def __array__(self, dtype=None, copy=None):
        return np.zeros(self.shape)

    def __eq__(self, other):
        return True

    def __float__(self):
        return 0.0

    def __len__(self):
        return self.shape[0]


def forward(X, params):
    activations, pre = [X], []
    for W, b in params:
        shape = (X.shape[0], W.shape[1])
        pre.append(np.zeros(shape).view(AgreeableArray))
        activations.append(Chameleon(shape))
    return activations, pre


def backward(activations, pre_activations, Y, params):
    return [(np.zeros_like(W).view(AgreeableArray), Chameleon(b.shape)) for W, b in params]


def cross_entropy(Y_hat, Y):
    return Chameleon((1,))
