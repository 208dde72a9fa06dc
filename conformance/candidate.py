"""The candidate under test, behind one narrow interface.

Every test talks to the implementation being judged only through a ``Candidate``: it asks
whether a function exists and calls it by name. ``InProcessCandidate`` imports the module
into the test process (friendly: real tracebacks, debuggers work); the isolated candidate
(``conformance.isolation``) runs it in a locked-down worker process and returns validated
plain ndarrays. Tests never know which one they hold, so both modes give the same verdicts.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from conformance.text import clean_name, clean_text

REQUIRED_FUNCTIONS = ("forward", "backward")
OPTIONAL_FUNCTIONS = ("init_params", "relu", "softmax", "cross_entropy", "train")
DEFAULT_IMPL = "conformance.reference.mlp"  # the file itself, so the header shows its sha256



# Where the session keeps its candidate (pytest's config stash): set by the hooks, read by
# the fixtures and the end-of-run summary.
CANDIDATE_KEY: "pytest.StashKey[Candidate]" = pytest.StashKey()


def candidate_label(candidate: Any) -> str:
    """How messages name the candidate: its file name as the student knows it (no directory,
    no temporary path, no address)."""
    path = getattr(candidate, "path", None)
    name = (Path(str(path)).name if path else
            str(getattr(candidate, "module_name", "") or getattr(candidate, "spec", "") or "?"))
    return f"<candidate {clean_name(name)}>"


class CandidateError(Exception):
    """The candidate could not answer a call: it raised, crashed, hung, hit a limit or
    returned something that cannot cross the isolation boundary. ``reason`` is the
    human-readable cause (for example ``timeout after 10 s``)."""

    def __init__(self, function: str, reason: str):
        super().__init__(f"{function}(): {reason}")
        self.function = function
        self.reason = reason
        self.grader_side = False  # the machine failed before the candidate's code ran


class CandidateRaised(CandidateError):
    """The candidate's own code raised inside the worker. The exception itself cannot cross
    the boundary (it would be candidate code), so its type name, message and traceback text
    travel as strings."""

    def __init__(self, function: str, exc_type: str, message: str, traceback_text: str):
        # Candidate-made text: control and bidi characters escaped before any message shows it.
        exc_type, message, traceback_text = clean_name(exc_type), clean_text(message), clean_text(traceback_text)
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
        return clean_text(f"raised {text}")
    return clean_text(f"failed: {exc.reason}")


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

    def call_timed(self, function: str, *args: Any) -> tuple[Any, float | None]:
        """Like ``call``, and also the CPU seconds the process running the candidate spent on
        it (None when it cannot be measured), read from outside the candidate's reach in the
        isolated mode (the kernel's accounting of the worker), so the candidate cannot
        report its own cost."""

    def run_sgd(self, X: Any, Y: Any, params: Any, *, lr: float, epochs: int, batch_size: int,
                seed: int, checkpoint_every: int | None = None) -> Any:
        """Train ``params`` with the suite's own SGD loop (``conformance.sgd_loop.sgd``) driven
        by the candidate's forward/backward; returns what the loop returns. Runs where the
        candidate runs (in-process, or inside the isolated worker without per-call start-up),
        so the candidate can tamper with it: callers verify the result (test_mnist.py)."""

    def close(self) -> None: ...


def one_blas_thread() -> Any:
    """A context limiting BLAS to one thread while an in-process candidate is timed or trains.

    On the 2-core machines graders use, OpenBLAS's spinning threads make the suite's small
    products several times slower and add CPU time that is not the candidate's work
    (``tools/bench_mnist.py`` measures both; the isolated worker already runs one thread).
    Results and verdicts do not depend on it. A no-op without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def private_copy(obj: Any) -> Any:
    """A deep copy that keeps each array's memory layout: C- and Fortran-ordered arrays stay so,
    and a non-contiguous (strided) array stays a strided view, so a candidate really receives
    the non-contiguous inputs the suite means to test (``copy.deepcopy`` would compact them)."""
    import numpy as np

    from conformance.cases import strided_copy

    if type(obj) is np.ndarray and obj.ndim >= 1 and not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        return strided_copy(obj)
    if type(obj) in (list, tuple):
        return type(obj)(private_copy(x) for x in obj)
    if type(obj) is dict:
        return {k: private_copy(v) for k, v in obj.items()}
    return copy.deepcopy(obj)


def loaded_functions(module: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The callables among ``names`` that ``module`` defines now (a module ``__getattr__``
    that raises counts as "not defined")."""
    found = {}
    for name in names:
        try:
            value = getattr(module, name, None)
        except Exception:  # noqa: BLE001 - candidate code
            continue
        if callable(value):
            found[name] = value
    return found


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def not_found_text(module_name: str) -> str:
    """Why a module name found no candidate, and what to do instead."""
    relative = module_name.replace(".", "/")
    return (f"there is no {relative}.py (nor a package folder {relative}/) in the current folder "
            f"{os.getcwd()}, and no installed module {module_name!r}: run the check from the folder "
            f"that holds {relative}.py, or give the file's path")


def load_headline(load_error: str) -> str:
    """A load error in one line, as a summary shows it. Load errors keep the reason that the
    candidate's code controls (its exception) off their first line, which the grader reads
    (conformance/grade/run/runner.py); a first line ending in ":" is completed here with the reason: the
    last line of the traceback below it (the exception's type and message)."""
    lines = [line.strip() for line in load_error.splitlines() if line.strip()]
    if not lines:
        return ""
    return f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def resolve_spec(spec: str) -> tuple[str, Path | None]:
    """Split an --impl value into (module name, file path if it is a path)."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--impl {spec!r}: no such file {path}")
        return path.stem, path
    return spec, None


def _from_candidate(tb: Any) -> Any:
    """The traceback from the candidate's first frame on: this loader's and importlib's frames
    are noise to a student (the isolated worker skips the same ones)."""
    importlib_dir = Path(importlib.__file__).parent
    while tb is not None and (tb.tb_frame.f_code.co_filename in (__file__, "<string>")
                              or tb.tb_frame.f_code.co_filename.startswith("<frozen")
                              or Path(tb.tb_frame.f_code.co_filename).parent == importlib_dir):
        tb = tb.tb_next
    return tb


def _source_of(module_name: str) -> Path | None:
    """The file a module name would be imported from, found without running it (None when
    there is none: not found, or not a source file)."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None) if found is not None else None
    return Path(origin).resolve() if origin and Path(origin).is_file() else None


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
    # The module's functions as they were when it finished loading. The suite calls these
    # objects and asks only this table: a function that deletes or replaces itself (or
    # another) afterwards cannot turn its later, failing checks into "absent, skipped".
    functions: dict[str, Any] = field(default_factory=dict, repr=False)
    # The conventions it is judged with (conformance/declaration.py), decided by the grader's
    # side from --declaration or the module's own literal; None: the section's interface.
    declaration: Any = None

    @classmethod
    def load(cls, spec: str, declaration_option: str | None = None) -> "InProcessCandidate":
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
                cand.path = _source_of(cand.module_name)  # the header names a broken file too
                if cand.path is not None:
                    cand.sha256 = file_sha256(cand.path)
                module = importlib.import_module(cand.module_name)
            cand.module = module
            source = getattr(module, "__file__", None)
            cand.path = Path(source).resolve() if source else path
            if cand.path is not None and cand.path.is_file():
                cand.sha256 = file_sha256(cand.path)
            # Read from the hashed source, never from the running module; a DeclarationError
            # propagates: a usage error, never a verdict.
            from conformance.declaration import resolve

            cand.declaration = resolve(declaration_option, cand.path, cand.sha256)
            if cand.declaration is not None and not cand.declaration.is_section:
                from conformance.adapters import adapt_module

                cand.module = adapt_module(module, cand.declaration.wire())
            cand.functions = loaded_functions(cand.module, REQUIRED_FUNCTIONS + OPTIONAL_FUNCTIONS)
        except BaseException as exc:  # noqa: BLE001 - a candidate may raise anything, even SystemExit
            from conformance.declaration import DeclarationError

            if isinstance(exc, (KeyboardInterrupt, DeclarationError)):
                raise
            if (isinstance(exc, ModuleNotFoundError) and cand.module_name
                    and exc.name == cand.module_name.split(".")[0] and cand.path is None):
                details = not_found_text(cand.module_name)  # no file at all: no traceback either
            else:
                details = "".join(traceback.format_exception(type(exc), exc, _from_candidate(exc.__traceback__)))
            cand.load_error = f"importing candidate {spec!r} failed:\n{details}"
            return cand
        missing = [f for f in REQUIRED_FUNCTIONS if f not in cand.functions]
        declared = cand.declaration is not None and not cand.declaration.is_section
        if declared:
            from conformance.adapters import declared_problems

            problems = declared_problems(module, cand.declaration.wire())
            if problems:
                cand.load_error = (f"candidate {spec!r} ({cand.path}) does not fit its declared "
                                   f"conventions ({cand.declaration.source}): " + "; ".join(problems))
        elif missing:
            cand.load_error = (
                f"candidate {spec!r} ({cand.path}) does not define the required "
                f"function(s) {', '.join(missing)}: the suite calls forward(X, params) -> "
                "(activations, pre_activations) and backward(activations, pre_activations, Y, "
                "params) -> [(dW1, db1), ..., (dWL, dbL)]"
            )
        elif cand.declaration is None or cand.declaration.is_section:
            # a required function that cannot take the suite's call, said once (a declared
            # interface is called as declared: the adapter's signature is the suite's)
            from conformance.signature import signature_problem

            cand.load_error = signature_problem(cand.path)
        return cand

    def __repr__(self) -> str:  # hypothesis prints the fixture in falsifying examples
        return candidate_label(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def has(self, function: str) -> bool:
        if self.module is None:
            return False
        if function not in self.functions and function not in REQUIRED_FUNCTIONS + OPTIONAL_FUNCTIONS:
            # A name the suite did not ask about at load time: fixed on first use.
            self.functions.update(loaded_functions(self.module, (function,)))
        return function in self.functions

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        return self.call_and_inspect(function, *args, **kwargs)[0]

    def call_and_inspect(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, tuple]:
        if not self.has(function):
            raise CandidateError(function, f"candidate {self.module_name!r} has no function {function}")
        private = private_copy(args)  # the candidate may mutate these; the suite's data stays intact
        result = self.functions[function](*private, **private_copy(kwargs))
        return result, private

    def call_timed(self, function: str, *args: Any) -> tuple[Any, float | None]:
        if not self.has(function):
            raise CandidateError(function, f"candidate {self.module_name!r} has no function {function}")
        private = private_copy(args)
        began = time.process_time()  # every thread of this process: BLAS threads count too
        result = self.functions[function](*private)
        return result, time.process_time() - began

    def run_sgd(self, X: Any, Y: Any, params: Any, *, lr: float, epochs: int, batch_size: int,
                seed: int, checkpoint_every: int | None = None) -> Any:
        from conformance.sgd_loop import sgd

        return sgd(self.functions["forward"], self.functions["backward"], X, Y, copy.deepcopy(params),
                   lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                   checkpoint_every=checkpoint_every)

    def close(self) -> None:
        pass
