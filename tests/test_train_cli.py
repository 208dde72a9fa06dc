"""``python -m conformance.reference.train``: a short real run, the plot file, and refused options."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.reference import mnist
from conformance.reference.train import main

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-array cache in a temp dir shared by this module, not the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "train-cli-cache"))


@pytest.mark.mnist
def test_one_epoch_prints_progress_and_final_accuracy_and_writes_png(
    real_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "curve.png"
    status = main(["--epochs", "1", "--dtype", "float32", "--data-dir", str(real_dir), "--plot", str(plot)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "model 784-128-10 (float32), lr 0.5, batch 64, 1 epochs, init seed 0, shuffle seed 42" in out
    epoch = re.search(r"epoch 0: test acc = (0\.\d{4})  train loss = (\d\.\d{4})  test loss = (\d\.\d{4})", out)
    final = re.search(r"final test accuracy: (0\.\d{4}) \(784-128-10, float32, 1 epochs", out)
    assert epoch and final, out
    # One epoch of the section's recipe reaches 0.9608 in float32; 0.95 leaves room for BLAS
    # rounding differences between machines while still catching a broken training loop.
    assert float(final.group(1)) == float(epoch.group(1)) >= 0.95
    assert 0 < float(epoch.group(2)) < 0.3 and 0 < float(epoch.group(3)) < 0.3
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(plot).shape
    assert height >= 200 and width >= 400


@pytest.mark.mnist
def test_module_entry_point_quiet_run_prints_one_line(real_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.reference.train", "--quiet", "--epochs", "1", "--hidden", "32,16",
         "--batch-size", "256", "--lr", "0.2", "--data-dir", str(real_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("final test accuracy: 0."), done.stdout
    assert "784-32-16-10, float64, 1 epochs" in lines[0]
    assert float(lines[0].split()[3]) > 0.85  # a small net after one pass; chance is 0.10


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
        (["--epochs", "two"], "--epochs: expected a positive integer, got 'two'"),
        (["--batch-size", "-5"], "--batch-size: expected a positive integer, got '-5'"),
        (["--lr", "0"], "--lr: expected a positive finite number, got '0'"),
        (["--lr", "nan"], "--lr: expected a positive finite number, got 'nan'"),
        (["--lr", "fast"], "--lr: expected a positive finite number, got 'fast'"),
        (["--hidden", "128,x"], "--hidden: expected comma-separated positive layer widths"),
        (["--hidden", "0"], "--hidden: expected comma-separated positive layer widths"),
        (["--seed", "-1"], "--seed: expected a non-negative integer seed, got '-1'"),
        (["--shuffle-seed", "1.5"], "--shuffle-seed: expected a non-negative integer seed, got '1.5'"),
        (["--dtype", "float16"], "--dtype: invalid choice: 'float16'"),
        (["--plot", "curve.jpg"], "--plot: the plot is written as PNG: FILE must end in .png"),
        (["--plot", "/no/such/dir/curve.png"], "--plot: directory '/no/such/dir' of the plot file does not exist"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_options_are_refused_before_any_work(argv: list[str], problem: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert problem in err, err


def test_missing_data_is_an_error_naming_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # A mirror on the loopback discard port: the download fails at once, without the internet.
    monkeypatch.setenv(mnist.MIRRORS_ENV, "http://127.0.0.1:9/")
    status = main(["--quiet", "--data-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("error: could not download train-images-idx3-ubyte.gz"), err
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz" in err


def test_help_lists_every_option() -> None:
    text = subprocess.run([sys.executable, "-m", "conformance.reference.train", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60).stdout
    for option in ("--epochs", "--hidden", "--lr", "--batch-size", "--seed", "--shuffle-seed",
                   "--dtype", "--data-dir", "--plot", "--quiet"):
        assert option in text
    assert text.startswith("usage: python -m conformance.reference.train")
