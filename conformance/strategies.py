"""Hypothesis strategies for the suite's inputs, and its hypothesis profiles.

Profiles (select with ``--hypothesis-profile NAME``; ``--max-examples N`` overrides the count):
- ``conformance`` (loaded by default): few examples so the suite stays fast, derandomized with
  no example database, so two runs of the same code print the same text;
- ``grading``: derandomized with no example database, so every submission sees exactly the
  same cases in the same order; fixed example count; no deadline; prints the reproduction blob.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from conformance.cases import LAYOUTS, Case, make_case

DEFAULT_PROFILE = "conformance"
GRADING_PROFILE = "grading"
# One failure per test (the simplest), no "explain" phase: messages stay short for students.
_COMMON: dict[str, Any] = dict(deadline=None, report_multiple_bugs=False,
               phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(DEFAULT_PROFILE, max_examples=8, derandomize=True, database=None, **_COMMON)
settings.register_profile(GRADING_PROFILE, max_examples=12, derandomize=True, database=None,
                          print_blob=True, **_COMMON)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def layer_sizes(draw: st.DrawFn, max_layers: int = 5, max_width: int = 64, max_input: int = 64,
                min_classes: int = 2, max_classes: int = 10) -> list[int]:
    """[n_in, hidden..., n_classes]: 1 to ``max_layers`` layers."""
    n_layers = draw(st.integers(1, max_layers))
    hidden = draw(st.lists(st.integers(1, max_width), min_size=n_layers - 1, max_size=n_layers - 1))
    return [draw(st.integers(1, max_input)), *hidden, draw(st.integers(min_classes, max_classes))]


def cases(*, max_layers: int = 4, max_width: int = 8, max_batch: int = 8,
          layouts: tuple[str, ...] = LAYOUTS, zero_rows: bool = True) -> st.SearchStrategy[Case]:
    """Small random networks (entrywise gradient checks are affordable on these)."""
    return st.builds(
        make_case,
        layer_sizes=layer_sizes(max_layers=max_layers, max_width=max_width, max_input=max_width),
        batch=st.integers(1, max_batch),
        seed=seeds(),
        weight_scale=st.sampled_from([1.0, 0.5, 2.0]),
        layout=st.sampled_from(layouts),
        zero_rows=st.integers(0, 2) if zero_rows else st.just(0),
    )


def large_cases() -> st.SearchStrategy[Case]:
    """Up to 5 layers of up to 64 units (gradients checked along random directions)."""
    return st.builds(
        make_case,
        layer_sizes=layer_sizes(max_layers=5, max_width=64),
        batch=st.integers(1, 16),
        seed=seeds(),
        layout=st.sampled_from(LAYOUTS),
    )
