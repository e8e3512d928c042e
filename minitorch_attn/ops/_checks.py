"""Argument checks shared by the ops: fail before any work, naming the argument."""
from __future__ import annotations

import numpy as np

from ..tensor import FLOAT_DTYPES, Tensor


def as_tensor(value, name):
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        # Checked here rather than left to Tensor() so that the message names the argument.
        if value.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {value.dtype}")
        return Tensor(value)
    raise TypeError(f"{name}: expected a Tensor or ndarray, got {type(value).__name__}")


def check_ndim(x, ndim, name, layout):
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d tensor {layout}, got shape {tuple(x.shape)}")


def check_same_dtype(tensors, names):
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        pairs = ", ".join(f"{n}={t.dtype}" for n, t in zip(names, tensors))
        raise TypeError(f"dtypes must match, got {pairs}")


def pair(value, name, minimum):
    """An int or a 2-tuple of ints, each >= minimum, as a tuple."""
    values = (value, value) if isinstance(value, (int, np.integer)) else value
    if not isinstance(values, (tuple, list)) or len(values) != 2 or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return tuple(int(v) for v in values)


def nchw(x, name="x"):
    """``x`` as a Tensor, checked to be 4-d."""
    x = as_tensor(x, name)
    check_ndim(x, 4, name, "(N, C, H, W)")
    if 0 in x.shape:  # a max over nothing is undefined
        raise ValueError(f"{name}: expected every dimension >= 1, got shape {tuple(x.shape)}")
    return x
