"""Attack: flood stdout and stderr (fill the grader's memory / disk / log) and never stop."""

import sys

LINE = "spam " * 2000 + "\n"
for _ in range(2000):  # ~20 MB while importing
    sys.stdout.write(LINE)
    sys.stderr.write(LINE)


def forward(X, params):
    while True:
        sys.stdout.write(LINE)
        sys.stderr.write(LINE)


def backward(activations, pre_activations, Y, params):
    while True:
        print(LINE)
