"""CUDA kernels of ``ops/attention.py`` and the fused CBAM pooling: each reads the big tensors once."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import device
from .device import MAX_THREADS_PER_BLOCK, _check_not_empty
from .blocks import _beats, _block_first_max, _block_sum, _sigmoid
from .pooling import _pixels


# --------------------------------------------------------------------------
# Fused attention kernels: each reads the big (N, C, H, W) tensors once.
# --------------------------------------------------------------------------


@cuda.jit
def _channel_gate_and_pool_kernel(x, gate, y, pooled, index):
    """y[n,c,p] = gate[n,c] x[n,c,p], and in the same pass over c: pooled[n,0,p] = mean_c y,
    pooled[n,1,p] = max_c y, index[n,p] = its first channel. Block b owns pixel (n, p)."""
    sums = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial, best, best_c = 0.0, -math.inf, C
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        gated = gate[n, c] * x[n, c, p]
        y[n, c, p] = gated
        partial += gated
        if _beats(gated, c, best, best_c):
            best, best_c = gated, c
    total = _block_sum(partial, sums)
    best, best_c = _block_first_max(best, best_c, values, indices)
    if cuda.threadIdx.x == 0:
        pooled[n, 0, p] = total / C
        pooled[n, 1, p] = best
        index[n, p] = best_c


@cuda.jit
def _channel_gate_and_pool_backward_kernel(grad_y, grad_pooled, x, gate, index, dx, dgate):
    """dy = g_y + g_mean / C + (g_max at the first maximal channel); dx = gate * dy and
    dgate[n,c] = sum_p dy x. Block b owns (n, c) = (b // C, b % C) and tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        dy = grad_y[n, c, p] + grad_pooled[n, 0, p] / C
        if c == index[n, p]:
            dy += grad_pooled[n, 1, p]
        dx[n, c, p] = gate[n, c] * dy
        partial += dy * x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dgate[n, c] = total


def channel_gate_and_pool_forward(x, gate):
    N, C, H, W = x.shape
    _check_not_empty("channel_gate_and_pool_forward", "x", x.shape, (1,), "C")
    d_x, d_gate = device.upload(_pixels(x), gate)
    y, pooled = device.empty((N, C, H * W), x.dtype), device.empty((N, 2, H * W), x.dtype)
    index = device.empty((N, H * W), np.int64)
    device.launch(_channel_gate_and_pool_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_gate, y, pooled, index)
    return (y.copy_to_host().reshape(x.shape), pooled.copy_to_host().reshape(N, 2, H, W),
            index.copy_to_host().reshape(N, 1, H, W))


def channel_gate_and_pool_backward(grad_y, grad_pooled, x, gate, index):
    N, C, H, W = x.shape
    devices = device.upload(_pixels(grad_y), _pixels(grad_pooled), _pixels(x), gate, index.reshape(N, H * W))
    dx, dgate = device.empty((N, C, H * W), x.dtype), device.empty((N, C), x.dtype)
    device.launch(_channel_gate_and_pool_backward_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dgate)
    return dx.copy_to_host().reshape(x.shape), dgate.copy_to_host()


@cuda.jit(device=True)
def _gate_logit_grad(grad, x, gate):
    """d/dz of g * x * sigmoid(z), the gradient reaching both logits Mc and Ms."""
    return grad * x * gate * (1 - gate)


@cuda.jit
def _residual_gate_kernel(x, channel_logit, spatial_logit, out):
    """out = x + x * sigmoid(Mc[n,c] + Ms[n,p]): BAM's (1 + M(F)) ⊗ F, element-wise."""
    N, C, P = x.shape
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, p = flat // (C * P), flat // P % C, flat % P
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        out[n, c, p] = x[n, c, p] + x[n, c, p] * gate


@cuda.jit
def _residual_gate_channel_grad_kernel(grad, x, channel_logit, spatial_logit, dx, dchannel):
    """dx = g (1 + gate) and dMc[n,c] = sum_p dz: block (n, c) tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        dx[n, c, p] = grad[n, c, p] * (1 + gate)
        partial += _gate_logit_grad(grad[n, c, p], x[n, c, p], gate)
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dchannel[n, c] = total


@cuda.jit
def _residual_gate_spatial_grad_kernel(grad, x, channel_logit, spatial_logit, dspatial):
    """dMs[n,p] = sum_c dz: block (n, p) tree-sums over the channels (dz recomputed, not stored)."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial = 0.0
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        partial += _gate_logit_grad(grad[n, c, p], x[n, c, p], gate)
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dspatial[n, p] = total


def residual_gate_forward(x, channel_logit, spatial_logit):
    N, C, H, W = x.shape
    devices = device.upload(_pixels(x), channel_logit, spatial_logit.reshape(N, H * W))
    out = device.empty((N, C, H * W), x.dtype)
    device.launch(_residual_gate_kernel, items=x.size)(*devices, out)
    return out.copy_to_host().reshape(x.shape)


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    N, C, H, W = x.shape
    devices = device.upload(_pixels(grad), _pixels(x), channel_logit, spatial_logit.reshape(N, H * W))
    dx, dchannel, dspatial = (device.empty((N, C, H * W), x.dtype), device.empty((N, C), x.dtype),
                              device.empty((N, H * W), x.dtype))
    device.launch(_residual_gate_channel_grad_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dchannel)
    device.launch(_residual_gate_spatial_grad_kernel, blocks=N * H * W, reduce_over=C)(*devices, dspatial)
    return dx.copy_to_host().reshape(x.shape), dchannel.copy_to_host(), dspatial.copy_to_host().reshape(N, 1, H, W)
