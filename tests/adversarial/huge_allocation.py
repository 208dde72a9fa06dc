"""Attack: allocate and touch far more memory than the machine has (the OOM killer may pick
the grader), here 64 GiB per call."""

import numpy as np


def forward(X, params):
    hog = np.ones((8 << 30,))  # 8 Gi float64 = 64 GiB
    return [X, hog], [hog]


def backward(activations, pre_activations, Y, params):
    hog = np.ones((8 << 30,))
    return [(hog, hog)]
