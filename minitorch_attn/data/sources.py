"""The committed UCI optical digits (``data/uci-digits/digits.npz``), checked against their sha256 before use."""
from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DIGITS_PATH = DATA_DIR / "uci-digits" / "digits.npz"
# The same value is written in data/uci-digits/README.md; tests/test_data.py keeps the two in step.
DIGITS_SHA256 = "d2cfd55546a12a8c55284cedfc9e6386ff8fa7c5579a93303c5ff0fbab0c3bab"


def sha256_bytes(raw):
    return hashlib.sha256(raw).hexdigest()


@functools.lru_cache(maxsize=1)
def uci_digits():
    """(images uint8 (1797, 8, 8) in 0..16, labels int64 (1797,)), read-only arrays."""
    if not DIGITS_PATH.is_file():
        raise FileNotFoundError(f"data: the source digits {DIGITS_PATH} are missing (they are committed to the "
                                f"repository; see data/uci-digits/README.md)")
    raw = DIGITS_PATH.read_bytes()
    digest = sha256_bytes(raw)
    if digest != DIGITS_SHA256:
        raise ValueError(f"data: {DIGITS_PATH} has sha256 {digest}, expected {DIGITS_SHA256}; restore it with "
                         f"`git checkout -- data/uci-digits/digits.npz`")
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels
