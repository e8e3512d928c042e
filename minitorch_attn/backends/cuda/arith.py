"""CUDA kernels of ``ops/arith.py``: broadcasting product and sum, and the sum over axes that undoes them."""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import device
from .device import MAX_THREADS_PER_BLOCK
from .blocks import _block_sum


# --------------------------------------------------------------------------
# Broadcasting arithmetic. An array broadcast to shape S is read through
# element strides that are 0 along its stretched axes.
# --------------------------------------------------------------------------
@cuda.jit(device=True)
def _offset(flat, shape, strides):
    """Position in memory of element ``flat`` (C order over ``shape``) of an array with ``strides``."""
    position = 0
    for axis in range(len(shape) - 1, -1, -1):
        position += (flat % shape[axis]) * strides[axis]
        flat //= shape[axis]
    return position


@cuda.jit
def _broadcast_kernel(a, a_strides, b, b_strides, shape, multiply, out):
    """out = a * b (``multiply``) or a + b, both read through broadcast strides."""
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        left, right = a[_offset(k, shape, a_strides)], b[_offset(k, shape, b_strides)]
        out[k] = left * right if multiply else left + right


@cuda.jit
def _sum_kernel(src, kept_shape, kept_strides, summed_shape, summed_strides, divisor, out):
    """out[r] = (sum over the summed axes of src at kept position r) / divisor: block r tree-sums."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    r = cuda.blockIdx.x
    count = 1
    for n in summed_shape:
        count *= n
    base = _offset(r, kept_shape, kept_strides)
    partial = 0.0
    for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        partial += src[base + _offset(k, summed_shape, summed_strides)]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[r] = total / divisor


def _contiguous_strides(shape):
    """Element strides of a C-contiguous array (the last axis varies fastest)."""
    strides = np.ones(len(shape), np.int64)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    return strides


def _sum_over_axes(d_src, shape, axes, divisor=1):
    """Sum a C-contiguous device array of ``shape`` over ``axes``; a flat device array of the kept axes."""
    strides = _contiguous_strides(shape)
    kept = [a for a in range(len(shape)) if a not in axes]
    kept_shape = np.array([shape[a] for a in kept] or [1], np.int64)
    kept_strides = np.array([strides[a] for a in kept] or [0], np.int64)
    summed_shape = np.array([shape[a] for a in axes] or [1], np.int64)
    summed_strides = np.array([strides[a] for a in axes] or [0], np.int64)
    out = device.empty(int(kept_shape.prod()), d_src.dtype)
    device.launch(_sum_kernel, blocks=out.size, reduce_over=int(summed_shape.prod()))(
        d_src.reshape(d_src.size),
        *device.upload(kept_shape, kept_strides, summed_shape, summed_strides), divisor, out)
    return out


def _broadcast(a, b, multiply):
    dtype = np.result_type(a, b)
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    shape = np.broadcast_shapes(a.shape, b.shape) or (1,)

    def strides(array):
        padded = (1,) * (len(shape) - array.ndim) + array.shape
        return np.where(np.array(padded) == 1, 0, _contiguous_strides(padded))

    out = device.empty(int(np.prod(shape)), dtype)
    d_a, d_b, d_a_strides, d_b_strides, d_shape = device.upload(
        a.reshape(-1), b.reshape(-1), strides(a), strides(b), np.array(shape, np.int64))
    device.launch(_broadcast_kernel, items=out.size)(d_a, d_a_strides, d_b, d_b_strides, d_shape, multiply, out)
    return out.copy_to_host().reshape(np.broadcast_shapes(a.shape, b.shape))


def mul_forward(a, b):
    return _broadcast(a, b, True)


def add_forward(a, b):
    return _broadcast(a, b, False)


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the leading extra axes and the axes stretched from 1."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape)
                                       if n == 1 and grad.shape[extra + i] != 1)
    (d_grad,) = device.upload(grad)
    return _sum_over_axes(d_grad, grad.shape, axes).copy_to_host().reshape(shape)


def mul_backward(grad, a, b, needs_a=True, needs_b=True):
    """Gradients of ``a * b`` (the NumPy reference's composition of the two kernels above, no fused device code)."""
    da = sum_to_shape(mul_forward(grad, b), a.shape) if needs_a else None
    db = sum_to_shape(mul_forward(grad, a), b.shape) if needs_b else None
    return da, db
