"""conformance.reference.mnist: real data, every refusal, the search order, the decoded cache, downloads.

Most tests use a tiny synthetic MNIST (a few random 28x28 images) whose checksums are
patched into ``conformance.reference.mnist.FILES``, so they run in milliseconds without the real data.
Tests marked ``mnist`` read the real files; without them they skip, except under CI
(env ``CI`` set), where the data is always provided and its absence is a failure.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conformance.reference import mnist
from conformance.reference.mnist import FILES, MNISTError, find_mnist_dir, load_mnist, one_hot

# Label counts published with the dataset (../shared/mnist/README.md).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# ----------------------------------------------------------------------------- helpers


def idx_images(pixels: np.ndarray, *, magic: int = 2051, dims: tuple[int, int] = (28, 28),
               declared: int | None = None) -> bytes:
    n = len(pixels) if declared is None else declared
    header = np.array([magic, n, *dims], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()


def idx_labels(labels: np.ndarray, *, magic: int = 2049, declared: int | None = None) -> bytes:
    n = len(labels) if declared is None else declared
    return np.array([magic, n], dtype=">u4").tobytes() + np.asarray(labels, np.uint8).tobytes()


def write(directory: Path, name: str, data: bytes, *, compress: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name + ".gz" if compress else name)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


class TinyMNIST:
    """A valid 12-train / 7-test MNIST look-alike whose MD5s are patched into FILES."""

    N = {"train": 12, "test": 7}

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        rng = np.random.default_rng(0)
        self.raw: dict[str, bytes] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for split, n in self.N.items():
            pixels = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n).astype(np.uint8)
            self.arrays[f"{split}_images"], self.arrays[f"{split}_labels"] = pixels, labels
            self.raw[f"{split}_images"] = idx_images(pixels)
            self.raw[f"{split}_labels"] = idx_labels(labels)
        for key, data in self.raw.items():
            spec = FILES[key]._replace(count=self.N[key.split("_")[0]],
                                       raw_md5=hashlib.md5(data).hexdigest(), gz_md5="0" * 32)
            monkeypatch.setitem(FILES, key, spec)

    def write_to(self, directory: Path, *, compress: bool = True, skip: str | None = None) -> Path:
        for key, data in self.raw.items():
            if key != skip:
                write(directory, FILES[key].name, data, compress=compress)
        return directory

    def file(self, directory: Path, key: str) -> Path:
        return directory / (FILES[key].name + ".gz")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test gets its own empty cache and no inherited data dir or mirrors."""
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.delenv(mnist.DIR_ENV, raising=False)
    monkeypatch.delenv(mnist.MIRRORS_ENV, raising=False)
    return cache_home


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> TinyMNIST:
    return TinyMNIST(monkeypatch)


@pytest.fixture
def tiny_dir(tiny: TinyMNIST, tmp_path: Path) -> Path:
    return tiny.write_to(tmp_path / "data")


def assert_refused(match: str, directory: Path, file_name: str) -> MNISTError:
    """load_mnist(directory) raises MNISTError mentioning ``file_name`` and ``match``."""
    __tracebackhide__ = True
    with pytest.raises(MNISTError) as info:
        load_mnist(directory, download=False)
    message = str(info.value)
    if file_name not in message or match not in message:
        pytest.fail(f"MNISTError message {message!r}, but should name {file_name!r} and say {match!r}")
    return info.value


# ----------------------------------------------------------------------------- real data


@pytest.mark.mnist
def test_real_files_load_with_published_shapes_and_label_counts(real_dir: Path) -> None:
    data = load_mnist(real_dir, download=False)
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert data.X_train.dtype == np.float64 and data.X_test.dtype == np.float64
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    for X in (data.X_train, data.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    assert np.bincount(data.y_train, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(data.y_test, minlength=10).tolist() == TEST_LABEL_COUNTS
    # Pixels are k / 255 exactly: the same values a student gets from uint8 / 255.
    assert np.array_equal(data.X_test * 255, np.round(data.X_test * 255))


@pytest.mark.mnist
def test_real_files_accepted_raw_and_recompressed(real_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    copy.mkdir()
    for spec in FILES.values():
        raw = gzip.decompress((real_dir / (spec.name + ".gz")).read_bytes())
        if spec.name.startswith("t10k"):
            (copy / spec.name).write_bytes(raw)  # raw IDX, no .gz
        else:
            (copy / (spec.name + ".gz")).write_bytes(gzip.compress(raw, compresslevel=1))
    data = load_mnist(copy, download=False)
    assert data.X_test.shape == (10000, 784)


@pytest.mark.mnist
def test_real_file_with_one_changed_pixel_fails_its_checksum(real_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "changed"
    shutil.copytree(real_dir, copy)
    name = FILES["test_images"].name
    raw = bytearray(gzip.decompress((copy / (name + ".gz")).read_bytes()))
    raw[16 + 5000 * 784 + 400] ^= 0x01
    (copy / (name + ".gz")).write_bytes(gzip.compress(bytes(raw)))
    assert_refused("checksum mismatch", copy, name)


@pytest.mark.mnist
def test_real_gzip_cut_short_is_reported_truncated(real_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cut"
    shutil.copytree(real_dir, copy)
    name = FILES["train_labels"].name
    gz = (copy / (name + ".gz")).read_bytes()
    (copy / (name + ".gz")).write_bytes(gz[: len(gz) // 2])
    assert_refused("truncated", copy, name)


# ----------------------------------------------------------------------------- refusals


def test_tiny_dataset_loads(tiny: TinyMNIST, tiny_dir: Path) -> None:
    data = load_mnist(tiny_dir, download=False)
    assert np.array_equal(data.X_train, tiny.arrays["train_images"] / 255.0)
    assert np.array_equal(data.y_test, tiny.arrays["test_labels"].astype(np.int64))
    assert data.X_train.dtype == np.float64 and data.y_train.dtype == np.int64


def test_pixels_converted_row_by_row_equal_the_float_load(tiny: TinyMNIST, tiny_dir: Path) -> None:
    """The MNIST checks load uint8 pixels and convert only the rows they use: the same float64
    values as load_mnist's own conversion, bit for bit."""
    from conformance.reference.mnist import to_unit_float

    floats = load_mnist(tiny_dir, download=False)
    pixels = load_mnist(tiny_dir, download=False, pixels=True)
    assert pixels.X_train.dtype == np.uint8
    assert np.array_equal(to_unit_float(pixels.X_train[:5]), floats.X_train[:5])
    assert np.array_equal(to_unit_float(pixels.X_test), floats.X_test)
    assert np.array_equal(pixels.y_train, floats.y_train)


def test_missing_file_is_named(tiny: TinyMNIST, tmp_path: Path) -> None:
    directory = tiny.write_to(tmp_path / "data", skip="test_labels")
    assert_refused("missing", directory, FILES["test_labels"].name)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    assert_refused("missing", tmp_path / "nowhere", FILES["train_images"].name)


@pytest.mark.parametrize(
    "key, data, problem",
    [
        ("train_images", lambda t: idx_images(t.arrays["train_images"], magic=2049), "wrong magic number"),
        ("train_labels", lambda t: idx_labels(t.arrays["train_labels"], magic=2051), "wrong magic number"),
        ("test_images", lambda t: idx_images(np.zeros((7, 32 * 32)), dims=(32, 32)),
         "wrong image dimensions 32x32"),
        ("test_images", lambda t: idx_images(t.arrays["test_images"])[:-100], "truncated"),
        ("test_labels", lambda t: idx_labels(t.arrays["test_labels"], declared=8), "truncated"),
        ("test_labels", lambda t: b"\x00\x00\x08", "truncated"),
        ("train_labels", lambda t: idx_labels(t.arrays["train_labels"]) + b"\x00", "unexpected bytes"),
        ("train_images", lambda t: idx_images(t.arrays["train_images"][:11]),
         "11 images but 12 labels"),
        ("train_labels", lambda t: idx_labels(np.r_[t.arrays["train_labels"][:-1], 10]), "outside 0..9"),
        ("test_images", lambda t: idx_images(255 - t.arrays["test_images"]), "checksum mismatch"),
    ],
    ids=["images-magic", "labels-magic", "dims", "images-truncated", "labels-count-over-length",
         "header-truncated", "trailing-bytes", "count-mismatch", "label-range", "checksum"],
)
def test_bad_file_is_refused_with_its_name_and_problem(tiny: TinyMNIST, tiny_dir: Path, key: str,
                                                       data, problem: str) -> None:
    write(tiny_dir, FILES[key].name, data(tiny))
    # "count-mismatch" is a set-level problem: the message names the directory.
    name = str(tiny_dir) if problem.endswith("labels") else FILES[key].name
    assert_refused(problem, tiny_dir, name)


def test_corrupt_and_non_gzip_files_are_refused(tiny: TinyMNIST, tiny_dir: Path) -> None:
    path = tiny.file(tiny_dir, "test_labels")
    path.write_bytes(idx_labels(tiny.arrays["test_labels"]))  # raw bytes under a .gz name
    assert_refused("not a gzip file", tiny_dir, path.name)
    gz = bytearray(gzip.compress(idx_labels(tiny.arrays["test_labels"])))
    gz[12:20] = b"\xff" * 8  # garbage inside the deflate stream
    path.write_bytes(bytes(gz))
    assert_refused("gzip", tiny_dir, path.name)


def test_checksum_accepts_published_gz_md5(tiny: TinyMNIST, tiny_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny.file(tiny_dir, "train_images")
    spec = FILES["train_images"]
    monkeypatch.setitem(FILES, "train_images", spec._replace(
        raw_md5="f" * 32, gz_md5=hashlib.md5(path.read_bytes()).hexdigest()))
    assert load_mnist(tiny_dir, download=False).X_train.shape == (12, 784)


# ----------------------------------------------------------------------------- search order


def test_search_order_explicit_then_env_then_cache(tiny: TinyMNIST, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tiny.write_to(mnist.cache_dir())
    env_dir, explicit = tiny.write_to(tmp_path / "env"), tiny.write_to(tmp_path / "explicit")
    assert find_mnist_dir() == cache
    monkeypatch.setenv(mnist.DIR_ENV, str(env_dir))
    assert find_mnist_dir() == env_dir
    assert find_mnist_dir(explicit) == explicit
    assert find_mnist_dir(str(explicit)) == explicit


def test_a_named_incomplete_directory_is_not_swapped_for_another(tiny: TinyMNIST, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.write_to(mnist.cache_dir())
    incomplete = tiny.write_to(tmp_path / "incomplete", skip="train_labels")
    assert find_mnist_dir(incomplete) is None
    monkeypatch.setenv(mnist.DIR_ENV, str(incomplete))
    assert find_mnist_dir() is None
    assert_refused("missing", incomplete, FILES["train_labels"].name)


def test_load_without_arguments_uses_env_dir(tiny: TinyMNIST, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir = tiny.write_to(tmp_path / "env", compress=False)
    monkeypatch.setenv(mnist.DIR_ENV, str(env_dir))
    assert load_mnist(download=False).y_test.shape == (7,)


# ----------------------------------------------------------------------------- decoded cache


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, shown_name: str | None = None) -> bytes:
        raise AssertionError(f"{path} was decoded again although the cache holds it")

    monkeypatch.setattr(mnist, "_read_bytes", refuse)


def test_second_load_comes_from_the_cache(tiny: TinyMNIST, tiny_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_mnist(tiny_dir, download=False)
    assert len(list((mnist.cache_dir() / "decoded").glob("*.npy"))) == 4
    _forbid_decoding(monkeypatch)
    second = load_mnist(tiny_dir, download=False)
    for a, b in zip(first, second):
        assert np.array_equal(a, b) and a.dtype == b.dtype


def test_changed_source_file_invalidates_the_cache(tiny: TinyMNIST, tiny_dir: Path) -> None:
    load_mnist(tiny_dir, download=False)
    path = tiny.file(tiny_dir, "train_labels")
    stat = path.stat()
    write(tiny_dir, FILES["train_labels"].name, idx_labels((tiny.arrays["train_labels"] + 1) % 10))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: the inode/size still differ
    assert_refused("checksum mismatch", tiny_dir, path.name)


def test_damaged_cache_entry_is_rebuilt(tiny: TinyMNIST, tiny_dir: Path) -> None:
    load_mnist(tiny_dir, download=False)
    for npy in (mnist.cache_dir() / "decoded").glob("*.npy"):
        npy.write_bytes(b"not an npy file")
    data = load_mnist(tiny_dir, download=False)
    assert np.array_equal(data.y_train, tiny.arrays["train_labels"])


def test_unwritable_cache_only_costs_speed(tiny: TinyMNIST, tiny_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache cannot be created under a regular file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    for _ in range(2):
        assert load_mnist(tiny_dir, download=False).X_test.shape == (7, 784)


# ----------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (www, base URL)."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.mnist
def test_download_falls_back_past_a_missing_and_a_corrupt_mirror(real_dir: Path, local_server,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    www, base = local_server
    shutil.copytree(real_dir, www / "good")
    (www / "corrupt").mkdir()
    for spec in FILES.values():
        (www / "corrupt" / (spec.name + ".gz")).write_bytes(gzip.compress(b"\x00" * 64))
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"{base}/absent/, {base}/corrupt,{base}/good/")
    target = tmp_path / "downloaded"
    data = load_mnist(target, progress=False)
    assert np.bincount(data.y_test, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert find_mnist_dir(target) == target
    assert not list(target.glob(".download-*")), "temporary download files were left behind"


def test_download_reports_every_failed_mirror(tiny: TinyMNIST, local_server, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    www, base = local_server
    tiny.write_to(www / "corrupt", compress=True)
    write(www / "corrupt", FILES["train_images"].name, b"garbage")
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"{base}/absent/,{base}/corrupt/")
    with pytest.raises(MNISTError) as info:
        load_mnist(tmp_path / "target", progress=False)
    message = str(info.value)
    assert f"{base}/absent/{FILES['train_images'].name}.gz" in message and "404" in message
    assert f"{base}/corrupt/{FILES['train_images'].name}.gz" in message
    assert "checksum mismatch" in message or "magic" in message or "truncated" in message


@pytest.mark.parametrize("served_gzipped", [True, False])
def test_download_uses_a_verified_tiny_copy(tiny: TinyMNIST, local_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, served_gzipped: bool) -> None:
    www, base = local_server
    (www / "m").mkdir()
    for key, raw in tiny.raw.items():  # a mirror may also serve the raw IDX bytes under .gz URLs
        (www / "m" / (FILES[key].name + ".gz")).write_bytes(gzip.compress(raw) if served_gzipped else raw)
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"{base}/m")  # no trailing slash: one is added
    target = tmp_path / "target"
    data = load_mnist(target, progress=False)
    assert np.array_equal(data.y_train, tiny.arrays["train_labels"])
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(spec.name + (".gz" if served_gzipped else "") for spec in FILES.values())
    assert np.array_equal(load_mnist(target, download=False).X_test, data.X_test)


@pytest.mark.parametrize("module, progress", [("pooch", False), ("tqdm", True)])
def test_download_without_the_extra_names_the_install_command(module: str, progress: bool, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(MNISTError, match=r"pip install 'backprop-conformance\[mnist\]'"):
        load_mnist(tmp_path / "target", progress=progress)


def test_download_into_an_impossible_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(MNISTError, match="cannot create the MNIST directory"):
        load_mnist(blocker / "mnist", progress=False)


def test_a_file_given_as_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(MNISTError, match="is not a directory"):
        load_mnist(blocker, download=False)


# ----------------------------------------------------------------------------- one_hot


def test_one_hot_values_and_dtype() -> None:
    Y = one_hot(np.array([3, 0, 9]))
    assert Y.dtype == np.float64 and Y.shape == (3, 10)
    assert np.array_equal(Y.argmax(axis=1), [3, 0, 9]) and np.array_equal(Y.sum(axis=1), [1, 1, 1])
    assert one_hot(np.array([1, 0], dtype=np.uint8), n_classes=2).tolist() == [[0, 1], [1, 0]]
    assert one_hot(np.array([], dtype=np.int64)).shape == (0, 10)


@pytest.mark.parametrize(
    "labels, n_classes, problem",
    [
        (np.array([1.0, 2.0]), 10, "1-D integer array"),
        (np.array([[1, 2]]), 10, "1-D integer array"),
        (np.array([0, 10]), 10, "label 10 is outside 0..9"),
        (np.array([-1, 2]), 10, "label -1 is outside 0..9"),
        (np.array([0]), 0, "n_classes must be a positive integer"),
    ],
)
def test_one_hot_rejects_bad_input(labels: np.ndarray, n_classes: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        one_hot(labels, n_classes)


def test_fetch_mnist_cli_downloads_and_prints_the_folder(tiny: TinyMNIST, local_server, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.reference.fetch_mnist import main as fetch_main

    www, base = local_server
    tiny.write_to(www / "m")
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"{base}/m/")
    target = tmp_path / "fetched"
    assert fetch_main(["--dir", str(target), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"MNIST verified: 12 training and 7 test images in {target.resolve()}" in out
    assert f"export {mnist.DIR_ENV}={target.resolve()}" in out
    monkeypatch.setenv(mnist.MIRRORS_ENV, "http://127.0.0.1:9/")  # nothing to fetch: a miss would fail
    assert fetch_main(["--dir", str(target), "--quiet"]) == 0
    assert fetch_main(["--dir", str(tmp_path / "other"), "--quiet"]) == 1
    assert "error: could not download" in capsys.readouterr().err


def test_edited_cache_entry_is_not_trusted(tiny: TinyMNIST, tiny_dir: Path) -> None:
    load_mnist(tiny_dir, download=False)
    npy = mnist.cache_dir() / "decoded" / f"{FILES['test_labels'].raw_md5}.npy"
    edited = np.load(npy)
    edited[0] = (edited[0] + 1) % 10  # a valid-looking array with one label changed
    np.save(npy, edited)
    assert np.array_equal(load_mnist(tiny_dir, download=False).y_test, tiny.arrays["test_labels"])
