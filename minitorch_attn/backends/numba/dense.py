"""Kernels of ``ops/dense.py``: the linear layer, ReLU and sigmoid."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import _as_float, _bias_argument, _check_shape
from .lanes import _add_combination, _sigmoid


# --------------------------------------------------------------------------
# Dense layers and activations
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _linear_loop(x, weight_t, bias, has_bias, out):
    """out[n] = (b +) Σ_i x[n, i] Wᵀ[i]: one output row per sample, built from whole rows of Wᵀ (in, out).

    (One dot product per output spent its time on per-task overhead: CBAM's
    16 -> 256 layer has 16-element rows, and took 30 µs for 65 k multiply-adds.)
    """
    N, O = out.shape
    zero = out.dtype.type(0)
    for n in prange(N):
        row = out[n]
        for o in range(O):
            row[o] = bias[o] if has_bias else zero
        _add_combination(row, x[n], weight_t)


@njit(parallel=True, cache=True)
def _linear_backward_loop(grad, x, weight, dx, dweight, dbias):
    """dx = g W, dW = gᵀ x, db = Σ_n g (dbias is filled but only returned when there is a bias)."""
    N, O = grad.shape
    I = x.shape[1]
    zero = x.dtype.type(0)
    # dx[n] = Σ_o g[n, o] W[o]: sample n owns row dx[n] and adds whole rows of W.
    for n in prange(N):
        for i in range(I):
            dx[n, i] = zero
        for o in range(O):
            for i in range(I):
                dx[n, i] += grad[n, o] * weight[o, i]
    # dW[o] = Σ_n g[n, o] x[n]: output o owns row dW[o] and adds the samples in
    # order 0..N-1, so the batch reduction never depends on the thread count.
    for o in prange(O):
        dbias[o] = zero
        for i in range(I):
            dweight[o, i] = zero
        for n in range(N):
            dbias[o] += grad[n, o]
            for i in range(I):
                dweight[o, i] += grad[n, o] * x[n, i]


@njit(parallel=True, cache=True)
def _relu_loop(x, out):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        out[i] = zero if x[i] < zero else x[i]


@njit(parallel=True, cache=True)
def _relu_backward_loop(grad, out, dx):
    """The gradient is stopped where out <= 0 (subgradient 0 at 0) and passes elsewhere, NaN included (PyTorch's rule)."""
    zero = dx.dtype.type(0)
    for i in prange(dx.shape[0]):
        dx[i] = zero if out[i] <= zero else grad[i]


@njit(parallel=True, cache=True)
def _sigmoid_loop(x, out):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        out[i] = _sigmoid(x[i], one)


@njit(parallel=True, cache=True)
def _sigmoid_backward_loop(grad, out, dx):
    """dσ/dx = σ (1 - σ), written with the saved output."""
    one = dx.dtype.type(1)
    for i in prange(dx.shape[0]):
        dx[i] = grad[i] * out[i] * (one - out[i])


def _elementwise(kernel, loop, first_name, first, second_name=None, second=None):
    """Run a 1-D loop over one or two same-shaped arrays, returning a new array of their shape."""
    first = _as_float(kernel, first_name, first)
    arguments = [first.reshape(-1)]
    if second_name is not None:
        second = _as_float(kernel, second_name, second, dtype=first.dtype)
        _check_shape(kernel, second_name, second, first.shape)
        arguments.append(second.reshape(-1))
    result = np.empty(first.size, first.dtype)
    loop(*arguments, result)
    return result.reshape(first.shape)


def linear_forward(x, weight, bias):
    x = _as_float("linear_forward", "x", x, 2)
    weight = _as_float("linear_forward", "weight", weight, 2, x.dtype)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"linear_forward: weight must have shape (out, {x.shape[1]}), got {weight.shape}")
    bias_array, has_bias = _bias_argument("linear_forward", bias, weight.shape[0], x.dtype)
    out = np.empty((x.shape[0], weight.shape[0]), x.dtype)
    _linear_loop(x, np.ascontiguousarray(weight.T), bias_array, has_bias, out)
    return out


def linear_backward(grad, x, weight, has_bias):
    x = _as_float("linear_backward", "x", x, 2)
    weight = _as_float("linear_backward", "weight", weight, 2, x.dtype)
    grad = _as_float("linear_backward", "grad", grad, 2, x.dtype)
    _check_shape("linear_backward", "weight", weight, (weight.shape[0], x.shape[1]))
    _check_shape("linear_backward", "grad", grad, (x.shape[0], weight.shape[0]))
    dx, dweight = np.empty_like(x), np.empty_like(weight)
    dbias = np.empty(weight.shape[0], x.dtype)
    _linear_backward_loop(grad, x, weight, dx, dweight, dbias)
    return dx, dweight, (dbias if has_bias else None)


def relu_forward(x):
    return _elementwise("relu_forward", _relu_loop, "x", x)


def relu_backward(grad, out):
    return _elementwise("relu_backward", _relu_backward_loop, "grad", grad, "out", out)


def sigmoid_forward(x):
    return _elementwise("sigmoid_forward", _sigmoid_loop, "x", x)


def sigmoid_backward(grad, out):
    return _elementwise("sigmoid_backward", _sigmoid_backward_loop, "grad", grad, "out", out)
