"""Peak memory and time of the trusted grader's intake on hostile notebooks and archives.

    python -m tools.bench_intake [--list-mb 8] [--terms 200000]

Builds a class folder in a temporary directory: a notebook whose one cell is an 8 MB list
literal, one whose cell is ``1+1+...+1``, a ratio zip bomb, a nested zip bomb and an honest
notebook; reads it with ``scan_class`` in this process and prints each row's status, then the
peak resident memory of this process (the trusted grader) and of its children (the bounded
readers), and the wall-clock time. Numbers, not assertions: the tests check the behaviour.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def _notebook(*cells: str) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                                  "source": c} for c in cells],
                       "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                   "display_name": "Python 3"}},
                       "nbformat": 4, "nbformat_minor": 5})


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def build(root: Path, list_mb: int, terms: int) -> None:
    reference = (Path(__file__).resolve().parents[1] / "conformance" / "reference" / "mlp.py").read_text()
    items = list_mb * 1024 * 1024 // 3
    (root / "biglist.ipynb").write_text(_notebook(reference, "DATA = [" + "1, " * items + "]"))
    (root / "deep.ipynb").write_text(_notebook(reference, "+".join(["1"] * terms)))
    (root / "honest.ipynb").write_text(_notebook(reference, "train()"))
    (root / "ratio.zip").write_bytes(_zip({"mlp.py": reference.encode(), "pad.txt": bytes(100 << 20)}))
    inner = _zip({"deeper.zip": _zip({"x.txt": b"x"})})
    (root / "nested.zip").write_bytes(_zip({"mlp.py": reference.encode(), "data.zip": inner}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_intake", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--list-mb", type=int, default=8, help="size of the list-literal notebook (MB)")
    parser.add_argument("--terms", type=int, default=200_000, help="terms of the 1+1+... cell")
    args = parser.parse_args(argv)
    from conformance.grade.intake.submissions import scan_class

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.list_mb, args.terms)
        sizes = {p.name: p.stat().st_size for p in root.iterdir()}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        intake = scan_class(root)
        seconds = time.perf_counter() - started
    for sub in intake.submissions:
        size = sizes.get(sub.intake.entry, 0)
        print(f"{sub.intake.entry:16} {size / 1e6:7.2f} MB  {sub.problem_status if sub.problem else 'ok':20} "
              f"{(sub.problem or '')[:110]}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"grader process peak RSS: {own:.0f} MB (before the intake: {before / 1024:.0f} MB); "
          f"largest reader child: {children:.0f} MB; intake took {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
