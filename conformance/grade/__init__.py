"""Batch grading with the conformance suite: ``python -m conformance.grade SUBMISSIONS --out OUT``.

Modules: ``submissions`` (find and read submissions), ``runner`` (run the suite on one,
with limits), ``rubric`` (points), ``gradebook`` (SQLite), ``outputs`` (results.json, JUnit,
CSV), ``html_report``, ``preflight`` (is this machine fit to grade), ``batch`` (the
orchestration), ``gradescope`` (autograder zip and entry),
``screenshot`` (headless-browser image of the report).
"""
