"""Argument checks of the Numba kernels, raised before any work: the loops do not check bounds."""
from __future__ import annotations

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_float(kernel, name, array, ndim=None, dtype=None):
    """``array`` as a C-contiguous float32/float64 ndarray of ``dtype`` (default: its own)."""
    array = np.asarray(array)
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{kernel}: {name} must be float32 or float64, got {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{kernel}: {name} must be {ndim}-D, got shape {array.shape}")
    return np.asarray(array, dtype or array.dtype, order="C")  # (ascontiguousarray would make 0-d 1-d)


def _check_shape(kernel, name, array, expected):
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{kernel}: {name} must have shape {tuple(expected)}, got {tuple(array.shape)}")


def _as_index(kernel, name, index, expected_shape, limit):
    """An int64 index array of ``expected_shape`` with every value in [0, limit)."""
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"{kernel}: {name} must hold integers, got {index.dtype}")
    _check_shape(kernel, name, index, expected_shape)
    if index.size and (index.min() < 0 or index.max() >= limit):
        raise ValueError(f"{kernel}: {name} values must lie in [0, {limit}), "
                         f"got [{index.min()}, {index.max()}]")
    return np.ascontiguousarray(index, np.int64)


def _check_not_empty(kernel, name, shape, axes, axis_names):
    """A max (or log-sum-exp) over no elements has no value: raise as NumPy's reductions do."""
    if any(shape[axis] == 0 for axis in axes):
        raise ValueError(f"{kernel}: {name} must have at least one element along {axis_names} to take a max "
                         f"over, got {name} of shape {tuple(shape)}")


def _as_nchw_shape(kernel, shape):
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{kernel}: shape must be (N, C, H, W) with positive sizes, got {shape}")
    return shape


def _pair(kernel, name, value, minimum):
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise ValueError(f"{kernel}: {name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _bias_argument(kernel, bias, size, dtype):
    """``(array, flag)``: an absent bias becomes an unused array, so the loop compiles once, not per Optional."""
    if bias is None:
        return np.zeros(size, dtype), False
    bias = _as_float(kernel, "bias", bias, 1, dtype)
    _check_shape(kernel, "bias", bias, (size,))
    return bias, True
