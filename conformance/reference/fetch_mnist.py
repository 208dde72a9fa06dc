"""Download (if needed), verify and cache MNIST: ``python -m conformance.reference.fetch_mnist [--dir DIR]``.

Without ``--dir`` the files go where ``conformance.reference.mnist`` looks by default: ``$BACKPROP_MNIST_DIR``
if set, else the per-user cache. Prints the folder that holds the verified files.
"""

from __future__ import annotations

import argparse
import sys

from conformance.reference.mnist import DIR_ENV, MNISTError, cache_dir, find_mnist_dir, load_mnist


def main(argv: list[str] | None = None, prog: str = "python -m conformance.reference.fetch_mnist") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help=f"folder to fetch into / verify (default: ${DIR_ENV}, else {cache_dir()})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        data = load_mnist(args.dir, download=True, progress=not args.quiet)
    except MNISTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    found = find_mnist_dir(args.dir)
    where = found.resolve() if found else args.dir
    print(f"MNIST verified: {len(data.X_train)} training and {len(data.X_test)} test images in {where}")
    if args.dir is not None:
        print(f"use it with: export {DIR_ENV}={where}   (or --mnist-dir / --data-dir {where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
