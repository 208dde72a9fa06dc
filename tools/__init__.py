"""Command-line tools: data fetching, benchmarks, fixtures, grading (``python -m tools.<name>``)."""
