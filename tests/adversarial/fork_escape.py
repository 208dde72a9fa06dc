"""Attack: leave processes behind (a child that outlives the check and tampers later), via
os.fork and via subprocess. Each function re-raises what stopped it, so the failure message
shows which defence held."""

import os
import subprocess
import time

MARKER = "/tmp/bp-adversarial-fork-escaped"


def forward(X, params):
    pid = os.fork()
    if pid == 0:  # the child: wait until the grader is no longer looking, then tamper
        time.sleep(2)
        with open(MARKER, "w") as f:
            f.write("escaped")
        os._exit(0)
    return [X], []


def backward(activations, pre_activations, Y, params):
    subprocess.Popen(["/bin/sh", "-c", f"sleep 2; echo escaped > {MARKER}"])
    return []
