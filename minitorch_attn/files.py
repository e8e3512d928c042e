"""Files that are either whole or absent: what the data cache, training checkpoints and results rely on."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_atomic(path, write):
    """``write(file)`` into a temporary binary file next to ``path``, then rename it over ``path``.

    The rename is atomic on POSIX, so a reader (or a crash) sees the old file or the new one, never half of
    either; the temporary name is unique, so processes writing the same path at once do not collide.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
