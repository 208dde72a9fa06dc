"""Calling the candidate: one place that turns a crash into a readable failure and validates
what comes back (conformance.contract) before any test looks at it."""

from __future__ import annotations

import ast
import functools
import hashlib
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from conformance.candidate import Candidate, CandidateError, failure_text
from conformance.cases import Case
from conformance.contract import ContractError, ForwardResult, validate_backward, validate_forward
from conformance import evidence
from conformance.diagnosis import KNOWN_BUGS, bugs_consistent_with, bugs_replayed, explain_exception, named

Grads = list[tuple[np.ndarray, np.ndarray]]
# Every case the current test fed the candidate, in order (conformance/summary.py reads it to
# find patterns across failures, e.g. "every failure has a width-1 layer").
CASES_SEEN: list[Case] = []
# The candidate's functions the current test called, by name, and SGD_LOOP when it trained with
# the suite's loop: conformance/summary.py tells which failures follow from another's mistake.
FUNCTIONS_RUN: set[str] = set()
SGD_LOOP = "the suite's SGD loop"


def invoke(candidate: Candidate, function: str, *args: Any, where: str, case: Case | None = None,
           inspect: bool = False, shapes: tuple[Sequence[int], int] | None = None,
           reproduce: str | None = None) -> Any:
    """``candidate.call`` (or ``call_and_inspect``); an exception raised by the candidate becomes
    one AssertionError saying which function raised what, and its likely cause.

    The cause is read from the exception text with the network's shapes: ``case``'s, or
    ``shapes`` = (layer sizes, batch) for inputs that are not a Case (golden fixtures). The
    reproducer is ``case``'s snippet, or the ``reproduce`` text."""
    __tracebackhide__ = True
    FUNCTIONS_RUN.add(function)
    if case is not None:
        CASES_SEEN.append(case)
        shapes = (case.layer_sizes, case.batch)
        reproduce = case.snippet(candidate.module_name)
    if function == "backward":
        remember_backward_inputs(args)
    evidence.at_case(repr(case) if case is not None else where)
    try:
        if inspect:
            return candidate.call_and_inspect(function, *args)
        return candidate.call(function, *args)
    except CandidateError as exc:
        text, frames, explicit = failure_text(exc), "", raised_explicitly(exc)
    except Exception as exc:  # noqa: BLE001 - whatever the candidate raises is a finding
        text, frames, explicit = failure_text(exc), candidate_frames(exc), raised_explicitly(exc)
    # An exception the candidate's own `raise` statement made says nothing numpy found: its
    # text is no evidence of a mistake (it can be written to look like one).
    hint = "" if explicit else _replayed_hint(text, function, shapes)
    first, _, rest = text.strip().partition("\n")
    message = f"your {function} {first} [{where}]{frames}"
    if function in CRASH_KEYS:
        note_crash(function, f"your {function} {first}")
    if rest.strip():  # e.g. the isolated worker's traceback: keep its last lines
        tail = [ln for ln in rest.splitlines() if ln.strip()][-12:]
        message += "\n" + "\n".join("    " + ln for ln in tail)
    if hint:
        message += f"\n  likely cause: {hint}"
    if reproduce:
        message += f"\n  reproduce:\n{reproduce}"
    raise AssertionError(message) from None  # the candidate's frames are in the message


def _replayed_hint(text: str, function: str, shapes: tuple[Sequence[int], int] | None) -> str:
    """The likely cause of a crash, read from the exception's text and the shapes. A hint that
    names a catalogued mistake stands only if replaying that mistake on the same inputs crashes
    too (the exception's text is the candidate's: it alone proves nothing); otherwise no cause
    is given."""
    if shapes is None:
        return ""
    with evidence.tentative() as found:
        hint = explain_exception(text, function, *shapes)
    keys = [f.key for f in found.findings if f.kind == "named"]
    if not keys:
        return hint
    replayed = set(bugs_consistent_with(_BACKWARD_INPUTS[0])) if function == "backward" else set()
    if not set(keys) <= replayed:
        return ""
    evidence.keep(found.findings)
    return hint


def raised_explicitly(exc: BaseException) -> bool:
    """The exception comes from a `raise` statement in the candidate's own code (its last
    frame's line), not from numpy or Python detecting something."""
    tb_text = getattr(exc, "traceback_text", None)
    if isinstance(tb_text, str):  # the isolated worker's traceback, as text
        lines = tb_text.splitlines()
        files = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
        code = lines[files[-1] + 1].strip() if files and files[-1] + 1 < len(lines) else ""
        return code.startswith("raise ") or code == "raise"
    frames = traceback.extract_tb(exc.__traceback__)
    code = (frames[-1].line or "").strip() if frames else ""
    return code.startswith("raise ") or code == "raise"


def candidate_frames(exc: BaseException) -> str:
    """The traceback lines that are in the candidate's code (not the suite's or numpy's)."""
    suite = Path(__file__).resolve().parent
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not Path(f.filename).resolve().is_relative_to(suite) and "site-packages" not in f.filename]
    # The file name only: where the file was copied to (a grader's temporary folder) is noise.
    return "".join(f"\n    at {Path(f.filename).name}:{f.lineno} in {f.name}: {(f.line or '').strip()}"
                   for f in frames[-4:])


CRASH_KEYS = {"forward": "forward_crash", "backward": "backward_crash",  # generic findings
              "train": "train_crash", "init_params": "init_crash", "cross_entropy": "loss_crash"}


def run_forward(candidate: Candidate, case: Case, where: str, params: Any = None) -> ForwardResult:
    __tracebackhide__ = True
    params = case.params if params is None else params
    result = invoke(candidate, "forward", case.X, params, where=where, case=case)
    return named_contract("forward_structure", validate_forward, result, case.X, params, where,
                          keeps_pre_activations(candidate))


def keeps_pre_activations(candidate: Candidate) -> bool:
    """False only when the candidate's declaration (read on the suite's side, never from what the
    candidate returns) says forward keeps no pre-activations (limit "pre_activations"): then
    forward is validated on its activations alone and ForwardResult.pre_activations is None."""
    declared = getattr(candidate, "declaration", None)
    return declared is None or "pre_activations" not in declared.limits()


def run_backward(candidate: Candidate, case: Case, activations: Any, pre_activations: Any,
                 where: str) -> tuple[Grads, np.dtype]:
    __tracebackhide__ = True
    result = invoke(candidate, "backward", activations, pre_activations, case.Y, case.params,
                    where=where, case=case)
    return named_contract("backward_structure", validate_backward, result, case.params, where)


_BACKWARD_INPUTS: list[tuple] = [()]  # the inputs of the last backward call


def remember_backward_inputs(args: tuple) -> None:
    """Keep backward's inputs (activations, pre_activations, Y, params) so a crash or a wrong
    structure can be compared with what the catalogued mistakes do on them."""
    _BACKWARD_INPUTS[0] = tuple(args)


def note_crash(function: str, text: str) -> None:
    """Record ``function``'s crash (shown as ``text``) as its generic finding, and, for
    backward, the catalogued mistakes that would crash on the same inputs."""
    consistent = bugs_consistent_with(_BACKWARD_INPUTS[0]) if function == "backward" else []
    named(CRASH_KEYS[function], text, consistent=consistent)


def named_contract(key: str, check: Any, *args: Any) -> Any:
    """Run a structure check; a violation is recorded as the generic finding ``key`` (for
    backward, with the catalogued mistakes that return the same shapes on its inputs)."""
    __tracebackhide__ = True
    try:
        return check(*args)
    except ContractError as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        consistent = (bugs_consistent_with(_BACKWARD_INPUTS[0], result=args[0])
                      if key == "backward_structure" else [])
        replayed = bugs_replayed(_BACKWARD_INPUTS[0], args[0]) if key == "backward_structure" else []
        if len(replayed) == 1:  # replay gives these very arrays, values included: that mistake
            bug = next(b for b in KNOWN_BUGS if b.key == replayed[0])
            raise ContractError(f"{exc}\n  diagnosis: " + named(bug.key, f"your gradients equal those of an "
                                f"implementation that {bug.description}: {bug.line_pattern}.")) from None
        named(key, text, consistent=consistent)
        raise


OPT_OUT_NAME = "CONFORMANCE_OPT_OUT"
# Helpers whose names collide with optional functions (train is the candidate's training loop,
# never a helper: it cannot opt out).
OPTABLE = ("relu", "softmax", "cross_entropy", "init_params")


@functools.lru_cache(maxsize=None)
def _opt_outs(path: str, sha256: str | None) -> frozenset[str]:
    """The names in the candidate's module-level ``CONFORMANCE_OPT_OUT = ("relu", ...)``, read
    from its source (never executed: identical in-process and isolated; a non-literal value
    opts nothing out)."""
    try:
        data = Path(path).read_bytes()
        # Only the bytes that were loaded and hashed count: a module that rewrites its own file
        # at run time (to opt out after a wrong answer) opts nothing out.
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            return frozenset()
        tree = ast.parse(data.decode("utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == OPT_OUT_NAME
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return frozenset()
            if isinstance(value, str):
                value = (value,)
            if isinstance(value, (tuple, list, set, frozenset)):
                return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def opted_out(candidate: Candidate, function: str) -> bool:
    """The candidate declares that its module-level ``function`` is a helper with its own
    conventions, not the contract's optional function (SPEC.md, "Functions")."""
    path = getattr(candidate, "path", None)
    return (function in OPTABLE and path is not None
            and function in _opt_outs(str(path), getattr(candidate, "sha256", None)))


def provides(candidate: Candidate, function: str) -> bool:
    """The candidate defines ``function`` as the contract's function (not opted out): only
    then may a check call it."""
    return candidate.has(function) and not opted_out(candidate, function)


def interface_limit(candidate: Candidate, limit: str) -> None:
    """Skip the calling test when the candidate's declared interface cannot give what it needs
    (conformance/declaration.py ``limits_of``: e.g. ``backward_alone``). Neutral only for the
    instructor's declaration (kind ``interface_limit``); a module's own declaration records
    ``self_declared``, which the grader counts as failed."""
    declared = getattr(candidate, "declaration", None)
    if declared is None:
        return
    why = declared.limits().get(limit) or declared.dropped().get(limit)
    if why is None:
        return
    evidence.note_skip("interface_limit" if declared.trusted else evidence.SELF_DECLARED)
    pytest.skip(f"interface limit of the declared conventions ({declared.source}): {why}")


def require(candidate: Candidate, function: str) -> None:
    """Skip the calling test, with a reason saying so, when an optional function is absent
    or the candidate opted out of it."""
    interface_limit(candidate, function)  # a role the declaration does not give (said as such)
    if not candidate.has(function):
        evidence.note_skip("optional_absent")
        pytest.skip(f"candidate defines no {function}() (optional): its checks are skipped, not passed")
    if opted_out(candidate, function):
        evidence.note_skip("opted_out")
        pytest.skip(f"candidate opts out of {function}() (optional) with {OPT_OUT_NAME}: its "
                    f"module-level {function} is a helper with its own conventions; its checks are "
                    "skipped, not passed")
