"""CUDA kernels of ``ops/norm.py``: batch norm on (N, C, L)."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import device
from .device import MAX_THREADS_PER_BLOCK
from .blocks import _block_sum


# --------------------------------------------------------------------------
# Batch norm on (N, C, L): block c owns channel c, its threads share the m = N*L values.
# --------------------------------------------------------------------------
@cuda.jit
def _batch_norm_train_kernel(x, weight, bias, eps, out, xhat, inv_std, mean, var):
    """mean = (1/m) sum x, var = (1/m) sum (x - mean)^2 (biased), xhat = (x - mean) / sqrt(var + eps),
    out = weight * xhat + bias; statistics in two passes, as NumPy does, for accuracy."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, L = x.shape
    c = cuda.blockIdx.x
    m = N * L
    partial = 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial += x[k // L, c, k % L]
    mu = _block_sum(partial, scratch) / m
    partial = 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial += (x[k // L, c, k % L] - mu) ** 2
    variance = _block_sum(partial, scratch) / m
    inverse = 1 / math.sqrt(variance + eps)
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        normalized = (x[k // L, c, k % L] - mu) * inverse
        xhat[k // L, c, k % L] = normalized
        out[k // L, c, k % L] = normalized * weight[c] + bias[c]
    if cuda.threadIdx.x == 0:
        mean[c], var[c], inv_std[c] = mu, variance, inverse


@cuda.jit
def _batch_norm_eval_kernel(x, running_mean, running_var, weight, bias, eps, out, xhat, inv_std):
    """xhat = (x - running_mean) / sqrt(running_var + eps), out = weight * xhat + bias, element-wise."""
    N, C, L = x.shape
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, l = flat // (C * L), flat // L % C, flat % L
        inverse = 1 / math.sqrt(running_var[c] + eps)
        normalized = (x[n, c, l] - running_mean[c]) * inverse
        xhat[n, c, l] = normalized
        out[n, c, l] = normalized * weight[c] + bias[c]
        if n == 0 and l == 0:  # exactly one thread per channel reports its inv_std
            inv_std[c] = inverse


@cuda.jit
def _batch_norm_backward_kernel(grad, xhat, inv_std, weight, training, dx, dweight, dbias):
    """dbias = sum g, dweight = sum g xhat; dx = weight * inv_std * (g - dbias/m - xhat * dweight/m) in
    train mode (the batch mean and variance depend on every x of the channel), weight * inv_std * g in eval."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, L = grad.shape
    c = cuda.blockIdx.x
    m = N * L
    partial_g, partial_gx = 0.0, 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial_g += grad[k // L, c, k % L]
        partial_gx += grad[k // L, c, k % L] * xhat[k // L, c, k % L]
    sum_g = _block_sum(partial_g, scratch)
    sum_gx = _block_sum(partial_gx, scratch)
    scale = weight[c] * inv_std[c]
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        g = grad[k // L, c, k % L]
        if training:
            g -= sum_g / m + xhat[k // L, c, k % L] * sum_gx / m
        dx[k // L, c, k % L] = scale * g
    if cuda.threadIdx.x == 0:
        dbias[c], dweight[c] = sum_g, sum_gx


def batch_norm_train_forward(x, weight, bias, eps):
    N, C, L = x.shape
    d_x, d_weight, d_bias = device.upload(x, weight, bias)
    out, xhat = device.empty(x.shape, x.dtype), device.empty(x.shape, x.dtype)
    inv_std, mean, var = (device.empty(C, x.dtype) for _ in range(3))
    device.launch(_batch_norm_train_kernel, blocks=C, reduce_over=N * L)(
        d_x, d_weight, d_bias, eps, out, xhat, inv_std, mean, var)
    return tuple(a.copy_to_host() for a in (out, xhat, inv_std, mean, var))


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    C = x.shape[1]
    devices = device.upload(x, *(a.astype(x.dtype, copy=False) for a in (running_mean, running_var, weight, bias)))
    out, xhat, inv_std = device.empty(x.shape, x.dtype), device.empty(x.shape, x.dtype), device.empty(C, x.dtype)
    device.launch(_batch_norm_eval_kernel, items=x.size)(*devices, eps, out, xhat, inv_std)
    return out.copy_to_host(), xhat.copy_to_host(), inv_std.copy_to_host()


def batch_norm_backward(grad, xhat, inv_std, weight, training):
    N, C, L = grad.shape
    devices = device.upload(grad, xhat, inv_std, weight)
    dx, dweight, dbias = device.empty(grad.shape, grad.dtype), device.empty(C, grad.dtype), device.empty(C, grad.dtype)
    device.launch(_batch_norm_backward_kernel, blocks=C, reduce_over=N * L)(*devices, training, dx, dweight, dbias)
    return dx.copy_to_host(), dweight.copy_to_host(), dbias.copy_to_host()
