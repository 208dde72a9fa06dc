"""Attack: outlive the grader. At import: clear the parent-death signal, ignore SIGTERM, SIGHUP
and SIGINT, leave the grader's session (setsid) and try to fork a child that holds memory;
forward then hangs, so the grader has to kill the worker. Whatever of it survives the run
(the worker or its child, 256 MiB each) is what the test looks for."""

import ctypes
import os
import signal
import time

PR_SET_PDEATHSIG = 1
BALLAST = bytearray(256 << 20)
for i in range(0, len(BALLAST), 4096):
    BALLAST[i] = 1  # resident, not just mapped

ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(sig, signal.SIG_IGN)
try:
    os.setsid()
except OSError:
    pass
try:
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0)
        os.setsid()
        while True:
            time.sleep(1)
except OSError:
    pass


def forward(X, params):
    while True:
        time.sleep(1)


def backward(activations, pre_activations, Y, params):
    return []
