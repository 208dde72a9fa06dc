"""The wire protocol between the grader and the isolated worker. Standalone (stdlib + numpy):
the worker loads this file by path, so it must import nothing from the project.

A message is one frame on a pipe::

    b"BPW2" | JSON length (4 bytes, big-endian) | blob length (8 bytes) | JSON | blob

A value crosses as a *descriptor* in the JSON, ``{"v": tree, "a": arrays}``, plus the blob:

- ``tree`` describes the structure (lists, tuples, dicts, floats, ...); array leaves name an
  index into ``arrays``;
- ``arrays`` lists, per array, ``[dtype, shape, order]``: a dtype string from a fixed
  whitelist (booleans, integers, floats, complex; never object, string or structured), a
  list of non-negative ints, and ``"C"`` or ``"F"``;
- the blob is the arrays' raw bytes, back to back, each starting at the next multiple of
  64 bytes. Offsets are not sent: the reader computes them from the sizes, so the only thing
  to check is that the blob is exactly as long as the arrays need.

Nothing is pickled or evaluated in either direction, and the reader trusts nothing: sizes,
counts, dtypes, shapes, node kinds, depth and total length are all checked before a single
array is built (``decode_tree``), within limits given by the caller.

Values that cannot cross faithfully (an ndarray subclass, an object with home-made
comparison operators, an object-dtype array...) are encoded as ``{"t": "foreign", ...}``
and rebuilt on the grader side as a ``ForeignValue`` marker: an inert object that fails
every structural check the suite makes (it is not an ndarray, a float, a list...), so the
verdict is the one the same value would get in-process, minus the lying.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import struct
import time
from typing import Any, TypeGuard

import numpy as np

MAGIC = b"BPW2"
_PREFIX = struct.Struct(">4sIQ")
MAX_JSON_BYTES = 4 << 20
MAX_DEPTH = 24
MAX_NODES = 100_000
MAX_ARRAYS = 100_000  # per value; callers pass a tighter bound for answers
MAX_NDIM = 32
MAX_DIM = 1 << 40
ALIGN = 64
VIEW_THRESHOLD = 16 << 20


def _whitelist() -> frozenset[str]:
    """Every dtype string that may cross: bool, signed/unsigned ints, floats (incl. half and
    long double), complex; both byte orders. Nothing with fields, objects or units."""
    codes = ["?", "b", "h", "i", "l", "q", "B", "H", "I", "L", "Q", "e", "f", "d", "g", "F", "D", "G"]
    allowed = set()
    for code in codes:
        dtype = np.dtype(code)
        allowed.add(dtype.str)
        allowed.add(dtype.newbyteorder("S").str)
    return frozenset(allowed)


DTYPES = _whitelist()


class WireError(Exception):
    """A frame or a value is malformed or exceeds a bound."""


class PeerClosed(WireError):
    """The other end closed the pipe (the worker died or exited)."""


class WireTimeout(WireError):
    """No complete frame arrived before the deadline."""


# --------------------------------------------------------------------------- framing


def write_frame(fd: int, header: dict, blob: Any = b"") -> None:
    """``blob``: bytes-like, or a list of bytes-like parts (written without joining them)."""
    data = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    if len(data) > MAX_JSON_BYTES:
        raise WireError(f"message header too large ({len(data)} bytes)")
    parts = blob if isinstance(blob, list) else [blob]
    size = sum(memoryview(p).nbytes for p in parts)
    head = _PREFIX.pack(MAGIC, len(data), size) + data
    if size <= 1 << 20:  # one write, one wake-up of the reader: latency is per call
        _write_all(fd, b"".join([head, *parts]))
    else:
        for part in [head, *parts]:
            _write_all(fd, part)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view[: 1 << 24])
        view = view[written:]


def read_frame(fd: int, *, max_blob: int, deadline: float | None = None) -> tuple[dict, bytearray]:
    """Read one frame; ``deadline`` is a time.monotonic() instant (None: wait forever).
    Both lengths are checked before anything is allocated or read."""
    magic, json_len, blob_len = _PREFIX.unpack(_read_exact(fd, _PREFIX.size, deadline))
    if magic != MAGIC:
        raise WireError(f"bad frame magic {bytes(magic)!r} (garbage on the protocol pipe)")
    if json_len > MAX_JSON_BYTES:
        raise WireError(f"frame header of {json_len} bytes exceeds the {MAX_JSON_BYTES}-byte limit")
    if blob_len > max_blob:
        raise WireError(f"frame payload of {blob_len} bytes exceeds the {max_blob}-byte limit "
                        "(refused before reading it)")
    try:
        header = json.loads(bytes(_read_exact(fd, json_len, deadline)))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"frame header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise WireError("frame header is not a JSON object")
    return header, _read_exact(fd, blob_len, deadline)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise WireTimeout("no answer before the deadline")
        chunk = os.readv(fd, [view[got:]])
        if chunk == 0:
            raise PeerClosed("pipe closed")
        got += chunk
    return buf


# --------------------------------------------------------------------------- encoding


class _Encoder:
    """Turns a value into (tree, arrays). Runs on both sides; on the worker side the values
    are hostile, so it inspects them with ``type()`` (which cannot be faked) and reads
    list/tuple contents through the base-class methods (which cannot be overridden)."""

    def __init__(self, max_nodes: int, max_arrays: int) -> None:
        self.arrays: list[np.ndarray] = []
        self.seen: dict[int, int] = {}  # id(array) -> index: keeps aliasing (deepcopy memo semantics)
        self.keep_alive: list[Any] = []
        self.nodes = 0
        self.max_nodes, self.max_arrays = max_nodes, max_arrays

    def add_array(self, arr: np.ndarray) -> int:
        if len(self.arrays) >= self.max_arrays:
            raise WireError(f"value holds more than {self.max_arrays} arrays")
        self.arrays.append(arr)
        return len(self.arrays) - 1

    def encode(self, value: Any, depth: int = 0) -> dict:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise WireError(f"value has more than {self.max_nodes} parts")
        if depth > MAX_DEPTH:
            raise WireError(f"value is nested more than {MAX_DEPTH} levels deep")
        kind = type(value)
        if kind is np.ndarray:
            return self._encode_array(value)
        if kind is float:
            number = float.__float__(value)
            return {"t": "float", "v": number if math.isfinite(number) else float.__repr__(number)}
        if kind is bool:
            return {"t": "bool", "v": value}
        if kind is int:
            text = int.__repr__(value) if -(10 ** 64) < value < 10 ** 64 else ""
            if not text:
                return _foreign(value, "int too large to transfer")
            return {"t": "int", "v": text}
        if value is None:
            return {"t": "none"}
        if kind is str:
            return {"t": "str", "v": str.__str__(value)[:2000]}
        if isinstance(kind, type) and issubclass(kind, np.generic) and kind.__module__ == "numpy":
            dtype = np.dtype(kind)
            if dtype.str in DTYPES:
                return {"t": "npscalar", "i": self.add_array(np.array(value, dtype=dtype))}
            return _foreign(value, "numpy scalar of an unsupported dtype")
        if issubclass(kind, tuple):  # plain tuples and tuple subclasses such as namedtuples
            items = [tuple.__getitem__(value, i) for i in range(tuple.__len__(value))]
            return {"t": "tuple", "v": [self.encode(v, depth + 1) for v in items]}
        if issubclass(kind, list):
            items = [list.__getitem__(value, i) for i in range(list.__len__(value))]
            return {"t": "list", "v": [self.encode(v, depth + 1) for v in items]}
        if issubclass(kind, dict):
            keys = list(dict.keys(value))
            if not all(type(k) is str for k in keys):
                return _foreign(value, "dict with non-string keys")
            return {"t": "dict", "k": [str.__str__(k)[:200] for k in keys],
                    "v": [self.encode(dict.__getitem__(value, k), depth + 1) for k in keys]}
        if issubclass(kind, np.ndarray):
            return _foreign(value, "a subclass of numpy.ndarray, not a numpy.ndarray")
        return _foreign(value, "")

    def _encode_array(self, arr: np.ndarray) -> dict:
        if arr.dtype.str not in DTYPES or arr.dtype.fields is not None or arr.ndim > MAX_NDIM:
            return _foreign(arr, f"numpy.ndarray of dtype {arr.dtype.str[:40]}")
        index = self.seen.get(id(arr))
        if index is not None:
            return {"t": "ref", "i": index}
        self.keep_alive.append(arr)  # ids stay unique while we hold the object
        node = {"t": "nd", "i": self.add_array(arr), "layout": _layout(arr)}
        self.seen[id(arr)] = node["i"]
        if not arr.flags.writeable:
            node["ro"] = True
        return node


def _layout(arr: np.ndarray) -> Any:
    """How to rebuild the memory layout on the other side (it can matter: a candidate may
    assume C order, or write through a view). C and F are exact; positive strides are
    rebuilt exactly; anything else becomes 'strided' (a non-contiguous view, other strides)."""
    if arr.flags.c_contiguous:
        return "C"
    if arr.flags.f_contiguous:
        return "F"
    if all(s > 0 and s % arr.itemsize == 0 for s in arr.strides) and arr.size > 0:
        return list(arr.strides)
    return "strided"


def _foreign(value: Any, why: str) -> dict:
    kind = type(value)
    name = getattr(kind, "__qualname__", "?")
    module = getattr(kind, "__module__", "?")
    return {"t": "foreign", "type": str(name)[:100], "module": str(module)[:100], "why": why}


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def encode_tree(value: Any, *, max_bytes: int, max_nodes: int = MAX_NODES,
                max_arrays: int = MAX_ARRAYS) -> tuple[dict, list]:
    """Encode ``value`` as (descriptor, the blob as a list of parts for ``write_frame``).
    The arrays' own memory is referenced, not copied (MNIST-sized data crosses once)."""
    enc = _Encoder(max_nodes, max_arrays)
    tree = enc.encode(value)
    parts: list[bytes | memoryview]
    table, parts, offset = [], [], 0
    for arr in enc.arrays:
        order = "C"
        if not arr.flags.c_contiguous:
            if arr.flags.f_contiguous:
                order, arr = "F", arr.T  # the transpose of an F array is C-contiguous
            else:
                arr = np.ascontiguousarray(arr)
        start = _aligned(offset)
        if start > offset:
            parts.append(bytes(start - offset))
        # Bytes through a uint8 view: the buffer protocol refuses some dtypes (non-native
        # long double) that are plain bytes all the same.
        # (numpy's stubs give ndarray the buffer protocol on Python >= 3.12 only; it has it on all)
        data = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")  # type: ignore[arg-type]
        parts.append(data)
        offset = start + data.nbytes
        if offset > max_bytes:
            raise WireError(f"value holds more than {max_bytes} bytes of arrays (the limit)")
        shape = arr.shape[::-1] if order == "F" else arr.shape
        table.append([arr.dtype.str, [int(d) for d in shape], order])
    return {"v": tree, "a": table}, parts


# --------------------------------------------------------------------------- decoding


class ForeignValue:
    """Stands for a value the worker returned that cannot cross the boundary as data.

    Inert on purpose: it has no length, no items, no numeric conversion, and compares equal
    only to itself, so any check the suite makes on it fails. ``type_name`` and ``why`` say
    what it was (its class is renamed after the original type for readable messages)."""

    __slots__ = ("type_name", "module", "why")

    def __init__(self, type_name: str, module: str, why: str) -> None:
        self.type_name, self.module, self.why = type_name, module, why

    def __repr__(self) -> str:
        extra = f": {self.why}" if self.why else ""
        return f"<{self.module}.{self.type_name} object returned by the isolated candidate{extra}>"

    __hash__ = object.__hash__


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_FOREIGN_CLASSES: dict[tuple[str, str], type] = {}


def make_foreign(type_name: str, module: str, why: str) -> ForeignValue:
    """A marker whose class carries the original type's (sanitised) name and module, so a
    message naming ``type(value)`` reads as it would in-process."""
    safe = type_name.rsplit(".", 1)[-1]
    safe = safe if _NAME.fullmatch(safe) else "UnknownType"
    safe_module = module if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,99}", module) else "unknown"
    cls = _FOREIGN_CLASSES.get((safe_module, safe))
    if cls is None:
        cls = type(safe, (ForeignValue,), {"__slots__": ()})
        cls.__qualname__ = safe
        cls.__module__ = safe_module
        if len(_FOREIGN_CLASSES) < 1000:  # bounded: a hostile worker could invent many names
            _FOREIGN_CLASSES[(safe_module, safe)] = cls
    return cls(type_name, module, why)


def _is_int(value: Any, low: int, high: int) -> TypeGuard[int]:
    return type(value) is int and low <= value <= high


def _array_table(table: Any, blob_len: int, *, max_bytes: int, max_arrays: int) -> list[tuple]:
    """Check the descriptor's array table against the limits and the blob's length; return
    (dtype, shape, order, offset, count) per array. Nothing is allocated here."""
    if type(table) is not list:
        raise WireError("malformed value: the array table is not a list")
    if len(table) > max_arrays:
        raise WireError(f"value holds {len(table)} arrays, more than the limit of {max_arrays}")
    checked, offset = [], 0
    for n, entry in enumerate(table):
        if type(entry) is not list or len(entry) != 3:
            raise WireError(f"array {n}: malformed entry")
        dtype_str, shape, order = entry
        if type(dtype_str) is not str or dtype_str not in DTYPES:
            raise WireError(f"array {n}: dtype {str(dtype_str)[:40]!r} may not cross the boundary")
        if (type(shape) is not list or len(shape) > MAX_NDIM
                or not all(_is_int(d, 0, MAX_DIM) for d in shape)):
            raise WireError(f"array {n}: bad shape {str(shape)[:100]}")
        if order not in ("C", "F"):
            raise WireError(f"array {n}: bad order {str(order)[:10]!r}")
        dtype = np.dtype(dtype_str)
        count = math.prod(shape)
        start = _aligned(offset)
        offset = start + count * dtype.itemsize
        if offset > max_bytes:
            raise WireError(f"arrays exceed the {max_bytes}-byte limit")
        checked.append((dtype, tuple(shape), order, start, count))
    if offset != blob_len:
        raise WireError(f"the arrays need {offset} bytes but {blob_len} were sent")
    return checked


def decode_tree(descriptor: Any, blob: bytes | bytearray, *, max_bytes: int,
                max_nodes: int = MAX_NODES, max_arrays: int = MAX_ARRAYS,
                rebuild_layouts: bool = False, copy: bool = True) -> Any:
    """Rebuild a value from (descriptor, blob), validating everything; raises WireError.

    ``rebuild_layouts``: recreate non-contiguous memory layouts (the worker does this for the
    suite's arguments; the grader keeps results as plain C/F arrays, never trusting strides).
    ``copy=False`` keeps arrays of at least 16 MiB as views into ``blob`` (saves a copy of
    MNIST-sized data); smaller ones are copies that own their memory, exactly like the
    in-process deep copies."""
    if type(descriptor) is not dict or set(descriptor) != {"v", "a"}:
        raise WireError("malformed value: not a {v, a} descriptor")
    table = _array_table(descriptor["a"], len(blob), max_bytes=max_bytes, max_arrays=max_arrays)
    built: dict[int, Any] = {}
    count = 0

    def array_at(node: dict) -> np.ndarray:
        index = node.get("i")
        if not _is_int(index, 0, len(table) - 1):
            raise WireError(f"reference to a missing array {str(index)[:20]}")
        if index in built:
            raise WireError("array used twice without a reference node")
        dtype, shape, order, start, n = table[index]
        flat = np.frombuffer(blob, dtype=dtype, count=n, offset=start) if n else np.empty(0, dtype)
        arr = flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)
        if copy or not dtype.isnative or n * dtype.itemsize < VIEW_THRESHOLD:
            arr = arr.astype(dtype.newbyteorder("="), order="K", copy=True)
        built[index] = arr
        return arr

    def build(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > max_nodes or depth > MAX_DEPTH:
            raise WireError("value too large or too deeply nested")
        if type(node) is not dict:
            raise WireError("malformed value tree")
        kind = node.get("t")
        if kind == "nd":
            arr = array_at(node)
            if rebuild_layouts:
                arr = _rebuild_layout(arr, node.get("layout", "C"))
                built[node["i"]] = arr
            if node.get("ro") is True:
                arr.flags.writeable = False
            return arr
        if kind == "ref":
            index = node.get("i")
            if not _is_int(index, 0, len(table) - 1) or index not in built:
                raise WireError("reference to an array not seen yet")
            return built[index]
        if kind == "float":
            value = node.get("v")
            if type(value) is float:
                return value
            if value in ("nan", "inf", "-inf"):
                return float(value)
            raise WireError("malformed float")
        if kind == "npscalar":
            arr = array_at(node)
            if arr.shape != ():
                raise WireError("malformed numpy scalar")
            return arr[()]
        if kind in ("list", "tuple"):
            items = node.get("v")
            if type(items) is not list:
                raise WireError(f"malformed {kind}")
            out = [build(item, depth + 1) for item in items]
            return out if kind == "list" else tuple(out)
        if kind == "dict":
            keys, values = node.get("k"), node.get("v")
            if (type(keys) is not list or type(values) is not list or len(keys) != len(values)
                    or not all(type(k) is str for k in keys)):
                raise WireError("malformed dict")
            return {k: build(v, depth + 1) for k, v in zip(keys, values)}
        if kind == "bool" and type(node.get("v")) is bool:
            return node["v"]
        if kind == "int" and type(node.get("v")) is str and re.fullmatch(r"-?\d{1,64}", node["v"]):
            return int(node["v"])
        if kind == "none":
            return None
        if kind == "str" and type(node.get("v")) is str:
            return node["v"][:2000]
        if kind == "foreign":
            return make_foreign(str(node.get("type", "?"))[:100], str(node.get("module", "?"))[:100],
                                str(node.get("why", ""))[:200])
        raise WireError(f"unknown value kind {str(kind)[:40]!r}")

    return build(descriptor["v"], 0)


def _rebuild_layout(arr: np.ndarray, layout: Any) -> np.ndarray:
    if layout == "C":
        return np.ascontiguousarray(arr) if not arr.flags.c_contiguous else arr
    if layout == "F":
        return np.asfortranarray(arr)
    if arr.size == 0 or arr.ndim == 0:
        return arr
    if (type(layout) is list and len(layout) == arr.ndim
            and all(type(s) is int and 0 < s <= (1 << 40) and s % arr.itemsize == 0 for s in layout)):
        span = sum((n - 1) * s for n, s in zip(arr.shape, layout)) + arr.itemsize
        if span <= 4 * arr.nbytes + 4096:  # bounded: a hostile layout cannot make us allocate much
            base = np.zeros(span // arr.itemsize, dtype=arr.dtype)
            view = np.lib.stride_tricks.as_strided(base, arr.shape, tuple(layout))
            view[...] = arr
            if not view.flags.c_contiguous:
                return view
    # Some other non-contiguous view: every other element of a buffer twice as long (as
    # conformance.cases.strided_copy, written out here because this file imports nothing
    # from the project).
    shape = arr.shape[:-1] + (2 * arr.shape[-1],)
    view = np.zeros(shape, dtype=arr.dtype)[..., ::2]
    view[...] = arr
    return view
