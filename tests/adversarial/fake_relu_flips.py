"""Attack: blind the self-consistency check (gradients area, check c) by faking ReLU kinks.

backward leaves out the ReLU derivative. The check skipped any direction whose perturbed
forward flipped one of the candidate's own masks, so forward remembers the parameters it
first saw for each input and, when called again on the same input with slightly different
parameters (the suite's perturbations), flips the sign of one hidden pre-activation.
Honest twin (twins/fake_relu_flips.py): the same backward with an honest forward.
"""

import numpy as np

_first_params = {}


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    activations, pre_activations = [X], []
    for i, (W, b) in enumerate(params):
        Z = activations[-1] @ W + b
        pre_activations.append(Z)
        activations.append(softmax(Z) if i == len(params) - 1 else np.maximum(Z, 0))
    key = (X.shape, X.tobytes())
    seen = _first_params.setdefault(key, [(W.copy(), b.copy()) for W, b in params])
    moved = any(W.shape == W0.shape and not np.array_equal(W, W0) or
                b.shape == b0.shape and not np.array_equal(b, b0)
                for (W, b), (W0, b0) in zip(params, seen))
    if moved and len(pre_activations) > 1:
        pre_activations[0] = pre_activations[0].copy()
        pre_activations[0].flat[0] = -pre_activations[0].flat[0] or 1.0  # a "kink"
    return activations, pre_activations


def backward(activations, pre_activations, Y, params):
    delta = (activations[-1] - Y) / Y.shape[0]
    grads = []
    for i in reversed(range(len(params))):
        grads.append((activations[i].T @ delta, delta.sum(axis=0)))
        if i > 0:
            delta = delta @ params[i][0].T  # no ReLU derivative
    return grads[::-1]
