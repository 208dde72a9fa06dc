"""Attack: read the suite's golden fixtures (expected outputs) and other students' files.
backward reports what it could see, so the grader's message proves what was (in)visible."""

import glob
import os

SEEN = []
for pattern in ("/work/*/fixtures/*", "/*/fixtures/*", "/*/*/fixtures/*", "/work/*/conformance/*.py",
                "/work/shared/mnist/*", os.path.join(os.path.dirname(os.path.abspath(__file__)), "*"),
                "/tmp/*", "/tmp/*/*"):
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as f:
                f.read(16)
            SEEN.append(path)
        except OSError:
            pass
OWN = os.path.abspath(__file__)
SEEN = [p for p in SEEN if p != OWN]


def forward(X, params):
    raise RuntimeError(f"files visible to the candidate: {sorted(SEEN)[:20]}")


def backward(activations, pre_activations, Y, params):
    raise RuntimeError(f"files visible to the candidate: {sorted(SEEN)[:20]}")
