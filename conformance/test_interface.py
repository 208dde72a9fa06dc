"""Contract area: the candidate loads and exposes the required API (see SPEC.md)."""

from conformance.candidate import Candidate


def test_candidate_loads(candidate: Candidate) -> None:
    """The module imports and defines forward and backward."""
    if candidate.load_error:
        raise AssertionError(candidate.load_error)
