"""Signature check at load (conformance/signature.py): a required function that cannot
take the suite's call is said once, with the required signature and the recipe that fits; every
legitimate way of accepting the call (``*args``, defaults, keyword-only extras with defaults,
callable classes, ``functools.partial``, decorators, imports) is never flagged."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from conformance.candidate import InProcessCandidate
from conformance.signature import signature_problem
from tests.helpers import REPO_ROOT, run_command
from tools.catalogue import materialize

REFERENCE = (REPO_ROOT / "conformance" / "reference" / "mlp.py").read_text()
RIGHT_FORWARD = "def forward(X, params):\n    return [X], []\n"


def module(tmp_path: Path, body: str, name: str = "student") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


ACCEPTED = {
    "varargs": "def backward(*args):\n    return []\n",
    "defaults": "def backward(activations, pre_activations, Y, params=None, lr=0.1):\n    return []\n",
    "keyword_only_with_default": "def backward(activations, pre_activations, Y, params, *, check=False):\n"
                                 "    return []\n",
    "positional_only": "def backward(a, p, y, w, /):\n    return []\n",
    "kwargs_and_varargs": "def backward(activations, *rest, **options):\n    return []\n",
    "callable_class": "class Backward:\n    def __call__(self, a, p, y, w):\n        return []\n"
                      "backward = Backward()\n",
    "partial": "import functools\ndef _bw(a, p, y, w, lr):\n    return []\n"
               "backward = functools.partial(_bw, lr=0.1)\n",
    "decorated": "def deco(f):\n    return lambda *a: f(a[0][0], a[2], a[3])\n"
                 "@deco\ndef backward(X, Y, params):\n    return []\n",
    "rebound_after": "def backward(X, Y, params):\n    return []\n_old = backward\n"
                     "def backward(a, p, y, w):\n    return _old(a[0], y, w)\n",
    "reassigned": "def backward(X, Y, params):\n    return []\nbackward = lambda a, p, y, w: []\n",
    "imported": "from json import loads as backward\n",
    "inside_if": "import sys\nif sys.version_info > (3,):\n    def backward(a, p, y, w):\n        return []\n"
                 "else:\n    def backward(X, Y, params):\n        return []\n",
    "global_rebinding": "def backward(X, Y, params):\n    return []\ndef _setup():\n    global backward\n"
                        "    backward = lambda a, p, y, w: []\n_setup()\n",
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_legitimate_signatures_are_never_flagged(tmp_path: Path, name: str) -> None:
    assert signature_problem(module(tmp_path, RIGHT_FORWARD + ACCEPTED[name])) is None


def test_no_catalogue_variant_is_flagged(tmp_path: Path) -> None:
    for variant in materialize(tmp_path):
        assert signature_problem(variant.path) is None, variant.name


REJECTED = {
    "recomputes_forward": ("def backward(X, Y, params):\n    return []\n",
                           "return my_backward(activations[0], Y, params)", "recipe 5"),
    "method_like": ("def backward(self, Y):\n    return []\n", "recipe 4", "class-based"),
    "fused_update": ("def backward(activations, pre_activations, Y, params, lr):\n    return []\n",
                     "recipe 6", "learning rate"),
    "required_keyword_only": ("def backward(activations, pre_activations, Y, params, *, lr):\n    return []\n",
                              "keyword-only argument(s) lr", "ADAPTERS.md"),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_a_wrong_backward_gets_the_required_signature_and_its_recipe(tmp_path: Path, name: str) -> None:
    body, *expected = REJECTED[name]
    problem = signature_problem(module(tmp_path, RIGHT_FORWARD + body))
    assert problem is not None
    first = problem.splitlines()[0]
    assert first.startswith("student.py: your backward(") and "(line 3)" in first
    assert "required: def backward(activations, pre_activations, Y, params)" in first
    assert all(text in problem for text in expected), problem


def test_a_wrong_forward_is_flagged_too(tmp_path: Path) -> None:
    path = module(tmp_path, "def forward(X, W1, b1, W2, b2):\n    return [X], []\n"
                            "def backward(a, p, y, w):\n    return []\n")
    problem = signature_problem(path)
    assert problem is not None and "required: def forward(X, params)" in problem
    assert "it takes 5 positional parameter(s)" in problem


RECOMPUTING = REFERENCE.replace(
    "def backward(\n    activations: list[np.ndarray], pre_activations: list[np.ndarray], Y: np.ndarray, "
    "params: Params\n) -> list[tuple[np.ndarray, np.ndarray]]:",
    "def backward(X, Y, params):\n    activations, pre_activations = forward(X, params)")


def test_the_loaded_candidate_fails_to_load_with_one_message_in_both_modes(tmp_path: Path) -> None:
    from conformance.isolation import IsolatedCandidate

    assert RECOMPUTING != REFERENCE
    path = module(tmp_path, RECOMPUTING)
    for cand in (InProcessCandidate.load(str(path)), IsolatedCandidate.load(str(path))):
        assert cand.load_error is not None and "cannot be called as the suite calls it" in cand.load_error
        cand.close()
    sys.modules.pop("student", None)


def test_a_wrong_signature_backward_gets_one_failure_in_under_60_lines(tmp_path: Path) -> None:
    """The student's run, end to end: one failure with the required signature."""
    module(tmp_path, RECOMPUTING, "mymlp")
    proc = run_command([sys.executable, "-m", "conformance.cli", "check", "mymlp", "-m", "not mnist"],
                       cwd=tmp_path, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert len(out.splitlines()) < 60, out
    assert "1 failed" in out.splitlines()[-1]
    assert "required: def backward(activations, pre_activations, Y, params)" in out
    assert "return my_backward(activations[0], Y, params)" in out
