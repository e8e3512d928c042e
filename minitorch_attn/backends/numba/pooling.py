"""Kernels of ``ops/pooling.py``: global pooling over H×W and pooling over channels."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...exercise import exercise
from ..add_to import check_add_to
from .checks import _as_float, _as_index, _as_nchw_shape, _check_not_empty, _check_shape
from .lanes import PIXEL_BLOCK, _block_count, _lane_dot, _lane_sum, _replaces_max, _sum_and_first_max


# --------------------------------------------------------------------------
# Global pooling over H×W. The loops see x as (P, S) = (N*C, H*W): one
# contiguous plane per prange iteration, which owns its output element.
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _global_avg_pool_loop(planes, out):
    """out[p] = (1/S) Σ_s planes[p, s]."""
    count = planes.dtype.type(planes.shape[1])
    for p in prange(planes.shape[0]):
        out[p] = _lane_sum(planes[p]) / count


@njit(parallel=True, cache=True)
def _global_avg_pool_backward_loop(grad, dx):
    """dx[p, s] = g[p] / S: every pixel had weight 1/S in the mean."""
    count = dx.dtype.type(dx.shape[1])
    for p in prange(dx.shape[0]):
        share = grad[p] / count
        for s in range(dx.shape[1]):
            dx[p, s] = share


@njit(parallel=True, cache=True)
def _global_max_pool_loop(planes, out, index):
    for p in prange(planes.shape[0]):
        _, out[p], index[p] = _sum_and_first_max(planes[p])


@njit(parallel=True, cache=True)
def _scatter_to_index_loop(grad, index, dx):
    """dx[p, index[p]] = g[p], zero elsewhere: the max's whole gradient goes to the element it picked."""
    zero = dx.dtype.type(0)
    for p in prange(dx.shape[0]):
        for s in range(dx.shape[1]):
            dx[p, s] = zero
        dx[p, index[p]] = grad[p]


@njit(parallel=True, cache=True)
def _global_lp_pool_loop(planes, out):
    """out[p] = sqrt(Σ_s planes[p, s]²)."""
    for p in prange(planes.shape[0]):
        out[p] = np.sqrt(_lane_dot(planes[p], planes[p]))


@njit(parallel=True, cache=True)
def _global_lp_pool_backward_loop(grad, planes, out, dx):
    """dx = g · x / out; where out == 0 every x is 0 and the subgradient 0 is taken."""
    zero = dx.dtype.type(0)
    for p in prange(dx.shape[0]):
        scale = grad[p] / out[p] if out[p] > 0 else zero
        for s in range(dx.shape[1]):
            dx[p, s] = scale * planes[p, s]


@njit(parallel=True, cache=True)
def _global_lse_pool_loop(planes, out):
    """out[p] = m + log Σ_s exp(x[p, s] - m) with m = max_s x[p, s] (exp(...) <= 1: no overflow).

    An infinite m is replaced by 0, as PyTorch's logsumexp does: then +inf gives
    +inf and a plane of -inf gives -inf, where inf - inf would give NaN.
    """
    for p in prange(planes.shape[0]):
        _, peak, _ = _sum_and_first_max(planes[p])
        if np.isinf(peak):
            peak = planes.dtype.type(0)
        total = planes.dtype.type(0)
        for s in range(planes.shape[1]):
            total += np.exp(planes[p, s] - peak)
        out[p] = peak + np.log(total)


@njit(parallel=True, cache=True)
def _global_lse_pool_backward_loop(grad, planes, out, dx):
    """dx = g · exp(x - out): the softmax of the plane, scaled by the upstream gradient."""
    for p in prange(dx.shape[0]):
        for s in range(dx.shape[1]):
            dx[p, s] = grad[p] * np.exp(planes[p, s] - out[p])


def _planes(kernel, x, is_max=False):
    x = _as_float(kernel, "x", x, 4)
    N, C, H, W = x.shape
    if is_max:
        _check_not_empty(kernel, "x", x.shape, (2, 3), "H×W")
    return x.reshape(N * C, H * W), (N, C)


def _pooled_grad(kernel, grad, shape, add_to=None):
    """``(grad, shape, dx)``: dx the (N·C, H·W) rows to write, ``add_to``'s own memory when given."""
    shape = _as_nchw_shape(kernel, shape)
    grad = _as_float(kernel, "grad", grad, 2)
    _check_shape(kernel, "grad", grad, shape[:2])
    rows = (shape[0] * shape[1], shape[2] * shape[3])
    add_to = check_add_to(kernel, add_to, shape, grad.dtype)
    return grad.reshape(-1), shape, np.empty(rows, grad.dtype) if add_to is None else add_to.reshape(rows)


def global_avg_pool_forward(x):
    planes, nc = _planes("global_avg_pool_forward", x)
    out = np.empty(planes.shape[0], planes.dtype)
    _global_avg_pool_loop(planes, out)
    return out.reshape(nc)


def global_avg_pool_backward(grad, shape):
    grad, shape, dx = _pooled_grad("global_avg_pool_backward", grad, shape)
    _global_avg_pool_backward_loop(grad, dx)
    return dx.reshape(shape)


def global_max_pool_forward(x):
    """Returns ``(out, index)``; ``index[n, c]`` is the flat H×W position of the first maximum."""
    planes, nc = _planes("global_max_pool_forward", x, is_max=True)
    out = np.empty(planes.shape[0], planes.dtype)
    index = np.empty(planes.shape[0], np.int64)
    _global_max_pool_loop(planes, out, index)
    return out.reshape(nc), index.reshape(nc)


def global_max_pool_backward(grad, index, shape):
    grad, shape, dx = _pooled_grad("global_max_pool_backward", grad, shape)
    index = _as_index("global_max_pool_backward", "index", index, shape[:2], dx.shape[1])
    _scatter_to_index_loop(grad, index.reshape(-1), dx)
    return dx.reshape(shape)


def global_lp_pool_forward(x):
    planes, nc = _planes("global_lp_pool_forward", x)
    out = np.empty(planes.shape[0], planes.dtype)
    _global_lp_pool_loop(planes, out)
    return out.reshape(nc)


def _pool_backward_arguments(kernel, grad, x, out):
    planes, nc = _planes(kernel, x)
    grad = _as_float(kernel, "grad", grad, 2, planes.dtype)
    out = _as_float(kernel, "out", out, 2, planes.dtype)
    _check_shape(kernel, "grad", grad, nc)
    _check_shape(kernel, "out", out, nc)
    return grad.reshape(-1), planes, out.reshape(-1), np.empty_like(planes)


def global_lp_pool_backward(grad, x, out):
    grad, planes, out, dx = _pool_backward_arguments("global_lp_pool_backward", grad, x, out)
    _global_lp_pool_backward_loop(grad, planes, out, dx)
    return dx.reshape(np.shape(x))


def global_lse_pool_forward(x):
    planes, nc = _planes("global_lse_pool_forward", x, is_max=True)
    out = np.empty(planes.shape[0], planes.dtype)
    _global_lse_pool_loop(planes, out)
    return out.reshape(nc)


def global_lse_pool_backward(grad, x, out):
    grad, planes, out, dx = _pool_backward_arguments("global_lse_pool_backward", grad, x, out)
    _global_lse_pool_backward_loop(grad, planes, out, dx)
    return dx.reshape(np.shape(x))


# --------------------------------------------------------------------------
# Pooling over channels: the loops see x as (N, C, S). A task is one sample n
# and one block of PIXEL_BLOCK pixels; it walks the channels in order 0..C-1,
# adding whole contiguous rows into the outputs it owns (the order of NumPy's
# own sum over axis 1, so the mean is bit-identical to numpy_backend's).
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _channel_mean_loop(x, out):
    """out[n, s] = (1/C) Σ_c x[n, c, s] for x of shape (N, C, S)."""
    N, C, S = x.shape
    count = x.dtype.type(C)
    blocks = _block_count(S)
    # BEGIN SOLUTION
    for task in prange(N * blocks):
        n = task // blocks
        start = (task % blocks) * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        for s in range(start, stop):
            out[n, s] = x[n, 0, s] if C > 0 else x.dtype.type(0)  # C = 0: 0/0, NumPy's NaN
        # Channel after channel, a whole row at a time: contiguous reads, and
        # the task owns out[n, start:stop], so no other thread adds into it.
        for c in range(1, C):
            for s in range(start, stop):
                out[n, s] += x[n, c, s]
        for s in range(start, stop):
            out[n, s] /= count
    # END SOLUTION


@njit(parallel=True, cache=True)
def _channel_mean_backward_loop(grad, dx):
    """dx[n, c, s] = g[n, s] / C for every channel: each had weight 1/C in the mean."""
    N, C, S = dx.shape
    count = dx.dtype.type(C)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        for s in range(S):
            dx[n, c, s] = grad[n, s] / count


@njit(parallel=True, cache=True)
def _channel_max_loop(x, out, index):
    """out[n, s] = max_c x[n, c, s]; index[n, s] = the first channel that holds it."""
    N, C, S = x.shape
    blocks = _block_count(S)
    for task in prange(N * blocks):
        n = task // blocks
        start = (task % blocks) * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        for s in range(start, stop):
            out[n, s] = x[n, 0, s]
            index[n, s] = 0
        for c in range(1, C):
            for s in range(start, stop):
                if _replaces_max(x[n, c, s], out[n, s]):
                    out[n, s] = x[n, c, s]
                    index[n, s] = c


@njit(parallel=True, cache=True)
def _channel_max_backward_loop(grad, index, dx):
    """dx[n, c, s] = g[n, s] where c is the channel the max picked, 0 elsewhere."""
    N, C, S = dx.shape
    zero = dx.dtype.type(0)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        for s in range(S):
            dx[n, c, s] = grad[n, s] if index[n, s] == c else zero


def _channels(kernel, x, is_max=False):
    x = _as_float(kernel, "x", x, 4)
    N, C, H, W = x.shape
    if is_max:
        _check_not_empty(kernel, "x", x.shape, (1,), "C")
    return x.reshape(N, C, H * W), (N, 1, H, W)


def _channel_grad(kernel, grad, shape):
    shape = _as_nchw_shape(kernel, shape)
    N, C, H, W = shape
    grad = _as_float(kernel, "grad", grad, 4)
    _check_shape(kernel, "grad", grad, (N, 1, H, W))
    return grad.reshape(N, H * W), shape, np.empty((N, C, H * W), grad.dtype)


@exercise("9.1", "the channel-wise mean as a prange loop, out[n,0,i,j] = (1/C) Σ_c x[n,c,i,j]: "
                 "each task owns one sample and one block of pixels and adds channels in order 0..C-1 (lesson 9)")
def channel_mean_forward(x):
    x3, out_shape = _channels("channel_mean_forward", x)
    out = np.empty((x3.shape[0], x3.shape[2]), x3.dtype)
    _channel_mean_loop(x3, out)
    return out.reshape(out_shape)


def channel_mean_backward(grad, shape):
    grad, shape, dx = _channel_grad("channel_mean_backward", grad, shape)
    _channel_mean_backward_loop(grad, dx)
    return dx.reshape(shape)


def channel_max_forward(x):
    """Returns ``(out, index)``; ``index[n, 0, i, j]`` is the channel of the first maximum."""
    x3, out_shape = _channels("channel_max_forward", x, is_max=True)
    out = np.empty((x3.shape[0], x3.shape[2]), x3.dtype)
    index = np.empty(out.shape, np.int64)
    _channel_max_loop(x3, out, index)
    return out.reshape(out_shape), index.reshape(out_shape)


def channel_max_backward(grad, index, shape):
    grad, shape, dx = _channel_grad("channel_max_backward", grad, shape)
    N, C, H, W = shape
    index = _as_index("channel_max_backward", "index", index, (N, 1, H, W), C)
    _channel_max_backward_loop(grad, index.reshape(N, H * W), dx)
    return dx.reshape(shape)


# --------------------------------------------------------------------------
# Both of CBAM's global descriptors (avg and max) in one read of each plane.
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _global_avg_max_pool_loop(planes, avg, peak, index):
    """CBAM's channel descriptors: avg[p] = mean of plane p, peak[p] = its max, index[p] = first argmax."""
    count = planes.dtype.type(planes.shape[1])
    for p in prange(planes.shape[0]):
        total, peak[p], index[p] = _sum_and_first_max(planes[p])
        avg[p] = total / count


@njit(parallel=True, cache=True)
def _global_avg_max_pool_backward_loop(grad_avg, grad_max, index, dx, add):
    """dx[p, s] (+)= g_avg[p]/S + (g_max[p] if s is the argmax): each plane written once.
    With ``add`` the argmax element gets old + (share + g_max), the order of a separate sum."""
    count = dx.dtype.type(dx.shape[1])
    for p in prange(dx.shape[0]):
        share = grad_avg[p] / count
        at_max = share + grad_max[p]
        if add:
            at_max += dx[p, index[p]]
            for s in range(dx.shape[1]):
                dx[p, s] += share
        else:
            for s in range(dx.shape[1]):
                dx[p, s] = share
        dx[p, index[p]] = at_max


def global_avg_max_pool_forward(x):
    """CBAM's two descriptors in one pass: ``(avg (N,C), max (N,C), index (N,C))``."""
    planes, nc = _planes("global_avg_max_pool_forward", x, is_max=True)
    avg, peak = np.empty(planes.shape[0], planes.dtype), np.empty(planes.shape[0], planes.dtype)
    index = np.empty(planes.shape[0], np.int64)
    _global_avg_max_pool_loop(planes, avg, peak, index)
    return avg.reshape(nc), peak.reshape(nc), index.reshape(nc)


def global_avg_max_pool_backward(grad_avg, grad_max, index, shape, add_to=None):
    """``add_to``: None, or the gradient collected for F so far, to add this one into (and return)."""
    kernel = "global_avg_max_pool_backward"
    grad_avg, shape, dx = _pooled_grad(kernel, grad_avg, shape, add_to)
    grad_max = _as_float(kernel, "grad_max", grad_max, 2, dx.dtype)
    _check_shape(kernel, "grad_max", grad_max, shape[:2])
    index = _as_index(kernel, "index", index, shape[:2], dx.shape[1])
    _global_avg_max_pool_backward_loop(grad_avg, grad_max.reshape(-1), index.reshape(-1), dx, add_to is not None)
    return dx.reshape(shape) if add_to is None else add_to
