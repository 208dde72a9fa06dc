"""Builders of hostile (and honest) intake entries; see README.md beside this file.

Every builder writes one class-folder entry into ``folder`` and returns its path. Notebooks
are written as plain JSON (nbformat's own format), so building needs no third-party library.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import zipfile
from pathlib import Path

REFERENCE = (Path(__file__).resolve().parents[3] / "conformance" / "reference" / "mlp.py").read_text()


def notebook_json(*cells: str, language: str = "python", kernel: str = "python3") -> str:
    return json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Homework 3"}]
        + [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": c}
           for c in cells],
        "metadata": {"kernelspec": {"name": kernel, "language": language, "display_name": kernel},
                     "language_info": {"name": language}},
        "nbformat": 4, "nbformat_minor": 5})


def _write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def without_functions(code: str, *names: str) -> str:
    """``code`` with the top-level functions ``names`` removed."""
    tree = ast.parse(code)
    lines = code.splitlines()
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            drop |= set(range(start - 1, node.end_lineno or node.lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop) + "\n"


def function_source(code: str, name: str) -> str:
    tree = ast.parse(code)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(code, node) or ""


# -- honest notebooks -------------------------------------------------------------------------


def honest_notebook(folder: Path, name: str = "honest.ipynb") -> Path:
    return _write(folder, name, notebook_json("%matplotlib inline\nimport numpy as np", REFERENCE,
                                              "params = init_params([784, 64, 10])\ntrain()\nprint('done')"))


def factory_notebook(folder: Path, name: str = "factory.ipynb") -> Path:
    """softmax from a factory the notebook defines, relu = np.vectorize(...), and the training
    in a %%time cell: correct code in a style the old intake charged as forward_crash."""
    softmax = function_source(REFERENCE, "softmax").replace("def softmax(", "def _softmax(")
    factory = ("def make_softmax(stable=True):\n" + "\n".join("    " + line for line in softmax.splitlines())
               + "\n    return _softmax\n")
    return _write(folder, name, notebook_json(
        "import numpy as np", factory, "softmax = make_softmax(stable=True)",
        "relu = np.vectorize(lambda z: max(z, 0.0), otypes=[float])",
        without_functions(REFERENCE, "relu", "softmax"),
        "%%time\nparams = init_params([784, 64, 10])\nfor epoch in range(10**9):\n    pass"))


def time_cell_notebook(folder: Path, name: str = "timecell.ipynb") -> Path:
    """backward (everything) in a %%time cell: its Python body defines what the suite judges."""
    return _write(folder, name, notebook_json("import numpy as np", "%%time\n" + REFERENCE, "train()"))


def capture_cell_notebook(folder: Path, name: str = "capture.ipynb") -> Path:
    """%%capture and %time keep their Python; %%timeit, %%bash and %%writefile do not define."""
    return _write(folder, name, notebook_json(
        "%%capture log\n" + REFERENCE, "%time SCALE = 1.0", "%%timeit\nTIMED = 1",
        "%%bash\necho hi", "%%writefile extra.py\nx = 1"))


# -- hostile notebooks ------------------------------------------------------------------------


def deep_expression(folder: Path, terms: int = 100_000, name: str = "deep.ipynb") -> Path:
    """Python's parser recurses per operator: RecursionError in whoever parses it."""
    return _write(folder, name, notebook_json(REFERENCE, "+".join(["1"] * terms)))


def big_list_literal(folder: Path, megabytes: int = 8, name: str = "biglist.ipynb") -> Path:
    """An 8 MB list literal: an AST of ~3 million nodes (about 4 GB when parsed unbounded)."""
    return _write(folder, name, notebook_json(REFERENCE, "DATA = [" + "1, " * (megabytes * 1024 * 1024 // 3) + "]"))


def deep_json(folder: Path, depth: int = 200_000, name: str = "deepjson.ipynb") -> Path:
    """JSON nested deeper than any recursive decoder goes."""
    return _write(folder, name, '{"cells": [], "metadata": {"x": ' + "[" * depth + "]" * depth + '}, "nbformat": 4}')


def long_integer_code(folder: Path, name: str = "longint.ipynb") -> Path:
    return _write(folder, name, notebook_json(REFERENCE, "BIG = " + "9" * 5000))


def long_integer_json(folder: Path, name: str = "longintjson.ipynb") -> Path:
    text = notebook_json(REFERENCE)
    return _write(folder, name, text[:-1] + ', "x": ' + "1" * 5000 + "}")


def bom_notebook(folder: Path, name: str = "bom.ipynb") -> Path:
    return _write(folder, name, b"\xef\xbb\xbf" + notebook_json(REFERENCE).encode())


def r_kernel_notebook(folder: Path, name: str = "rkernel.ipynb") -> Path:
    return _write(folder, name, notebook_json("x <- c(1, 2, 3)\nprint(mean(x))", language="R", kernel="ir"))


def empty_notebook(folder: Path, name: str = "empty.ipynb") -> Path:
    return _write(folder, name, notebook_json("", "   \n"))


def ipython_binding(folder: Path, name: str = "ipybinding.ipynb") -> Path:
    """forward reads a name that only an IPython shell escape defines."""
    wrapper = ("def forward(X, params):\n    if not FILES:\n        raise RuntimeError('no data files')\n"
               "    return _forward(X, params)\n")
    return _write(folder, name, notebook_json(REFERENCE.replace("def forward(", "def _forward("),
                                              "FILES = !ls", wrapper))


def failing_factory(folder: Path, name: str = "failingfactory.ipynb") -> Path:
    """A factory that raises when the notebook runs: the function it should have made fails
    when called, naming the cell; the rest of the notebook is still judged."""
    return _write(folder, name, notebook_json(
        without_functions(REFERENCE, "softmax"),
        "def make_softmax():\n    raise ValueError('broken factory')", "softmax = make_softmax()"))


# -- archives ---------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buf.getvalue()


def ratio_bomb(folder: Path, name: str = "ratio.zip") -> Path:
    """Under every size limit, but one member expands 1000-fold (a notebook padded with zeros)."""
    return _write(folder, name, zip_bytes({"mlp.py": REFERENCE, "hw.ipynb": notebook_json(REFERENCE) + " " * (20 << 20)}))


def nested_zip_bomb(folder: Path, name: str = "nested.zip") -> Path:
    """Archives inside archives inside the archive (42.zip's shape, small here)."""
    inner = zip_bytes({"layer2.zip": zip_bytes({"layer3.zip": zip_bytes({"x.txt": "x" * 1000})})})
    return _write(folder, name, zip_bytes({"mlp.py": REFERENCE, "data.zip": inner}))


def nested_ratio_bomb(folder: Path, name: str = "nestedratio.zip") -> Path:
    return _write(folder, name, zip_bytes({"mlp.py": REFERENCE, "data.zip": zip_bytes({"zeros.bin": bytes(30 << 20)})}))


def gzip_bomb(folder: Path, name: str = "gzbomb.zip") -> Path:
    return _write(folder, name, zip_bytes({"mlp.py": REFERENCE, "data.gz": gzip.compress(bytes(64 << 20))}))


def overlap_bomb(folder: Path, name: str = "overlap.zip") -> Path:
    """Many central-directory entries that share one member's compressed data (the
    non-recursive bomb): each entry looks small, together they expand without bound."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mlp.py", REFERENCE)
        first = archive.filelist[0]
        for i in range(20):
            clone = zipfile.ZipInfo(f"copy{i}.py", first.date_time)
            for attr in ("compress_type", "CRC", "compress_size", "file_size", "header_offset", "flag_bits",
                         "external_attr", "create_system", "extract_version", "create_version"):
                setattr(clone, attr, getattr(first, attr))
            archive.filelist.append(clone)
    return _write(folder, name, buf.getvalue())


def honest_zip_with_data_zip(folder: Path, name: str = "honestzip.zip") -> Path:
    """A correct module, a notebook and a small data archive the student packed alongside."""
    return _write(folder, name, zip_bytes({"hw/mlp.py": REFERENCE, "hw/notes/plots.ipynb": notebook_json("import numpy as np"),
                                           "hw/data.zip": zip_bytes({"x.csv": "1,2\n" * 100}),
                                           "hw/data.csv.gz": gzip.compress(b"1,2\n" * 1000)}))
