import sys

from conformance.grade.cli import main

sys.exit(main())
