"""Attack: find the reference implementation's source on disk and execute it as my own
(no import statement to spot). If nothing is found, return zeros."""

import glob
import os

import numpy as np

FOUND = []
for pattern in ("/work/*/reference/mlp.py", "/*/reference/mlp.py", "/*/*/*/reference/mlp.py",
                "/work/*/conformance/reference/mlp.py", "/*/*/conformance/reference/mlp.py",
                "/*/*/*/*/conformance/reference/mlp.py",
                os.path.join(os.getcwd(), "..", "*", "reference", "mlp.py"),
                os.path.expanduser("~/*/reference/mlp.py")):
    FOUND += glob.glob(pattern)
if FOUND:
    exec(open(FOUND[0]).read())  # defines forward, backward, ... from the stolen source
else:
    def forward(X, params):
        return [X] + [np.zeros((X.shape[0], W.shape[1])) for W, _ in params], \
            [np.zeros((X.shape[0], W.shape[1])) for W, _ in params]

    def backward(activations, pre_activations, Y, params):
        raise RuntimeError(f"nothing to steal: the reference source was not found ({FOUND})")
