"""Print the efficiency area's measurements (backward's CPU cost in backprops, per rung) for
every correct variant and for the catalogue's numerical-differentiation variants, in-process
and isolated: the numbers behind LIMIT / EARLY_LIMIT (conformance/SPEC.md, "Efficiency area").

    python -m tools.bench_efficiency [--no-isolate] [--repeat N] [IMPL ...]

Without IMPL: tools/catalogue/correct/*.py, the other correct styles measured for SPEC.md
(tools/catalogue/efficiency_styles/*.py: not catalogue variants, since only their cost is of
interest) and the catalogue's ``numerical_*`` variants.
Prints numbers only; nothing here asserts a timing. Each run measures the ladder as the
suite does (stopping at a decisive rung); ``--repeat`` runs it several times to show the
spread under the machine's current load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _default_impls(workdir: Path) -> list[Path]:
    from tools.catalogue import CORRECT_DIR, materialize

    numeric = [v.path for v in materialize(workdir) if v.name.startswith("bug_numerical")]
    styles = sorted((CORRECT_DIR.parent / "efficiency_styles").glob("*.py"))
    return sorted(CORRECT_DIR.glob("*.py")) + styles + numeric


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
        try:
            costs = eff.measure_ladder(cand)
        except (AssertionError, Exception) as exc:  # noqa: BLE001 - a benchmark reports, never stops
            return f"error: {str(exc).splitlines()[0][:120]}"
    finally:
        cand.close()
    verdict = "FAIL" if eff.verdict(costs) else "pass"
    ratios = "  ".join(f"w{c.rung.width}: {c.ratio:8.2f}" for c in costs)
    return f"{ratios}  (last backward {costs[-1].backward * 1e3:9.2f} ms)  {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m tools.bench_efficiency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("impls", nargs="*", type=Path, help="implementation files (default: the variants)")
    parser.add_argument("--no-isolate", action="store_true", help="in-process only")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="ladders per implementation and mode")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        impls = args.impls or _default_impls(Path(tmp))
        for path in impls:
            for isolate in (False,) if args.no_isolate else (False, True):
                mode = "isolated  " if isolate else "in-process"
                for _ in range(args.repeat):
                    print(f"{path.name:42s} {mode} {_measure(str(path.resolve()), isolate)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
