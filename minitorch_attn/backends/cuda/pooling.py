"""CUDA kernels of ``ops/pooling.py``: global pooling over H×W and pooling over channels."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ...exercise import exercise
from ..add_to import added, check_add_to
from . import device
from .device import MAX_THREADS_PER_BLOCK, _check_not_empty
from .blocks import _beats, _block_first_max, _block_sum


# --------------------------------------------------------------------------
# Global pooling over H×W. x is viewed as rows (N*C, H*W); block r owns row r.
# --------------------------------------------------------------------------
@cuda.jit
def _global_sum_kernel(x, l2, out):
    """Average pool out[r] = sum_k x[r,k] / (H*W), or with ``l2`` the L2 pool out[r] = sqrt(sum_k x[r,k]^2)."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    r = cuda.blockIdx.x
    partial = 0.0
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += x[r, k] * x[r, k] if l2 else x[r, k]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[r] = math.sqrt(total) if l2 else total / x.shape[1]


@cuda.jit
def _global_max_kernel(x, out, index):
    """out[r] = max_k x[r,k], index[r] = the first k where it occurs."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    best, best_k = -math.inf, x.shape[1]  # sentinel index: any real element beats it
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    best, best_k = _block_first_max(best, best_k, values, indices)
    if cuda.threadIdx.x == 0:
        out[r] = best
        index[r] = best_k


@cuda.jit
def _global_lse_kernel(x, out):
    """out[r] = m + log(sum_k exp(x[r,k] - m)) with m = max_k x[r,k], so exp() never overflows;
    an infinite m is replaced by 0 (PyTorch's logsumexp: +inf gives +inf, not inf - inf = NaN)."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    best, best_k = -math.inf, x.shape[1]
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    peak, _ = _block_first_max(best, best_k, values, indices)
    if math.isinf(peak):
        peak = 0.0
    partial = 0.0
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += math.exp(x[r, k] - peak)
    total = _block_sum(partial, values)
    if cuda.threadIdx.x == 0:
        out[r] = peak + math.log(total)


@cuda.jit
def _global_avg_max_kernel(x, avg, peak, index):
    """CBAM's two descriptors in ONE read of x: avg[r] = mean_k x[r,k] and the first max."""
    sums = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    partial, best, best_k = 0.0, -math.inf, x.shape[1]
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += x[r, k]
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    total = _block_sum(partial, sums)
    best, best_k = _block_first_max(best, best_k, values, indices)
    if cuda.threadIdx.x == 0:
        avg[r] = total / x.shape[1]
        peak[r] = best
        index[r] = best_k


@cuda.jit
def _global_pool_backward_kernel(grad_avg, grad_max, index, dx):
    """dx[r,k] = grad_avg[r] / (H*W) + (grad_max[r] if k is row r's first max else 0)."""
    rows, size = dx.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        value = grad_avg[r] / size
        if k == index[r]:
            value += grad_max[r]
        dx[r, k] = value


@cuda.jit
def _global_lp_backward_kernel(grad, x, out, dx):
    """dx = g * x / out (d sqrt(sum x^2) / dx); 0 where out == 0, as in numpy_backend."""
    rows, size = x.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        dx[r, k] = grad[r] / out[r] * x[r, k] if out[r] > 0 else 0


@cuda.jit
def _global_lse_backward_kernel(grad, x, out, dx):
    """dx = g * exp(x - lse): the softmax of the row, scaled by g."""
    rows, size = x.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        dx[r, k] = grad[r] * math.exp(x[r, k] - out[r])


def _rows(x):
    N, C, H, W = x.shape
    return x.reshape(N * C, H * W)




def _global_reduce(kernel, x, *args, outputs):
    """Run a one-block-per-(n,c) kernel; ``outputs`` are the dtypes of its (N, C) results."""
    N, C, H, W = x.shape
    (d_x,) = device.upload(_rows(x))
    results = [device.empty(N * C, dtype) for dtype in outputs]
    device.launch(kernel, blocks=N * C, reduce_over=H * W)(d_x, *args, *results)
    return tuple(r.copy_to_host().reshape(N, C) for r in results)


def _global_pool_backward(grad_avg, grad_max, index, shape):
    N, C, H, W = shape
    d_avg, d_max, d_index = device.upload(grad_avg.reshape(-1), grad_max.reshape(-1), index.reshape(-1))
    dx = device.empty((N * C, H * W), grad_avg.dtype)
    device.launch(_global_pool_backward_kernel, items=dx.size)(d_avg, d_max, d_index, dx)
    return dx.copy_to_host().reshape(shape)


def _global_elementwise_backward(kernel, grad, x, out):
    d_grad, d_x, d_out = device.upload(grad.reshape(-1), _rows(x), out.reshape(-1))
    dx = device.empty(d_x.shape, x.dtype)
    device.launch(kernel, items=dx.size)(d_grad, d_x, d_out, dx)
    return dx.copy_to_host().reshape(x.shape)


def global_avg_pool_forward(x):
    return _global_reduce(_global_sum_kernel, x, False, outputs=[x.dtype])[0]


def global_avg_pool_backward(grad, shape):
    # the fused backward with no max gradient (index -1 matches no pixel)
    return _global_pool_backward(grad, np.zeros_like(grad), np.full(grad.shape, -1, np.int64), shape)


def global_max_pool_forward(x):
    _check_not_empty("global_max_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_max_kernel, x, outputs=[x.dtype, np.int64])


def global_max_pool_backward(grad, index, shape):
    return _global_pool_backward(np.zeros_like(grad), grad, index, shape)


def global_lp_pool_forward(x):
    return _global_reduce(_global_sum_kernel, x, True, outputs=[x.dtype])[0]


def global_lp_pool_backward(grad, x, out):
    return _global_elementwise_backward(_global_lp_backward_kernel, grad, x, out)


def global_lse_pool_forward(x):
    _check_not_empty("global_lse_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_lse_kernel, x, outputs=[x.dtype])[0]


def global_lse_pool_backward(grad, x, out):
    return _global_elementwise_backward(_global_lse_backward_kernel, grad, x, out)


# --------------------------------------------------------------------------
# Pooling over channels. x is viewed as (N, C, P) with P = H*W pixels;
# block b owns pixel (n, p) = (b // P, b % P) and its threads share the channels.
# --------------------------------------------------------------------------
@cuda.jit
def _channel_mean_kernel(x, out):
    """out[n, p] = (1/C) sum_c x[n, c, p]."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial = 0.0
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        partial += x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[n, p] = total / C


@cuda.jit
def _channel_max_kernel(x, out, index):
    """out[n, p] = max_c x[n, c, p]; index[n, p] = the first channel where it occurs."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    best, best_c = -math.inf, C
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        if _beats(x[n, c, p], c, best, best_c):
            best, best_c = x[n, c, p], c
    best, best_c = _block_first_max(best, best_c, values, indices)
    if cuda.threadIdx.x == 0:
        out[n, p] = best
        index[n, p] = best_c


@cuda.jit
def _channel_pool_backward_kernel(grad_mean, grad_max, index, dx):
    """dx[n,c,p] = grad_mean[n,p] / C + (grad_max[n,p] if c is the first maximal channel else 0)."""
    N, C, P = dx.shape
    for flat in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, p = flat // (C * P), flat // P % C, flat % P
        value = grad_mean[n, p] / C
        if c == index[n, p]:
            value += grad_max[n, p]
        dx[n, c, p] = value


def _pixels(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H * W)


@exercise("9.2", "launch the channel-mean kernel, mean[n,0,i,j] = (1/C) sum_c x[n,c,i,j]: x to the device, "
                 "one block per output pixel (N*H*W blocks) whose threads share the C channels, the result "
                 "back to the host as (N,1,H,W) (lesson 9)")
def channel_mean_forward(x):
    N, C, H, W = x.shape
    # BEGIN SOLUTION
    (d_x,) = device.upload(_pixels(x))
    d_out = device.empty((N, H * W), x.dtype)
    device.launch(_channel_mean_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_out)
    return d_out.copy_to_host().reshape(N, 1, H, W)
    # END SOLUTION


def channel_max_forward(x):
    N, C, H, W = x.shape
    _check_not_empty("channel_max_forward", "x", x.shape, (1,), "C")
    (d_x,) = device.upload(_pixels(x))
    d_out, d_index = device.empty((N, H * W), x.dtype), device.empty((N, H * W), np.int64)
    device.launch(_channel_max_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_out, d_index)
    return d_out.copy_to_host().reshape(N, 1, H, W), d_index.copy_to_host().reshape(N, 1, H, W)


def _channel_pool_backward(grad_mean, grad_max, index, shape):
    N, C, H, W = shape
    d_mean, d_max, d_index = device.upload(*(a.reshape(N, H * W) for a in (grad_mean, grad_max, index)))
    dx = device.empty((N, C, H * W), grad_mean.dtype)
    device.launch(_channel_pool_backward_kernel, items=dx.size)(d_mean, d_max, d_index, dx)
    return dx.copy_to_host().reshape(shape)


def channel_mean_backward(grad, shape):
    # the shared backward with no max gradient (index -1 matches no channel)
    return _channel_pool_backward(grad, np.zeros_like(grad), np.full(grad.shape, -1, np.int64), shape)


def channel_max_backward(grad, index, shape):
    return _channel_pool_backward(np.zeros_like(grad), grad, index, shape)


# --------------------------------------------------------------------------
# Both of CBAM's global descriptors (avg and max) in one read of each row.
# --------------------------------------------------------------------------
def global_avg_max_pool_forward(x):
    _check_not_empty("global_avg_max_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_avg_max_kernel, x, outputs=[x.dtype, x.dtype, np.int64])


def global_avg_max_pool_backward(grad_avg, grad_max, index, shape, add_to=None):
    # The gradient comes back to the host anyway, so the sum is NumPy's (the same IEEE additions).
    check_add_to("global_avg_max_pool_backward", add_to, shape, grad_avg.dtype)
    return added(add_to, _global_pool_backward(grad_avg, grad_max, index, shape))
