"""Print the efficiency area's ratios (backward's CPU cost in forward passes) for every
correct variant and for the numerical-gradient variant, in-process and isolated: the
measurements behind RATIO_LIMIT / GROWTH_LIMIT (conformance/SPEC.md, "Efficiency area").

    python -m tools.bench_efficiency [--no-isolate] [IMPL ...]

Without IMPL: tools/catalogue/correct/*.py and the catalogue's ``numerical_gradients``.
Prints numbers only; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _default_impls(workdir: Path) -> list[Path]:
    from tools.catalogue import CORRECT_DIR, materialize

    numeric = [v.path for v in materialize(workdir) if v.name.endswith("numerical_gradients")]
    return sorted(CORRECT_DIR.glob("*.py")) + numeric


def _measure(spec: str, isolate: bool) -> str:
    from conformance import test_efficiency as eff
    from conformance.candidate import InProcessCandidate

    if isolate:
        from conformance.isolation.candidate import IsolatedCandidate

        cand = IsolatedCandidate.load(spec)
    else:
        cand = InProcessCandidate.load(spec)
    try:
        if cand.load_error:
            return f"load error: {cand.load_error.splitlines()[0]}"
        small, large = eff.measure(cand, eff.SMALL, 1), eff.measure(cand, eff.LARGE, 2)
    finally:
        cand.close()
    verdict = "FAIL" if eff.verdict(small, large) else "pass"
    return (f"ratio {small.ratio:8.2f} / {large.ratio:8.2f}  growth {large.ratio / small.ratio:6.2f}  "
            f"forward {large.forward * 1e3:7.3f} ms  backward {large.backward * 1e3:9.2f} ms  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m tools.bench_efficiency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("impls", nargs="*", type=Path, help="implementation files (default: the variants)")
    parser.add_argument("--no-isolate", action="store_true", help="in-process only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        impls = args.impls or _default_impls(Path(tmp))
        for path in impls:
            for isolate in (False,) if args.no_isolate else (False, True):
                mode = "isolated  " if isolate else "in-process"
                print(f"{path.name:40s} {mode} {_measure(str(path.resolve()), isolate)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
