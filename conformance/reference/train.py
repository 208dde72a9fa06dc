"""The section's MNIST experiment: ``python -m conformance.reference.train [options]``.

Defaults are the section's recipe: a 784-128-10 ReLU MLP, He init (seed 0), plain SGD with
lr 0.5 and batches of 64 for 10 epochs, shuffled with seed 42, float64. Test accuracy is
printed after every epoch (with a progress bar inside the epoch) and at the end; the
section's code reaches 0.9796 with these settings.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from conformance.reference.mlp import accuracy, cross_entropy, forward, init_params, train
from conformance.reference.mnist import MNISTError, load_mnist, one_hot

N_PIXELS, N_CLASSES = 784, 10


def _number(parse: type, accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: ``parse(text)`` that must satisfy ``accept``, else a message saying
    what was expected and what was given."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_seed = _number(int, lambda v: v >= 0, "a non-negative integer seed")
_learning_rate = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")


def _hidden_sizes(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths such as 128 or 256,64, got {text!r}")
    return sizes


def _png_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"the plot is written as PNG: FILE must end in .png, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {str(path.parent)!r} of the plot file does not exist")
    return path


def build_parser(prog: str = "python -m conformance.reference.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=prog,
        description="Train the section's ReLU MLP on MNIST with plain mini-batch SGD and report "
        "test accuracy after every epoch. Defaults reproduce the section's experiment.",
    )
    parser.add_argument("--epochs", type=_positive_int, default=10, help="passes over the training set (default 10)")
    parser.add_argument("--hidden", type=_hidden_sizes, default=[128], metavar="SIZES",
                        help="hidden layer widths, comma-separated (default 128; e.g. 256,64)")
    parser.add_argument("--lr", type=_learning_rate, default=0.5, help="SGD learning rate (default 0.5)")
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="mini-batch size (default 64)")
    parser.add_argument("--seed", type=_seed, default=0, help="init_params seed (default 0)")
    parser.add_argument("--shuffle-seed", type=_seed, default=42, help="seed of the per-epoch shuffle (default 42)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="precision of data and parameters (default float64, as in the section)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder with the four MNIST files (default: $BACKPROP_MNIST_DIR, then the "
                        "per-user cache; downloaded if absent)")
    parser.add_argument("--plot", type=_png_path, metavar="FILE.png", default=None,
                        help="save accuracy and loss curves; also computes the full training-set loss "
                        "after every epoch (one extra forward pass over 60000 images)")
    parser.add_argument("--quiet", action="store_true", help="print only the final accuracy")
    return parser


def _epochs_with_bar(epochs: int, quiet: bool) -> tuple[Iterable[int], Callable[[str], None]]:
    """(the epoch numbers, wrapped in a progress bar, and a line printer that does not tear
    the bar); plain ``range`` and ``print`` when quiet or without tqdm."""
    if quiet:
        return range(epochs), print
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return range(epochs), print
    # disable=None: no bar when stderr is not a terminal (CI logs, pipes)
    return tqdm(range(epochs), unit="epoch", leave=False, file=sys.stderr, disable=None), tqdm.write


def _save_plot(path: Path, history: dict[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    epochs = np.arange(len(history["test_acc"]))  # numbered as in the printed lines
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax_acc.plot(epochs, history["test_acc"], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
    ax_loss.plot(epochs, history["test_loss"], "s--", label="test")
    ax_loss.set(xlabel="epoch", ylabel="mean cross-entropy", title="loss", yscale="log")
    for ax in (ax_acc, ax_loss):
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, prog: str = "python -m conformance.reference.train") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401 - fail now, not after minutes of training
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'backprop-conformance[plot]'", file=sys.stderr)
            return 2
    dtype = np.dtype(args.dtype).type
    say = (lambda *a, **k: None) if args.quiet else print
    try:
        data = load_mnist(args.data_dir, progress=not args.quiet)
    except MNISTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    X, X_test = data.X_train.astype(dtype, copy=False), data.X_test.astype(dtype, copy=False)
    # Targets in the same dtype, or float64 targets would promote every float32 update.
    Y, Y_test = one_hot(data.y_train).astype(dtype), one_hot(data.y_test).astype(dtype)

    sizes = [N_PIXELS, *args.hidden, N_CLASSES]
    architecture = "-".join(map(str, sizes))
    say(f"MNIST: {len(X)} training and {len(X_test)} test images")
    say(f"model {architecture} ({args.dtype}), lr {args.lr:g}, batch {args.batch_size}, "
        f"{args.epochs} epochs, init seed {args.seed}, shuffle seed {args.shuffle_seed}")

    history: dict[str, list[float]] = {"test_acc": [], "train_loss": [], "test_loss": []}
    start = last = time.perf_counter()
    params = init_params(sizes, seed=args.seed, dtype=dtype)
    # One call per epoch on one shuffling stream: the same draws as train(..., epochs=N).
    shuffling = np.random.default_rng(args.shuffle_seed)
    epochs, write = _epochs_with_bar(args.epochs, args.quiet)
    for epoch in epochs:
        train(X, Y, X_test, Y_test, params, lr=args.lr, epochs=1, batch_size=args.batch_size,
              shuffle_seed=shuffling, verbose=False)
        history["test_acc"].append(accuracy(X_test, Y_test, params))
        line = f"epoch {epoch}: test acc = {history['test_acc'][-1]:.4f}"
        if args.plot is not None:
            history["train_loss"].append(float(cross_entropy(forward(X, params)[0][-1], Y)))
            history["test_loss"].append(float(cross_entropy(forward(X_test, params)[0][-1], Y_test)))
            line += (f"  train loss = {history['train_loss'][-1]:.4f}"
                     f"  test loss = {history['test_loss'][-1]:.4f}")
        now = time.perf_counter()
        if not args.quiet:
            write(f"{line}  ({now - last:.1f} s)")
        last = now
    final = history["test_acc"][-1]  # accuracy after the last epoch, as printed above
    print(f"final test accuracy: {final:.4f} ({architecture}, {args.dtype}, {args.epochs} epochs, "
          f"{time.perf_counter() - start:.1f} s)")
    if args.plot is not None:
        title = f"MNIST {architecture} {args.dtype}, lr {args.lr:g}, batch {args.batch_size}"
        _save_plot(args.plot, history, title)
        say(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
