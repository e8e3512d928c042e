"""CUDA kernels of ``ops/attention.py`` and the fused CBAM pooling: each reads the big tensors once."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..add_to import added, check_add_to
from . import device
from .device import MAX_THREADS_PER_BLOCK, _check_not_empty
from .blocks import _beats, _block_first_max, _block_sum, _sigmoid
from .pooling import _pixels


# --------------------------------------------------------------------------
# Fused attention kernels: each reads the big (N, C, H, W) tensors once.
# --------------------------------------------------------------------------


@cuda.jit
def _gated_channel_pool_kernel(x, gate, pooled, index):
    """For y[n,c,p] = gate[n,c] x[n,c,p] (never stored): pooled[n,0,p] = mean_c y,
    pooled[n,1,p] = max_c y, index[n,p] = its first channel. Block b owns pixel (n, p)."""
    sums = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial, best, best_c = 0.0, -math.inf, C
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        gated = gate[n, c] * x[n, c, p]
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
def _gated_channel_pool_backward_kernel(grad_pooled, x, gate, index, dx, dgate):
    """dy = g_mean / C + (g_max at the first maximal channel); dx = gate * dy and
    dgate[n,c] = sum_p dy x. Block b owns (n, c) = (b // C, b % C) and tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        dy = grad_pooled[n, 0, p] / C
        if c == index[n, p]:
            dy += grad_pooled[n, 1, p]
        dx[n, c, p] = gate[n, c] * dy
        partial += dy * x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dgate[n, c] = total


def gated_channel_pool_forward(x, gate):
    N, C, H, W = x.shape
    _check_not_empty("gated_channel_pool_forward", "x", x.shape, (1,), "C")
    d_x, d_gate = device.upload(_pixels(x), gate)
    pooled, index = device.empty((N, 2, H * W), x.dtype), device.empty((N, H * W), np.int64)
    device.launch(_gated_channel_pool_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_gate, pooled, index)
    return pooled.copy_to_host().reshape(N, 2, H, W), index.copy_to_host().reshape(N, 1, H, W)


def gated_channel_pool_backward(grad_pooled, x, gate, index, add_to=None):
    N, C, H, W = x.shape
    check_add_to("gated_channel_pool_backward", add_to, x.shape, x.dtype)
    devices = device.upload(_pixels(grad_pooled), _pixels(x), gate, index.reshape(N, H * W))
    dx, dgate = device.empty((N, C, H * W), x.dtype), device.empty((N, C), x.dtype)
    device.launch(_gated_channel_pool_backward_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dgate)
    # dx comes back to the host anyway, so the sum is NumPy's (the same IEEE additions).
    return added(add_to, dx.copy_to_host().reshape(x.shape)), dgate.copy_to_host()


@cuda.jit
def _channel_spatial_gate_kernel(x, channel_gate, spatial_gate, out):
    """out = (x * Mc[n,c]) * Ms[n,p]: CBAM's F'' = Ms ⊗ (Mc ⊗ F), element-wise."""
    N, C, P = x.shape
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, p = flat // (C * P), flat // P % C, flat % P
        out[n, c, p] = (x[n, c, p] * channel_gate[n, c]) * spatial_gate[n, p]


@cuda.jit
def _channel_spatial_gate_channel_grad_kernel(grad, x, channel_gate, spatial_gate, dx, dchannel):
    """dF' = g Ms; dx = dF' Mc and dMc[n,c] = sum_p dF' x: block (n, c) tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        dgated = grad[n, c, p] * spatial_gate[n, p]
        dx[n, c, p] = dgated * channel_gate[n, c]
        partial += dgated * x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dchannel[n, c] = total


@cuda.jit
def _channel_spatial_gate_spatial_grad_kernel(grad, x, channel_gate, spatial_gate, dspatial):
    """dMs[n,p] = sum_c g (x Mc): block (n, p) tree-sums over the channels (Ms itself is not read)."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial = 0.0
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        partial += grad[n, c, p] * (x[n, c, p] * channel_gate[n, c])
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dspatial[n, p] = total


def _gated_forward(kernel, x, per_channel, per_pixel):
    """An element-wise ``kernel(x, per_channel (N,C), per_pixel (N,H·W), out)`` over F: CBAM's and BAM's outputs."""
    N, C, H, W = x.shape
    devices = device.upload(_pixels(x), per_channel, per_pixel.reshape(N, H * W))
    out = device.empty((N, C, H * W), x.dtype)
    device.launch(kernel, items=x.size)(*devices, out)
    return out.copy_to_host().reshape(x.shape)


def _gated_backward(channel_kernel, spatial_kernel, grad, x, per_channel, per_pixel):
    """``(dx, d per_channel (N,C), d per_pixel (N,1,H,W))``: ``channel_kernel`` writes dx and the (N,C)
    gradient, one block per (n, c); ``spatial_kernel`` the per-pixel one, one block per (n, p)."""
    N, C, H, W = x.shape
    devices = device.upload(_pixels(grad), _pixels(x), per_channel, per_pixel.reshape(N, H * W))
    dx, dchannel, dspatial = (device.empty((N, C, H * W), x.dtype), device.empty((N, C), x.dtype),
                              device.empty((N, H * W), x.dtype))
    device.launch(channel_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dchannel)
    device.launch(spatial_kernel, blocks=N * H * W, reduce_over=C)(*devices, dspatial)
    return dx.copy_to_host().reshape(x.shape), dchannel.copy_to_host(), dspatial.copy_to_host().reshape(N, 1, H, W)


def channel_spatial_gate_forward(x, channel_gate, spatial_gate):
    return _gated_forward(_channel_spatial_gate_kernel, x, channel_gate, spatial_gate)


def channel_spatial_gate_backward(grad, x, channel_gate, spatial_gate):
    return _gated_backward(_channel_spatial_gate_channel_grad_kernel, _channel_spatial_gate_spatial_grad_kernel,
                           grad, x, channel_gate, spatial_gate)


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
    return _gated_forward(_residual_gate_kernel, x, channel_logit, spatial_logit)


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    return _gated_backward(_residual_gate_channel_grad_kernel, _residual_gate_spatial_grad_kernel,
                           grad, x, channel_logit, spatial_logit)
