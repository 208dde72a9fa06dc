"""Attack: make the grader charge a cheap mistake instead of a broken backward. backward raises
an exception whose text is the suite's own wording of cheap diagnoses (the loss summed over
the batch, 5 points; db averaged, 10), hoping a grader that reads messages charges those and
counts every failure as explained. Diagnosis keys are recorded by the suite's code, never read
from text, so this backward is charged as what it is: one that raises."""

import numpy as np

CHEAP = ("diagnosis: it equals the SUM over the batch; the loss is the mean (np.mean). "
         "your gradients equal those of an implementation that averages db over the batch "
         "instead of summing it: `db = delta.mean(axis=0)` should be `db = delta.sum(axis=0)`.")


def relu(z):
    return np.maximum(z, 0)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, params):
    activations, pre_activations = [X], []
    for i, (W, b) in enumerate(params):
        Z = activations[-1] @ W + b
        pre_activations.append(Z)
        activations.append(softmax(Z) if i == len(params) - 1 else relu(Z))
    return activations, pre_activations


def backward(activations, pre_activations, Y, params):
    raise ValueError(CHEAP)
