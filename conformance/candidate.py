"""The candidate under test, behind one narrow interface.

Every test talks to the implementation being judged only through a ``Candidate``: it asks
whether a function exists and calls it by name. ``InProcessCandidate`` imports the module
into the test process (friendly: real tracebacks, debuggers work); the isolated candidate
(``conformance.isolation``) runs it in a locked-down worker process and returns validated
plain ndarrays. Tests never know which one they hold, so both modes give the same verdicts.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REQUIRED_FUNCTIONS = ("forward", "backward")
OPTIONAL_FUNCTIONS = ("init_params", "relu", "softmax", "cross_entropy", "train")
DEFAULT_IMPL = "reference.mlp"  # the file itself, so the header shows its sha256


class CandidateError(Exception):
    """The candidate could not answer a call: it raised, crashed, hung, hit a limit or
    returned something that cannot cross the isolation boundary. ``reason`` is the
    human-readable cause (for example ``timeout after 10 s``)."""

    def __init__(self, function: str, reason: str):
        super().__init__(f"{function}(): {reason}")
        self.function = function
        self.reason = reason


class CandidateRaised(CandidateError):
    """The candidate's own code raised inside the worker. The exception itself cannot cross
    the boundary (it would be candidate code), so its type name, message and traceback text
    travel as strings."""

    def __init__(self, function: str, exc_type: str, message: str, traceback_text: str):
        # Reads like the in-process text "ValueError: message" (the suite prefixes "raised").
        reason = f"{exc_type}: {message}" if message else exc_type
        if traceback_text:
            reason += "\n\nTraceback in the isolated worker:\n" + traceback_text.rstrip()
        super().__init__(function, reason)
        self.exc_type, self.exc_message, self.traceback_text = exc_type, message, traceback_text


def failure_text(exc: BaseException) -> str:
    """How a failed call reads after "your forward ...": "raised ValueError: ..." when the
    candidate's code raised (in-process or in the worker), "failed: timeout after 3 s" when
    the call died some other way (crash, limit, invalid output)."""
    if isinstance(exc, CandidateRaised) or not isinstance(exc, CandidateError):
        text = exc.reason if isinstance(exc, CandidateError) else f"{type(exc).__name__}: {exc}"
        return f"raised {text}"
    return f"failed: {exc.reason}"


class Candidate(Protocol):
    """What a test may do with the implementation under test."""

    spec: str  # what the user passed to --impl (dotted name or path)
    module_name: str
    path: Path | None  # the module's source file, if it has one
    sha256: str | None  # sha256 of that file
    load_error: str | None  # None when the module imported and has the required functions
    isolated: bool

    def has(self, function: str) -> bool: ...

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``function`` on private copies of the arguments and return its result."""

    def call_and_inspect(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, tuple]:
        """Like ``call`` but also return the argument copies as they are after the call,
        so a test can tell whether the candidate mutated its inputs."""

    def run_sgd(self, X: Any, Y: Any, params: Any, *, lr: float, epochs: int, batch_size: int,
                seed: int) -> Any:
        """Train ``params`` with the suite's own SGD loop (``conformance.harness.sgd``) driven
        by the candidate's forward/backward; returns the final params. Runs where the
        candidate runs (in-process, or inside the isolated worker without per-call start-up)."""

    def close(self) -> None: ...


def private_copy(obj: Any) -> Any:
    """A deep copy that keeps each array's memory layout: C- and Fortran-ordered arrays stay so,
    and a non-contiguous (strided) array stays a strided view, so a candidate really receives
    the non-contiguous inputs the suite means to test (``copy.deepcopy`` would compact them)."""
    import numpy as np

    if type(obj) is np.ndarray and obj.ndim >= 1 and not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        base = np.zeros(obj.shape[:-1] + (2 * obj.shape[-1],), dtype=obj.dtype)
        view = base[..., ::2]
        view[...] = obj
        return view
    if type(obj) in (list, tuple):
        return type(obj)(private_copy(x) for x in obj)
    if type(obj) is dict:
        return {k: private_copy(v) for k, v in obj.items()}
    return copy.deepcopy(obj)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_spec(spec: str) -> tuple[str, Path | None]:
    """Split an --impl value into (module name, file path if it is a path)."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--impl {spec!r}: no such file {path}")
        return path.stem, path
    return spec, None


@dataclass
class InProcessCandidate:
    """The candidate module imported into this process."""

    spec: str
    module_name: str = ""
    path: Path | None = None
    sha256: str | None = None
    load_error: str | None = None
    isolated: bool = False
    module: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, spec: str) -> "InProcessCandidate":
        cand = cls(spec=spec)
        try:
            cand.module_name, path = resolve_spec(spec)
            if path is not None:  # known before executing it: the header names a broken file too
                cand.path, cand.sha256 = path, file_sha256(path)
                module_spec = importlib.util.spec_from_file_location(cand.module_name, path)
                if module_spec is None or module_spec.loader is None:
                    raise ImportError(f"cannot load {path} as a Python module")
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[cand.module_name] = module
                module_spec.loader.exec_module(module)
            else:
                if os.getcwd() not in sys.path:  # "importable from the current directory"
                    sys.path.insert(0, os.getcwd())
                module = importlib.import_module(cand.module_name)
            cand.module = module
            source = getattr(module, "__file__", None)
            cand.path = Path(source).resolve() if source else path
            if cand.path is not None and cand.path.is_file():
                cand.sha256 = file_sha256(cand.path)
        except BaseException as exc:  # noqa: BLE001 - a candidate may raise anything, even SystemExit
            if isinstance(exc, KeyboardInterrupt):
                raise
            cand.load_error = (
                f"importing candidate {spec!r} failed:\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            )
            return cand
        missing = [f for f in REQUIRED_FUNCTIONS if not callable(getattr(module, f, None))]
        if missing:
            cand.load_error = (
                f"candidate {spec!r} ({cand.path}) does not define the required "
                f"function(s) {', '.join(missing)}: the suite calls forward(X, params) -> "
                "(activations, pre_activations) and backward(activations, pre_activations, Y, "
                "params) -> [(dW1, db1), ..., (dWL, dbL)]"
            )
        return cand

    def __repr__(self) -> str:  # hypothesis prints the fixture in falsifying examples
        from conformance.summary import candidate_label

        return candidate_label(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def has(self, function: str) -> bool:
        return self.module is not None and callable(getattr(self.module, function, None))

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        return self.call_and_inspect(function, *args, **kwargs)[0]

    def call_and_inspect(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, tuple]:
        if not self.has(function):
            raise CandidateError(function, f"candidate {self.module_name!r} has no function {function}")
        private = private_copy(args)  # the candidate may mutate these; the suite's data stays intact
        result = getattr(self.module, function)(*private, **private_copy(kwargs))
        return result, private

    def run_sgd(self, X: Any, Y: Any, params: Any, *, lr: float, epochs: int, batch_size: int,
                seed: int) -> Any:
        from conformance.harness import sgd

        return sgd(self.module.forward, self.module.backward, X, Y, copy.deepcopy(params),
                   lr=lr, epochs=epochs, batch_size=batch_size, seed=seed)

    def close(self) -> None:
        pass
