"""Attack: submit the grader's own reference implementation as mine."""

from conformance.reference.mlp import backward, forward  # noqa: F401
