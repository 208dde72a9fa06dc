"""MNIST: find, download, verify, decode and cache the four IDX files.

Where the files are looked for (the first location that is *named* wins; a location the
user named is never silently swapped for another one):

1. the ``data_dir`` argument,
2. the directory in ``$BACKPROP_MNIST_DIR``,
3. the per-user cache ``$XDG_CACHE_HOME/backprop-conformance/mnist`` (``~/.cache/...``).

Each file may be gzip-compressed (``NAME.gz``) or raw (``NAME``). Missing files are
downloaded into that directory from the mirrors torchvision uses (override with
``$BACKPROP_MNIST_MIRRORS``, comma-separated base URLs), with a progress bar; that needs
the optional extra ``mnist`` (pooch + tqdm).

Every file is checked before use: IDX structure (magic number, 28x28 dimensions, length),
images/labels counts, label range, and its MD5 (either the published MD5 of the ``.gz``
bytes or the MD5 of the decompressed bytes). Any problem raises ``MNISTError`` naming the
file and the problem. Verified arrays are cached as uint8 ``.npy`` files in the user cache,
named by their verified MD5 (and re-hashed on every load), so later loads skip reading and
decompressing the source; a source file whose size, mtime, ctime or inode changed is
verified again from scratch.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

DIR_ENV = "BACKPROP_MNIST_DIR"
# How to get the data: the installed command (it needs the mnist extra; a clone's editable
# install has it too).
FETCH_MNIST = "`backprop-conformance fetch-mnist`"
MIRRORS_ENV = "BACKPROP_MNIST_MIRRORS"
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
INSTALL_HINT = "pip install 'backprop-conformance[mnist]'"

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x0000 0803 (ubyte, 3 dims), 0x0000 0801 (1 dim)
ROWS = COLS = 28
N_CLASSES = 10


class _FileSpec(NamedTuple):
    name: str  # IDX file name without .gz
    count: int  # number of images / labels
    gz_md5: str  # MD5 of the .gz as published on the mirrors
    raw_md5: str  # MD5 of the decompressed IDX bytes


# From the dataset's distribution (see ../shared/mnist/README.md).
FILES = {
    "train_images": _FileSpec("train-images-idx3-ubyte", 60000,
                              "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": _FileSpec("train-labels-idx1-ubyte", 60000,
                              "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "test_images": _FileSpec("t10k-images-idx3-ubyte", 10000,
                             "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": _FileSpec("t10k-labels-idx1-ubyte", 10000,
                             "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}


class MNISTError(Exception):
    """Any problem finding, downloading, verifying or decoding the MNIST files."""


class MNIST(NamedTuple):
    X_train: np.ndarray  # float64 (60000, 784) in [0, 1]
    y_train: np.ndarray  # int64 (60000,) in 0..9
    X_test: np.ndarray  # float64 (10000, 784) in [0, 1]
    y_test: np.ndarray  # int64 (10000,) in 0..9


# ----------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """The per-user cache root of this package's MNIST copy."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "backprop-conformance" / "mnist"


def _file_in(directory: Path, spec: _FileSpec) -> Path | None:
    for candidate in (directory / (spec.name + ".gz"), directory / spec.name):
        if candidate.is_file():
            return candidate
    return None


def _missing_in(directory: Path) -> list[str]:
    return [spec.name for spec in FILES.values() if _file_in(directory, spec) is None]


def _named_dir(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The directory to use and how it was chosen (for messages)."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "the given data directory"
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env).expanduser(), f"${DIR_ENV}"
    return cache_dir(), "the per-user cache"


def find_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The directory holding all four MNIST files, without downloading; None if absent.

    Looks only at the first location that is named: ``data_dir``, else ``$BACKPROP_MNIST_DIR``,
    else the per-user cache. Files are not verified here (``load_mnist`` does that).
    """
    directory, _ = _named_dir(data_dir)
    return directory if directory.is_dir() and not _missing_in(directory) else None


# ----------------------------------------------------------------------------- download


def mirrors() -> list[str]:
    env = os.environ.get(MIRRORS_ENV, "")
    urls = [u.strip() for u in env.split(",") if u.strip()] or list(DEFAULT_MIRRORS)
    return [u if u.endswith("/") else u + "/" for u in urls]


def _download(directory: Path, spec: _FileSpec, progress: bool) -> Path:
    """Fetch ``spec``'s .gz into ``directory`` from the first mirror serving a verified copy."""
    try:
        from pooch import HTTPDownloader  # the optional extra "mnist"

        if progress:
            import tqdm  # noqa: F401 - pooch draws its progress bars with tqdm
    except ImportError as exc:
        raise MNISTError(
            f"MNIST file {spec.name} is not in {directory} and downloading it needs pooch and "
            f"tqdm: {INSTALL_HINT} (or point $BACKPROP_MNIST_DIR at a local copy)"
        ) from exc
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MNISTError(f"cannot create the MNIST directory {directory}: {exc}") from exc
    target = directory / (spec.name + ".gz")
    failures = []
    for base in mirrors():
        url = base + spec.name + ".gz"
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=directory)
        except OSError as exc:
            raise MNISTError(f"cannot write into the MNIST directory {directory}: {exc}") from exc
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            HTTPDownloader(progressbar=progress, timeout=60)(url, str(tmp), None)
            _verify_checksum(tmp, _read_bytes(tmp, url), spec, shown_name=url)
            with open(tmp, "rb") as f:
                is_gzip = f.read(2) == b"\x1f\x8b"
            final = target if is_gzip else directory / spec.name  # a mirror may serve raw IDX
            os.replace(tmp, final)
            return final
        except Exception as exc:  # noqa: BLE001 - any mirror failure: report it, try the next
            failures.append(f"  {url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise MNISTError(
        f"could not download {spec.name}.gz from any mirror:\n" + "\n".join(failures)
        + f"\n(set ${MIRRORS_ENV} to other base URLs, or ${DIR_ENV} to a local copy)"
    )


# ----------------------------------------------------------------------------- decoding


def _read_bytes(path: Path, shown_name: str | None = None) -> bytes:
    """The IDX bytes of ``path``, decompressed if it is gzip."""
    shown = shown_name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MNISTError(f"{shown}: cannot read: {exc}") from exc
    if data[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise MNISTError(f"{shown}: not a gzip file (it has no gzip header)")
        return data
    try:
        return gzip.decompress(data)
    except EOFError as exc:
        raise MNISTError(f"{shown}: truncated gzip stream ({exc})") from exc
    except (OSError, zlib.error) as exc:
        raise MNISTError(f"{shown}: corrupt gzip data ({exc})") from exc


def _parse_idx(raw: bytes, spec: _FileSpec, shown: str) -> np.ndarray:
    """Check the IDX header and length; return the uint8 payload, (n, 784) or (n,)."""
    is_images = spec.name.endswith("idx3-ubyte")
    magic_expected = IMAGE_MAGIC if is_images else LABEL_MAGIC
    header_len = 16 if is_images else 8
    if len(raw) < header_len:
        raise MNISTError(f"{shown}: truncated: {len(raw)} bytes, shorter than the {header_len}-byte "
                         "IDX header")
    header = np.frombuffer(raw, dtype=">u4", count=header_len // 4)
    magic, n = int(header[0]), int(header[1])
    if magic != magic_expected:
        raise MNISTError(f"{shown}: wrong magic number {magic:#010x}, expected {magic_expected:#010x} "
                         f"({'images' if is_images else 'labels'} file); is this an MNIST IDX file?")
    if is_images and (int(header[2]), int(header[3])) != (ROWS, COLS):
        raise MNISTError(f"{shown}: wrong image dimensions {int(header[2])}x{int(header[3])}, "
                         f"expected {ROWS}x{COLS}")
    item = ROWS * COLS if is_images else 1
    expected = header_len + n * item
    if len(raw) < expected:
        raise MNISTError(f"{shown}: truncated: the header declares {n} items ({expected} bytes) "
                         f"but the file has {len(raw)} bytes")
    if len(raw) > expected:
        raise MNISTError(f"{shown}: {len(raw) - expected} unexpected bytes after the {n} items "
                         "its header declares")
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    return payload.reshape(n, item) if is_images else payload


def _verify_checksum(path: Path, raw: bytes, spec: _FileSpec, shown_name: str | None = None) -> None:
    """Accept the file if its bytes have the published .gz MD5, or its decompressed bytes
    have the published MD5 of the IDX data (re-compressed copies only match the latter)."""
    shown = shown_name or str(path)
    file_md5 = hashlib.md5(path.read_bytes()).hexdigest()
    raw_md5 = hashlib.md5(raw).hexdigest()
    if spec.gz_md5 == file_md5 or spec.raw_md5 == raw_md5:
        return
    raise MNISTError(f"{shown}: checksum mismatch: MD5 of the decompressed data is {raw_md5}, "
                     f"expected {spec.raw_md5} (or a file MD5 of {spec.gz_md5} for the published "
                     ".gz); the file is corrupt or not the original MNIST")


def _check_labels(labels: np.ndarray, shown: str) -> None:
    if labels.size and int(labels.max()) >= N_CLASSES:
        bad = int(np.argmax(labels >= N_CLASSES))
        raise MNISTError(f"{shown}: label {int(labels[bad])} at index {bad} is outside "
                         f"0..{N_CLASSES - 1}")


# ----------------------------------------------------------------------------- decoded cache


class _DecodedCache:
    """Verified uint8 arrays as ``<raw md5>.npy``, plus a manifest mapping each source file
    (path, size, mtime, ctime, inode) to the MD5 it was verified to have. Failing to write the cache
    (read-only home, full disk) only costs speed."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest_path = root / "sources.json"
        try:
            self.manifest = json.loads(self.manifest_path.read_text())
            if not isinstance(self.manifest, dict):
                self.manifest = {}
        except (OSError, ValueError):
            self.manifest = {}
        self.dirty = False

    @staticmethod
    def _signature(path: Path) -> list[int]:
        st = path.stat()
        # ctime cannot be set back by the user (utime updates it), so a rewrite that keeps
        # size and mtime is still seen.
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, path: Path, spec: _FileSpec) -> np.ndarray | None:
        entry = self.manifest.get(str(path.resolve()))
        if not entry or entry.get("signature") != self._signature(path) or entry.get("md5") != spec.raw_md5:
            return None
        try:
            array = np.load(self.root / f"{spec.raw_md5}.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        is_images = spec.name.endswith("idx3-ubyte")
        expected_shape = (spec.count, ROWS * COLS) if is_images else (spec.count,)
        if array.dtype != np.uint8 or array.shape != expected_shape:
            return None
        # Re-verify the cached payload against the published checksum (~0.1 s for all four
        # files), so a damaged or edited cache entry is never trusted.
        header = [IMAGE_MAGIC, spec.count, ROWS, COLS] if is_images else [LABEL_MAGIC, spec.count]
        digest = hashlib.md5(np.array(header, dtype=">u4").tobytes())
        digest.update(np.ascontiguousarray(array).data)
        return array if digest.hexdigest() == spec.raw_md5 else None

    def put(self, path: Path, spec: _FileSpec, array: np.ndarray) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            target = self.root / f"{spec.raw_md5}.npy"
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=self.root)
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        except OSError:
            return
        self.manifest[str(path.resolve())] = {"signature": self._signature(path), "md5": spec.raw_md5}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.root)
            with os.fdopen(fd, "w") as f:
                json.dump(self.manifest, f, indent=1)
            os.replace(tmp, self.manifest_path)
        except OSError:
            pass


# ----------------------------------------------------------------------------- public API


def load_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = True, progress: bool = True,
    pixels: bool = False,
) -> MNIST:
    """Load MNIST as float64 images in [0, 1] of shape (n, 784) and int64 labels.

    ``data_dir``: where the four IDX files are (see the module docstring for the search
    order). Missing files are downloaded there when ``download`` is true (with a progress
    bar when ``progress`` is true); otherwise ``MNISTError`` says what is missing.
    ``pixels``: keep the images as the files' uint8 values (0..255), for a caller that
    converts only the rows it uses with ``to_unit_float`` (the same float64 values).
    """
    directory, how = _named_dir(data_dir)
    if directory.exists() and not directory.is_dir():
        raise MNISTError(f"MNIST directory {directory} ({how}) is not a directory")
    missing = _missing_in(directory) if directory.is_dir() else [s.name for s in FILES.values()]
    if missing and not download:
        raise MNISTError(
            f"MNIST file(s) missing in {directory} ({how}): "
            + ", ".join(f"{m}(.gz)" for m in missing)
            + f"; run {FETCH_MNIST} or set ${DIR_ENV} to a folder holding them"
        )
    cache = _DecodedCache(cache_dir() / "decoded")
    arrays: dict[str, np.ndarray] = {}
    unverified: dict[str, tuple[Path, bytes]] = {}  # decoded now; checksum still to check
    for key, spec in FILES.items():
        path = _file_in(directory, spec) if directory.is_dir() else None
        if path is None:
            path = _download(directory, spec, progress)
        cached = cache.get(path, spec)
        if cached is not None:
            arrays[key] = cached
            continue
        raw = _read_bytes(path)
        arrays[key] = _parse_idx(raw, spec, str(path))
        unverified[key] = (path, raw)
    # Specific structural problems first, so a broken file is named for what is wrong with
    # it rather than reported as a bare checksum mismatch.
    for split in ("train", "test"):
        images, labels = f"{split}_images", f"{split}_labels"
        if len(arrays[images]) != len(arrays[labels]):
            raise MNISTError(f"{split} set in {directory}: {len(arrays[images])} images but "
                             f"{len(arrays[labels])} labels")
        if labels in unverified:
            _check_labels(arrays[labels], str(unverified[labels][0]))
    for key, (path, raw) in unverified.items():
        _verify_checksum(path, raw, FILES[key])
        cache.put(path, FILES[key], arrays[key])
    cache.save()
    convert = (lambda images: images) if pixels else to_unit_float
    return MNIST(
        X_train=convert(arrays["train_images"]),
        y_train=arrays["train_labels"].astype(np.int64),
        X_test=convert(arrays["test_images"]),
        y_test=arrays["test_labels"].astype(np.int64),
    )


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float64 in [0, 1] (pixels / 255)."""
    X = pixels.astype(np.float64)
    X /= 255.0  # in place: same values as pixels / 255, one 376 MB array instead of two
    return X


def one_hot(labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """float64 (n, n_classes) with a single 1 per row at the label's column."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: labels must be a 1-D integer array, got {labels.dtype} "
                         f"with shape {labels.shape}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"one_hot: n_classes must be a positive integer, got {n_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ValueError(f"one_hot: label {bad} is outside 0..{n_classes - 1}")
    Y = np.zeros((labels.size, n_classes))
    Y[np.arange(labels.size), labels] = 1.0
    return Y
