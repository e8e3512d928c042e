"""Numba's on-disk cache of this package, dropped whenever any of its sources changes.

Numba keys a kernel's cached machine code to the file that defines the kernel and
nothing else. A kernel in ``norm.py`` that calls ``lanes._lane_sum`` keeps running
the old ``_lane_sum`` after ``lanes.py`` changes (seen here: a batch-norm mean in
the old summation order until the cache was cleared). One hash over every source
of the package, kept next to the cache, catches any such change; the kernels then
compile afresh on their first call.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

STAMP = "numba-sources.sha256"


def drop_stale_cache(package=Path(__file__).parent):
    """Delete ``package/__pycache__``'s Numba cache files unless its sources hash to the recorded stamp."""
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    cache = package / "__pycache__"
    stamp = cache / STAMP
    try:
        if stamp.is_file() and stamp.read_text() == digest.hexdigest():
            return False
        for stale in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            stale.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: nothing to drop here, and nothing to record
        return False
    return True
