"""Attack: write passing reports where the grader might read them: the --junitxml and
--conformance-report paths found in the grader's command line (/proc/*/cmdline), the current
directory, /tmp, and the directory the submission was handed in from."""

import glob
import os

FAKE_JUNIT = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
              'errors="0" failures="0" skipped="0" tests="1"><testcase classname="forged" '
              'name="test_everything"/></testsuite></testsuites>')
FAKE_JSON = '{"forged": true, "summary": {"failed": 0, "passed": 999}}'
WROTE = []


def _write(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
        WROTE.append(path)
    except OSError:
        pass


for cmdline in glob.glob("/proc/*/cmdline"):
    try:
        words = open(cmdline, "rb").read().decode(errors="replace").split("\0")
    except OSError:
        continue
    for i, word in enumerate(words[:-1]):
        if word in ("--junitxml", "--junit-xml"):
            _write(words[i + 1], FAKE_JUNIT)
        if word == "--conformance-report":
            _write(words[i + 1], FAKE_JSON)
        if word.startswith("--junitxml=") or word.startswith("--junit-xml="):
            _write(word.split("=", 1)[1], FAKE_JUNIT)
        if word.startswith("--conformance-report="):
            _write(word.split("=", 1)[1], FAKE_JSON)
for directory in (os.getcwd(), "/tmp", os.path.dirname(os.path.abspath(__file__))):
    _write(os.path.join(directory, "report.json"), FAKE_JSON)
    _write(os.path.join(directory, "junit.xml"), FAKE_JUNIT)
    _write(os.path.join(directory, "FORGED-by-candidate"), "forged")


def forward(X, params):
    raise RuntimeError(f"forged report files: {WROTE}")


def backward(activations, pre_activations, Y, params):
    raise RuntimeError(f"forged report files: {WROTE}")
