"""Plain data between the judge and the student's process, without pickle.

A message is a tree of ``None``, bools, ints, floats, strings, tuples, lists,
dicts with string keys and numeric NumPy arrays (or scalars). It travels as one
``.npz`` archive (the arrays, plus the tree as JSON in ``__tree__``), read back
with ``allow_pickle=False``: nothing the student's process sends can run code
in the judge. A value of any other type arrives as :class:`Foreign`, which only
knows its type's name (enough for "returned a Tensor, expected an array").

On a pipe, each message is its length (8 bytes, big-endian) and the archive.
Standard library and NumPy only: the student's process loads this file before
it tries to import the package, so an import that fails can still be reported.
"""
from __future__ import annotations

import io
import json
import os
import select
import time

import numpy as np

_TREE = "__tree__"
_HEADER = 8


class Foreign:
    """A value whose type cannot travel: its type name stands in for it."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return f"<a {self.type_name}>"


def type_name(value) -> str:
    """The type name a message about ``value`` should use (a :class:`Foreign` keeps its original one)."""
    return value.type_name if isinstance(value, Foreign) else type(value).__name__


def _flatten(value, arrays):
    if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
        return value
    if type(value) is np.ndarray or isinstance(value, np.generic):  # an ndarray subclass is foreign
        if np.asarray(value).dtype.kind not in "biufc":
            return {"foreign": f"{type(value).__name__} of {np.asarray(value).dtype}"}
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(value)
        return {"scalar" if isinstance(value, np.generic) else "array": key}
    if isinstance(value, Foreign):
        return {"foreign": value.type_name}
    if type(value) in (tuple, list):
        return {type(value).__name__: [_flatten(v, arrays) for v in value]}
    if type(value) is dict and all(isinstance(k, str) for k in value):
        return {"dict": {k: _flatten(v, arrays) for k, v in value.items()}}
    return {"foreign": type(value).__name__}


def _rebuild(tree, archive):
    if not isinstance(tree, dict):
        return tree
    (kind, content), = tree.items()
    if kind == "array":
        return archive[content]
    if kind == "scalar":
        return archive[content][()]
    if kind == "tuple":
        return tuple(_rebuild(v, archive) for v in content)
    if kind == "list":
        return [_rebuild(v, archive) for v in content]
    if kind == "dict":
        return {k: _rebuild(v, archive) for k, v in content.items()}
    if kind == "foreign":
        return Foreign(str(content))
    raise ValueError(f"wire: unknown entry {kind!r}")


def encode(value) -> bytes:
    arrays = {}
    tree = _flatten(value, arrays)
    arrays[_TREE] = np.frombuffer(json.dumps(tree).encode("utf-8"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode(data: bytes):
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    tree = json.loads(arrays.pop(_TREE).tobytes().decode("utf-8"))
    return _rebuild(tree, arrays)


def send(fd: int, value) -> None:
    data = encode(value)
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int, count: int, deadline: float | None) -> bytes:
    chunks, left = [], count
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None):
    """The next message on ``fd``; TimeoutError past ``deadline`` (``time.monotonic()``), EOFError at the end."""
    size = int.from_bytes(_read(fd, _HEADER, deadline), "big")
    return decode(_read(fd, size, deadline))
