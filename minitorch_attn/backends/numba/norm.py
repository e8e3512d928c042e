"""Kernels of ``ops/norm.py``: batch norm on (N, C, L)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import _as_float, _check_shape
from .lanes import _lane_centered_squares, _lane_sum, _lane_sum_and_dot


# --------------------------------------------------------------------------
# Batch norm on (N, C, L): one channel per task, so the statistics of a
# channel are summed by one thread in the order (n, l).
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _batch_norm_train_loop(x, weight, bias, eps, out, xhat, inv_std, mean, var):
    """mean, biased var over (n, l); x̂ = (x - mean)/sqrt(var + eps); out = x̂·w + b."""
    N, C, L = x.shape
    count = x.dtype.type(N * L)
    one = x.dtype.type(1)
    for c in prange(C):
        total = x.dtype.type(0)
        for n in range(N):
            total += _lane_sum(x[n, c])
        mu = total / count
        # Two passes (mean, then squared deviations) avoid the cancellation of E[x²] - E[x]².
        squares = x.dtype.type(0)
        for n in range(N):
            squares += _lane_centered_squares(x[n, c], mu)
        sigma2 = squares / count
        scale = one / np.sqrt(sigma2 + eps)
        mean[c], var[c], inv_std[c] = mu, sigma2, scale
        w, b = weight[c], bias[c]
        for n in range(N):
            row, xhat_row, out_row = x[n, c], xhat[n, c], out[n, c]
            for l in range(L):
                normalised = (row[l] - mu) * scale
                xhat_row[l] = normalised
                out_row[l] = normalised * w + b


@njit(parallel=True, cache=True)
def _batch_norm_eval_loop(x, running_mean, running_var, weight, bias, eps, out, xhat, inv_std):
    """x̂ = (x - running_mean)/sqrt(running_var + eps); out = x̂·w + b."""
    N, C, L = x.shape
    one = x.dtype.type(1)
    for c in prange(C):
        scale = one / np.sqrt(running_var[c] + eps)
        inv_std[c] = scale
        for n in range(N):
            for l in range(L):
                normalised = (x[n, c, l] - running_mean[c]) * scale
                xhat[n, c, l] = normalised
                out[n, c, l] = normalised * weight[c] + bias[c]


@njit(parallel=True, cache=True)
def _batch_norm_backward_loop(grad, xhat, inv_std, weight, training, dx, dweight, dbias):
    """db = Σ g, dw = Σ g·x̂; dx = (dx̂ - mean(dx̂) - x̂·mean(dx̂·x̂))·inv_std with dx̂ = g·w in training,
    dx = dx̂·inv_std with running statistics (BN is then an affine map)."""
    N, C, L = grad.shape
    count = grad.dtype.type(N * L)
    zero = grad.dtype.type(0)
    for c in prange(C):
        sum_g = sum_g_xhat = zero
        for n in range(N):
            row_sum, row_dot = _lane_sum_and_dot(grad[n, c], xhat[n, c])
            sum_g += row_sum
            sum_g_xhat += row_dot
        dbias[c], dweight[c] = sum_g, sum_g_xhat
        # Σ dx̂ = w·Σ g and Σ dx̂·x̂ = w·Σ g·x̂: the two statistics come with db and dw.
        mean_dxhat = weight[c] * sum_g / count
        mean_dxhat_xhat = weight[c] * sum_g_xhat / count
        w, scale = weight[c], inv_std[c]
        # The mode is tested once per channel, outside the loops, so that each loop vectorises.
        for n in range(N):
            g_row, xhat_row, dx_row = grad[n, c], xhat[n, c], dx[n, c]
            if training:
                for l in range(L):
                    dx_row[l] = (g_row[l] * w - mean_dxhat - xhat_row[l] * mean_dxhat_xhat) * scale
            else:
                for l in range(L):
                    dx_row[l] = g_row[l] * w * scale


def _batch_norm_inputs(kernel, x, x_name="x", **per_channel):
    x = _as_float(kernel, x_name, x, 3)
    arrays = [x]
    for name, value in per_channel.items():
        value = _as_float(kernel, name, value, 1, x.dtype)
        _check_shape(kernel, name, value, (x.shape[1],))
        arrays.append(value)
    return arrays


def batch_norm_train_forward(x, weight, bias, eps):
    """Returns ``(out, xhat, inv_std, mean, biased_var)`` with batch statistics."""
    x, weight, bias = _batch_norm_inputs("batch_norm_train_forward", x, weight=weight, bias=bias)
    out, xhat = np.empty_like(x), np.empty_like(x)
    inv_std, mean, var = (np.empty(x.shape[1], x.dtype) for _ in range(3))
    _batch_norm_train_loop(x, weight, bias, x.dtype.type(eps), out, xhat, inv_std, mean, var)
    return out, xhat, inv_std, mean, var


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    """Returns ``(out, xhat, inv_std)`` with the running statistics."""
    x, running_mean, running_var, weight, bias = _batch_norm_inputs(
        "batch_norm_eval_forward", x, running_mean=running_mean, running_var=running_var,
        weight=weight, bias=bias)
    out, xhat = np.empty_like(x), np.empty_like(x)
    inv_std = np.empty(x.shape[1], x.dtype)
    _batch_norm_eval_loop(x, running_mean, running_var, weight, bias, x.dtype.type(eps), out, xhat, inv_std)
    return out, xhat, inv_std


def batch_norm_backward(grad, xhat, inv_std, weight, training):
    grad, inv_std, weight = _batch_norm_inputs("batch_norm_backward", grad, "grad", inv_std=inv_std, weight=weight)
    xhat = _as_float("batch_norm_backward", "xhat", xhat, 3, grad.dtype)
    _check_shape("batch_norm_backward", "xhat", xhat, grad.shape)
    dx = np.empty_like(grad)
    dweight, dbias = np.empty(grad.shape[1], grad.dtype), np.empty(grad.shape[1], grad.dtype)
    _batch_norm_backward_loop(grad, xhat, inv_std, weight, bool(training), dx, dweight, dbias)
    return dx, dweight, dbias
