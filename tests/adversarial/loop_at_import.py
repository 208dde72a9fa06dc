"""Attack: never finish importing, so the grader hangs (or a naive timeout passes it)."""

while True:
    pass


def forward(X, params):  # never reached
    raise AssertionError


def backward(activations, pre_activations, Y, params):  # never reached
    raise AssertionError
