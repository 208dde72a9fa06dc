"""The developer's fixture commands, from a clone:

    python -m tools.fixtures generate   # create fixtures/ (never overwrites)
    python -m tools.fixtures update     # regenerate on purpose
    python -m tools.fixtures check      # integrity, bit-exact reproduction, complex-step gradients

The code is conformance/fixture_files.py: it is installed, because `backprop-conformance
fixtures check` and `record` rebuild the cases on a user's machine.
"""

import sys

from conformance.fixture_files import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tools.fixtures"))
