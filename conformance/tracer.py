"""Record the arrays each line of the candidate's own files assigns, for one call.

Standalone on purpose (the standard library and numpy only, no project import): the isolated
worker executes this file's source before the candidate is imported (``WORKER_PRELOAD``), and
the in-process candidate imports it. ``traced_call`` runs the function under ``sys.settrace``;
at each line event of a traced frame the locals that changed since the frame's previous line
are attributed to that previous line (what the line assigned). A ``return`` event records the
returned array (a helper's ``return (p - y) / n``). Only frames whose code lives under one of
the candidate's roots are traced, so numpy's and the suite's lines are never recorded.

Bounded: at most ``max_events`` line events, ``max_records`` recorded arrays of at most
``max_size`` entries each and ``max_bytes`` in all, ``max_seconds`` of tracing; past a bound tracing stops and the
call finishes untraced (``complete`` is then False). The record is plain data (strings,
ints, float64 arrays): in the isolated mode it crosses the wire like any other answer and
is treated as untrusted there (conformance/localise.py only ever reads it as text to cite).
"""

import os
import sys
import time
from typing import Any

import numpy as np

# Far above what one small case of an MLP needs (a few hundred lines), far below the wire limits
# (4096 arrays per answer); half a second bounds the extra time of a failing verdict.
# 16 MiB of recorded arrays at most (the worker's memory limit is shared with the candidate).
TRACE_LIMITS = {"max_events": 100000, "max_records": 3000, "max_size": 20000, "max_seconds": 0.5,
                "max_bytes": 16 << 20}


class TraceBudgetExceeded(BaseException):
    """Raised into the traced call when ``stop_call`` is set and a bound is reached (an
    in-process call has no other time limit). A BaseException: ``except Exception`` in the
    candidate's code does not swallow it."""


def traced_call(function, args, kwargs, roots, limits=None, exclude=(), stop_call=False, keep_result=False):
    """Call ``function(*args, **kwargs)`` under a line tracer restricted to files under
    ``roots``. Returns ``{"records": [[file, line, func, frame_no, name, array, in_place], ...],
    "complete": bool, "raised": str}``; ``keep_result`` adds the call's own value (in-process:
    one call gives both), ``stop_call`` ends the call itself at a bound (in-process calls have
    no other time limit)."""
    limits = dict(TRACE_LIMITS, **(limits or {}))
    roots = tuple(os.path.realpath(str(r)) + os.sep for r in roots)
    exclude = tuple(os.path.realpath(str(r)) + os.sep for r in exclude)
    records: list[list[Any]] = []
    state = {"events": 0, "stopped": False, "frames": 0, "bytes": 0}
    began = time.monotonic()
    known = {}  # code filename -> traced?
    frames: dict[int, list[Any]] = {}  # id(frame) -> [frame_no, last_line, snapshot {name: array}]

    def wanted(filename):
        if filename not in known:
            real = os.path.realpath(filename) if filename and not filename.startswith("<") else ""
            known[filename] = (bool(real) and real.startswith(roots) and not real.startswith(exclude)
                               and "site-packages" not in real)
        return known[filename]

    def as_array(value):
        """A float64 copy of an ndarray or a real number, or None (anything else, too big)."""
        try:
            if isinstance(value, (bool, np.bool_)):
                return None
            if isinstance(value, (int, float, np.integer, np.floating)):
                return np.array(float(value), dtype=np.float64)
            if isinstance(value, np.ndarray) and 0 < value.size <= limits["max_size"] \
                    and value.dtype.kind in "biuf" and value.ndim <= 3:
                return np.array(value, dtype=np.float64, copy=True, subok=False)
        except Exception:  # noqa: BLE001 - a hostile subclass or number: not recorded
            return None
        return None

    def values_of(frame):
        found: dict[str, tuple[int, np.ndarray]] = {}
        try:
            local = dict(frame.f_locals)
        except Exception:  # noqa: BLE001
            return found
        for name, value in local.items():
            arr = as_array(value)
            if arr is not None:
                found[name] = (id(value), arr)
        owner = local.get("self")
        if owner is not None:  # a method's attributes: self.W1, self.z1 ...
            try:
                attrs = dict(object.__getattribute__(owner, "__dict__"))
            except Exception:  # noqa: BLE001 - no instance dict (slots) or hostile
                attrs = {}
            for name, value in list(attrs.items())[:200]:
                arr = as_array(value) if type(name) is str else None
                if arr is not None:
                    found["self." + name] = (id(value), arr)
        return found

    def record(entry, frame, line, now):
        snapshot = entry[2]
        for name, (ident, arr) in now.items():
            old_ident, old = snapshot.get(name, (None, None))
            if old is None or old.shape != arr.shape or not np.array_equal(old, arr, equal_nan=True):
                state["bytes"] += arr.nbytes
                if len(records) >= limits["max_records"] or state["bytes"] > limits["max_bytes"]:
                    stop()
                    return
                # in place: the same object with new content (``Z -= m``, ``out=Z``)
                inplace = int(old is not None and ident == old_ident and arr.ndim > 0)
                records.append([frame.f_code.co_filename, int(line), frame.f_code.co_name,
                                int(entry[0]), name, arr, inplace])
        entry[2] = now

    def stop():
        state["stopped"] = True

    def local_trace(frame, event, arg):
        if state["stopped"] and not stop_call:
            return None
        state["events"] += 1
        if state["events"] > limits["max_events"] or (
                state["events"] % 256 == 0 and time.monotonic() - began > limits["max_seconds"]):
            stop()
            if stop_call:
                raise TraceBudgetExceeded("the traced call exceeded the trace's bounds")
            return None
        if state["stopped"]:  # (stop_call: recording is over, the clock still runs)
            return local_trace
        entry = frames.get(id(frame))
        if entry is None:
            return None
        if event == "line":
            if entry[1] is not None:
                record(entry, frame, entry[1], values_of(frame))
            entry[1] = frame.f_lineno
        elif event == "return":
            if entry[1] is not None:
                record(entry, frame, entry[1], values_of(frame))
                arr = as_array(arg)
                if arr is None and entry[0] == 1:  # the called function's own return line
                    arr = np.zeros(0)
                size = (arr.nbytes * 2 if arr is not None else 0) + sum(v.nbytes for _, v in entry[3].values())
                if arr is not None and (len(records) + 2 + len(entry[3]) > limits["max_records"]
                                        or state["bytes"] + size > limits["max_bytes"]):
                    stop()
                elif arr is not None:
                    state["bytes"] += size
                    # a helper's arguments as it was called, its return value, and that value again
                    # on the caller's line (softmax called where relu belongs is the caller's line)
                    for name, (_, value) in entry[3].items():
                        records.append([frame.f_code.co_filename, int(frame.f_code.co_firstlineno),
                                        frame.f_code.co_name, int(entry[0]), "<arg>" + name, value, 0])
                    records.append([frame.f_code.co_filename, int(entry[1]), frame.f_code.co_name,
                                    int(entry[0]), "<return>", arr, 0])
                    caller = frames.get(id(frame.f_back)) if frame.f_back is not None else None
                    if caller is not None and caller[1] is not None and arr.size:
                        records.append([frame.f_back.f_code.co_filename, int(caller[1]),
                                        frame.f_back.f_code.co_name, int(caller[0]), "<call>", arr, 0])
            frames.pop(id(frame), None)
        return local_trace

    def global_trace(frame, event, arg):
        if event != "call" or not wanted(frame.f_code.co_filename):
            return None
        if state["stopped"]:
            return local_trace if stop_call else None
        state["frames"] += 1
        # The arguments as the frame starts: what it did not assign is not recorded as its own.
        start = values_of(frame)
        frames[id(frame)] = [state["frames"], None, start, dict(list(start.items())[:8])]
        return local_trace

    raised = ""
    result = None
    previous = sys.gettrace()
    sys.settrace(global_trace)
    try:
        result = function(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the candidate's exception is only noted
        try:
            raised = type(exc).__name__
        except BaseException:  # noqa: BLE001
            raised = "exception"
    finally:
        sys.settrace(previous)
    out = {"records": records, "complete": not state["stopped"], "raised": str(raised)[:200]}
    if keep_result:  # in-process only: the worker never sends the candidate's own objects back
        out["result"] = result
    return out
