"""The Numba CPU backend: the NumPy kernels rewritten as explicit parallel loops.

Every kernel is a thin Python wrapper (checks its arguments before any work,
allocates the outputs, turns ``bias=None`` into an array plus a flag) around an
``@njit(parallel=True, cache=True)`` loop whose outermost loop is a ``prange``.
The formulas and return conventions are those of ``numpy_backend``.

Rules every loop here follows, and why:

* **Deterministic for any thread count.** A ``prange`` iteration owns the
  outputs it writes; no two threads ever add into the same element. Every sum
  runs in an order fixed by the shapes alone (never by how Numba shares the
  iterations out), so 1 thread and 8 threads give bit-identical results.
* **float32 stays float32.** Constants are made with ``x.dtype.type(...)``: a
  bare Python ``1`` or ``0.5`` makes Numba promote float32 math to float64.
* **Few compiled variants.** The wrappers hand the loops C-contiguous arrays of
  one fixed ndim per loop (global pools see ``(planes, H*W)``, activations see
  1-D), and every input is cast to the dtype of the main input. Each loop then
  compiles once per dtype, and a warm on-disk cache loads in milliseconds.
* **Vectorisable reductions.** Strict IEEE order forbids LLVM to reorder one
  running sum, so a plain ``s += row[i]`` loop runs one element per cycle.
  :func:`_lane_sum` and friends keep eight running sums (element ``i`` goes to
  sum ``i % 8``) and add them in a fixed tree: vectorised, yet still one fixed
  order.
* **First maximum, NaN first of all.** Every max keeps the first of equal
  values (strict ``>`` while scanning in C order), the element ``np.argmax``
  and PyTorch's index-based max pick; a NaN beats every number and the first
  NaN wins, as there. A max over no elements raises (NumPy's ``argmax`` does).

Numba does not check bounds, so the wrappers check every shape and index the
loops rely on. Convolutions with many output channels per group go through
im2col and a matrix product written here as a loop (:func:`_add_combination`),
not NumPy's BLAS ``matmul``: OpenBLAS runs its own thread pool, which fought
Numba's OpenMP threads for the two cores (a BAM conv backward took 240 ms
instead of 2), and its sums are not in an order we fix.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..exercise import exercise

#: Pixels per task in the loops that reduce over channels. Such a task walks
#: the channels, reading a segment of this many pixels from each plane: long
#: segments keep the hardware prefetchers streaming (256-pixel segments made
#: BAM's residual-gate backward 2× slower at 28×28). A batch of one then has
#: few tasks (H·W / 1024); the benchmarked batches have 8 or more.
PIXEL_BLOCK = 1024

#: conv2d uses im2col + a matrix product when a group has at least this many output
#: channels (each im2col row is then reused by many outputs, which is where a
#: GEMM beats direct loops: BAM's 1×1 and dilated 3×3 convs with C/r channels),
#: and direct loops below it (CBAM's 2→1 7×7 conv, BAM's C/r→1 1×1, depthwise).
GEMM_MIN_OUT_CHANNELS = 8

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# Argument checks (raised before any work: the loops do not check bounds)
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Shared reductions over one contiguous row
# --------------------------------------------------------------------------
@njit(cache=True)
def _lane_sum(row):
    """Σ row: eight running sums (element i goes to sum i % 8), added in a fixed tree."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = row.dtype.type(0)
    whole = row.shape[0] - row.shape[0] % 8
    for i in range(0, whole, 8):
        s0 += row[i]
        s1 += row[i + 1]
        s2 += row[i + 2]
        s3 += row[i + 3]
        s4 += row[i + 4]
        s5 += row[i + 5]
        s6 += row[i + 6]
        s7 += row[i + 7]
    for i in range(whole, row.shape[0]):
        s0 += row[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True)
def _lane_dot(a, b):
    """Σ a·b over two rows of equal length, in :func:`_lane_sum`'s order."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = a.dtype.type(0)
    whole = a.shape[0] - a.shape[0] % 8
    for i in range(0, whole, 8):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]
        s5 += a[i + 5] * b[i + 5]
        s6 += a[i + 6] * b[i + 6]
        s7 += a[i + 7] * b[i + 7]
    for i in range(whole, a.shape[0]):
        s0 += a[i] * b[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True)
def _sum_and_first_max(row):
    """``(Σ row, max row, index of the first maximum)`` in one read of a non-empty ``row``.

    The sum uses :func:`_lane_sum`'s eight lanes. For the max, each block of
    eight elements is reduced to its maximum, and the running maximum moves
    only on a strictly larger block maximum, so it remembers the FIRST block
    that reached the final maximum; the first maximum is the first element
    of that block equal to it. (Keeping an index per lane instead stops LLVM
    from vectorising the loop: 1.5 ms instead of 1.0 ms at (16,256,28,28).)
    A NaN anywhere makes the sum NaN, so the scan for the first NaN (which is
    then the maximum) costs one test on rows without one; a NaN sum from
    inf - inf finds none, and the maximum found above stands.
    """
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = row.dtype.type(0)
    peak = row[0]
    peak_block = 0
    whole = row.shape[0] - row.shape[0] % 8
    for i in range(0, whole, 8):
        v0, v1, v2, v3 = row[i], row[i + 1], row[i + 2], row[i + 3]
        v4, v5, v6, v7 = row[i + 4], row[i + 5], row[i + 6], row[i + 7]
        s0 += v0
        s1 += v1
        s2 += v2
        s3 += v3
        s4 += v4
        s5 += v5
        s6 += v6
        s7 += v7
        block_peak = max(max(max(v0, v1), max(v2, v3)), max(max(v4, v5), max(v6, v7)))
        if block_peak > peak:
            peak = block_peak
            peak_block = i
    for i in range(whole, row.shape[0]):
        s0 += row[i]
        if row[i] > peak:
            peak = row[i]
            peak_block = i
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    if np.isnan(total):
        for i in range(row.shape[0]):
            if np.isnan(row[i]):
                return total, row[i], i
    where = peak_block
    while row[where] != peak:  # at most 7 steps, inside one block
        where += 1
    return total, peak, where


@njit(cache=True, inline="always")
def _replaces_max(value, best):
    """Whether ``value``, met after ``best`` in the scan, becomes the maximum: a larger number (strict,
    so the first of equal values stays) or the first NaN; nothing replaces a NaN."""
    return not (value <= best) and best == best


@njit(cache=True)
def _sigmoid(z, one):
    # exp only ever sees -|z| <= 0, so it cannot overflow: 1/(1+e^-z) for z >= 0,
    # e^z/(1+e^z) for z < 0 (the same two branches as numpy_backend).
    e = np.exp(-abs(z))
    return one / (one + e) if z >= 0 else e / (one + e)


@njit(cache=True)
def _block_count(size):
    return (size + PIXEL_BLOCK - 1) // PIXEL_BLOCK


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


def _pooled_grad(kernel, grad, shape):
    shape = _as_nchw_shape(kernel, shape)
    grad = _as_float(kernel, "grad", grad, 2)
    _check_shape(kernel, "grad", grad, shape[:2])
    return grad.reshape(-1), shape, np.empty((shape[0] * shape[1], shape[2] * shape[3]), grad.dtype)


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
    """The gradient passes where the output is positive (subgradient 0 at 0)."""
    zero = dx.dtype.type(0)
    for i in prange(dx.shape[0]):
        dx[i] = grad[i] if out[i] > zero else zero


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


def _bias_argument(kernel, bias, size, dtype):
    """``(array, flag)``: an absent bias becomes an unused array, so the loop compiles once, not per Optional."""
    if bias is None:
        return np.zeros(size, dtype), False
    bias = _as_float(kernel, "bias", bias, 1, dtype)
    _check_shape(kernel, "bias", bias, (size,))
    return bias, True


def relu_forward(x):
    return _elementwise("relu_forward", _relu_loop, "x", x)


def relu_backward(grad, out):
    return _elementwise("relu_backward", _relu_backward_loop, "grad", grad, "out", out)


def sigmoid_forward(x):
    return _elementwise("sigmoid_forward", _sigmoid_loop, "x", x)


def sigmoid_backward(grad, out):
    return _elementwise("sigmoid_backward", _sigmoid_backward_loop, "grad", grad, "out", out)


# --------------------------------------------------------------------------
# Broadcasting arithmetic. Runs of adjacent axes that broadcast alike are
# merged (a (N,C,H,W) ⊗ (N,1,H,W) product becomes (N, C, H*W) ⊗ (N, 1, H*W)),
# so the loops see at most four axes and a long contiguous last axis.
# --------------------------------------------------------------------------
def _merged_axes(kernel, shape, operands):
    """Merge adjacent axes of ``shape`` where every operand is either full or 1 alike.

    ``operands`` are shapes of ``len(shape)``. Returns the merged shapes padded
    on the left to 4-D: ``(shape4, [operand4, ...])``.
    """
    runs = []  # [pattern, size, operand sizes]
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        pattern = tuple(op[axis] == size for op in operands)
        if runs and runs[-1][0] == pattern:
            runs[-1][1] *= size
            runs[-1][2] = [n * op[axis] for n, op in zip(runs[-1][2], operands)]
        else:
            runs.append([pattern, size, [op[axis] for op in operands]])
    if len(runs) > 4:
        raise ValueError(f"{kernel}: the shapes {[tuple(op) for op in operands]} broadcast in {len(runs)} "
                         f"separate runs of axes; at most 4 are supported")
    pad = [1] * (4 - len(runs))
    merged = tuple(pad + [run[1] for run in runs])
    per_operand = [tuple(pad + [run[2][k] for run in runs]) for k in range(len(operands))]
    return merged, per_operand


@njit(cache=True)
def _combine(u, v, multiply):
    return u * v if multiply else u + v


#: Elements per task along the last (merged) axis of an element-wise op: two
#: same-shaped operands merge into ONE row of N·C·H·W elements, which must
#: still be shared among the threads (it ran on one thread: 1.5 ms for a CBAM-sized product).
ROW_CHUNK = 16384


@njit(parallel=True, cache=True)
def _binary_loop(a, b, multiply, out):
    """out = a ⊗ b (product if ``multiply`` else sum) for 4-D a, b whose sizes are out's or 1.

    The operands come un-broadcast (contiguous), so each output row reads a
    contiguous row or one repeated number of each operand: the three row loops
    below vectorise, where stride-0 broadcast views did not. A task is one
    chunk of ROW_CHUNK elements of one output row.
    """
    T0, T1, T2, T3 = out.shape
    chunks = (T3 + ROW_CHUNK - 1) // ROW_CHUNK
    for task in prange(T0 * T1 * T2 * chunks):
        row = task // chunks
        i0 = row // (T1 * T2)
        i1 = (row // T2) % T1
        i2 = row % T2
        start = (task % chunks) * ROW_CHUNK
        stop = min(start + ROW_CHUNK, T3)
        # A size-1 axis of an operand is read at index 0 for every output index.
        row_a = a[i0 if a.shape[0] > 1 else 0, i1 if a.shape[1] > 1 else 0, i2 if a.shape[2] > 1 else 0]
        row_b = b[i0 if b.shape[0] > 1 else 0, i1 if b.shape[1] > 1 else 0, i2 if b.shape[2] > 1 else 0]
        chunk_out = out[i0, i1, i2, start:stop]
        if row_a.shape[0] == row_b.shape[0]:
            chunk_a, chunk_b = row_a[start:stop], row_b[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(chunk_a[j], chunk_b[j], multiply)
        elif row_a.shape[0] == 1:
            chunk_b = row_b[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(row_a[0], chunk_b[j], multiply)
        else:
            chunk_a = row_a[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(chunk_a[j], row_b[0], multiply)


@njit(parallel=True, cache=True)
def _sum_to_shape_loop(grad, out):
    """out = grad summed over the axes where out has size 1 (4-D, merged axes alternate kept/summed).

    A task owns one row out[o0, o1, o2] and adds the rows of grad that land on
    it in C order; a summed last axis collapses each of those rows to one number.
    """
    G0, G1, G2, G3 = grad.shape
    T0, T1, T2, T3 = out.shape
    R0 = G0 if T0 == 1 else 1
    R1 = G1 if T1 == 1 else 1
    R2 = G2 if T2 == 1 else 1
    keep_last = T3 == G3
    zero = out.dtype.type(0)
    for task in prange(T0 * T1 * T2):
        o0 = task // (T1 * T2)
        o1 = (task // T2) % T1
        o2 = task % T2
        row = out[o0, o1, o2]
        for j in range(T3):
            row[j] = zero
        # A kept axis has R = 1 and index o; a summed one has o = 0 and R = its size.
        for r0 in range(R0):
            for r1 in range(R1):
                for r2 in range(R2):
                    source = grad[o0 + r0, o1 + r1, o2 + r2]
                    if keep_last:
                        for j in range(T3):
                            row[j] += source[j]
                    else:
                        row[0] += _lane_sum(source)


@njit(parallel=True, cache=True)
def _mul_backward_loop(grad, full, small, dfull, dsmall):
    """dfull = grad ⊗ small (broadcast) and dsmall = grad ⊗ full summed to small's shape, in one pass.

    grad, full, dfull share one 4-D shape; small's axes are theirs or 1 (merged axes alternate).
    Tasks as in :func:`_sum_to_shape_loop`: one row of dsmall each, visiting the grad rows that land
    on it in C order, so neither product is written out and read back.
    """
    G0, G1, G2, G3 = grad.shape
    T0, T1, T2, T3 = small.shape
    R0 = G0 if T0 == 1 else 1
    R1 = G1 if T1 == 1 else 1
    R2 = G2 if T2 == 1 else 1
    keep_last = T3 == G3
    for task in prange(T0 * T1 * T2):
        o0 = task // (T1 * T2)
        o1 = (task // T2) % T1
        o2 = task % T2
        scale = small[o0, o1, o2]
        # A task-local running row: it cannot alias dfull, so the row loop vectorises.
        row = np.zeros(T3, dsmall.dtype)
        for r0 in range(R0):
            for r1 in range(R1):
                for r2 in range(R2):
                    g = grad[o0 + r0, o1 + r1, o2 + r2]
                    f = full[o0 + r0, o1 + r1, o2 + r2]
                    df = dfull[o0 + r0, o1 + r1, o2 + r2]
                    if keep_last:
                        for j in range(G3):
                            df[j] = g[j] * scale[j]
                            row[j] += g[j] * f[j]
                    else:
                        for j in range(G3):
                            df[j] = g[j] * scale[0]
                        row[0] += _lane_dot(g, f)
        dsmall[o0, o1, o2] = row


def _binary(kernel, a, b, multiply):
    # NumPy's promotion (a Python float does not widen float32), then one float dtype for both.
    dtype = np.result_type(a, b)
    a = _as_float(kernel, "a", np.asarray(a, dtype))
    b = _as_float(kernel, "b", np.asarray(b, dtype))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{kernel}: shapes {a.shape} and {b.shape} do not broadcast") from None
    padded = [(1,) * (len(shape) - x.ndim) + x.shape for x in (a, b)]
    merged, (shape_a, shape_b) = _merged_axes(kernel, shape, padded)
    out = np.empty(merged, a.dtype)
    _binary_loop(a.reshape(shape_a), b.reshape(shape_b), multiply, out)
    return out.reshape(shape)


def mul_forward(a, b):
    return _binary("mul_forward", a, b, True)


def mul_backward(grad, a, b, needs_a=True, needs_b=True):
    """Gradients of ``a * b``: ``(sum_to_shape(g·b, a.shape), sum_to_shape(g·a, b.shape))``, None where not needed.

    When both are needed and one operand has grad's shape (CBAM's F' ⊗ M_s), one fused pass;
    otherwise the two kernels above.
    """
    grad = _as_float("mul_backward", "grad", grad)
    a = _as_float("mul_backward", "a", a, dtype=grad.dtype)
    b = _as_float("mul_backward", "b", b, dtype=grad.dtype)
    try:
        expected = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        expected = None
    if expected != grad.shape:
        raise ValueError(f"mul_backward: grad must have the broadcast shape of a {a.shape} and b {b.shape}, "
                         f"got {grad.shape}")
    a_is_full = a.shape == grad.shape
    if not (needs_a and needs_b and (a_is_full or b.shape == grad.shape)):
        da = sum_to_shape(mul_forward(grad, b), a.shape) if needs_a else None
        db = sum_to_shape(mul_forward(grad, a), b.shape) if needs_b else None
        return da, db
    full, small = (a, b) if a_is_full else (b, a)
    padded = (1,) * (grad.ndim - small.ndim) + small.shape
    merged, (small4,) = _merged_axes("mul_backward", grad.shape, [padded])
    dfull, dsmall = np.empty(merged, grad.dtype), np.empty(small4, grad.dtype)
    _mul_backward_loop(grad.reshape(merged), full.reshape(merged), small.reshape(small4), dfull, dsmall)
    dfull, dsmall = dfull.reshape(grad.shape), dsmall.reshape(small.shape)
    return (dfull, dsmall) if a_is_full else (dsmall, dfull)


def add_forward(a, b):
    return _binary("add_forward", a, b, False)


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the axes that were stretched to reach its shape."""
    grad = _as_float("sum_to_shape", "grad", grad)
    shape = tuple(int(n) for n in shape)
    padded = (1,) * (grad.ndim - len(shape)) + shape
    if len(shape) > grad.ndim or any(t not in (1, g) for t, g in zip(padded, grad.shape)):
        raise ValueError(f"sum_to_shape: grad of shape {grad.shape} cannot be summed to shape {shape}")
    if grad.shape == shape:
        return grad
    merged, (grad4, out4) = _merged_axes("sum_to_shape", grad.shape, [grad.shape, padded])
    out = np.empty(out4, grad.dtype)
    _sum_to_shape_loop(grad.reshape(grad4), out)
    return out.reshape(shape)


# --------------------------------------------------------------------------
# Convolution: out[n, co, oh, ow] = b[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw]
#     · x[n, g·CG + ci, oh·sh + kh·dh − ph, ow·sw + kw·dw − pw]
# (g = co's group, CG = input channels per group; pixels outside x are 0).
# --------------------------------------------------------------------------
def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@njit(cache=True)
def _valid_outputs(offset, stride, in_size, out_size):
    """The outputs o in [lo, hi) whose input o·stride + offset lies inside [0, in_size).

    Computing the range once keeps the pixel loops free of bounds tests (so they vectorise).
    """
    lo = max(0, (stride - 1 - offset) // stride)
    hi = min(out_size, (in_size - offset + stride - 1) // stride)
    return lo, max(lo, hi)


@njit(cache=True)
def _add_scaled(dest, scale, source):
    """dest += scale · source for two rows of equal length."""
    for i in range(dest.shape[0]):
        dest[i] += scale * source[i]


# im2col copies the input row ih at columns iw_lo, iw_lo + sw, ... into a row
# of cols, and col2im adds it back. The stride-1 case gets its own contiguous slice: with a run-time stride
# LLVM does not vectorise the row loop. A tap that sees padding only has count
# 0, and then no slice may be built: its stop iw_lo - sw + 1 can be negative
# and would wrap around to the row's end.
@njit(cache=True)
def _tap_columns_gather(dest, image, ih, iw_lo, sw):
    """dest[k] = image[ih, iw_lo + k·sw] for k < len(dest): what im2col copies, and the scatter below adds back."""
    count = dest.shape[0]
    if count == 0:
        return
    if sw == 1:
        dest[:] = image[ih, iw_lo:iw_lo + count]
    else:
        dest[:] = image[ih, iw_lo:iw_lo + (count - 1) * sw + 1:sw]


@njit(cache=True)
def _tap_columns_scatter(image, ih, iw_lo, sw, scale, source):
    """image[ih, iw_lo + k·sw] += scale · source[k] for k < len(source): the adjoint of the above."""
    count = source.shape[0]
    if count == 0:
        return
    if sw == 1:
        _add_scaled(image[ih, iw_lo:iw_lo + count], scale, source)
    else:
        _add_scaled(image[ih, iw_lo:iw_lo + (count - 1) * sw + 1:sw], scale, source)


# Direct convolution on "wide rows" (the path for few output channels, e.g.
# CBAM's 2→1 7×7 conv). In the zero-padded input of width Wp = W + 2·pw, at
# stride 1, output pixel (oh, ow) of tap (kh, kw) reads flat position
# q + kh·dh·Wp + kw·dw with q = oh·Wp + ow. Give the output rows Wp columns too
# (the last Wp - OW1 of each row are junk, never read) and every tap becomes ONE
# contiguous multiply-add over q < (OH1 - 1)·Wp + OW1: long rows that vectorise,
# where a slice per output row (28 pixels) spent its time in loop overhead
# (0.68 ms for CBAM's 1.2 M multiply-adds). A strided conv is the stride-1 conv
# read at every sh-th row and sw-th column; its backward scatters g into a zero
# wide plane at those positions. (OH1, OW1: the stride-1 output size.)
@njit(cache=True)
def _wide_length(Wp, dw, KW, OH1):
    """How many flat positions q of a wide output plane are computed: (OH1 - 1)·Wp + OW1."""
    return (OH1 - 1) * Wp + Wp - dw * (KW - 1)


@njit(parallel=True, cache=True)
def _conv2d_wide_loop(xpad, weight, bias, has_bias, Wp, dh, dw, wide):
    """wide[n, co, q] = b[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw] · xpad[n, g·CG + ci, q + kh·dh·Wp + kw·dw].

    xpad (N, C, Hp·Wp) and wide (N, CO, OH1·Wp) are flat planes.
    """
    N, C = xpad.shape[0], xpad.shape[1]
    CO, CG, KH, KW = weight.shape
    length = _wide_length(Wp, dw, KW, wide.shape[2] // Wp)
    out_per_group = CO // (C // CG)
    for task in prange(N * CO):  # one output plane per task
        n = task // CO
        co = task % CO
        first_in = (co // out_per_group) * CG
        plane = wide[n, co, :length]
        start = bias[co] if has_bias else wide.dtype.type(0)
        for q in range(length):
            plane[q] = start
        for ci in range(CG):
            image = xpad[n, first_in + ci]
            for kh in range(KH):
                for kw in range(KW):
                    offset = kh * dh * Wp + kw * dw
                    _add_scaled(plane, weight[co, ci, kh, kw], image[offset:offset + length])


@njit(parallel=True, cache=True)
def _conv2d_wide_input_grad_loop(grad_wide, weight, Wp, dh, dw, dxpad):
    """dxpad[n, c, q + kh·dh·Wp + kw·dw] += w[co, ci, kh, kw] · g_wide[n, co, q] for every co that reads c.

    g_wide is zero at the junk columns, so they add nothing. One input plane per task.
    """
    N, C = dxpad.shape[0], dxpad.shape[1]
    CO, CG, KH, KW = weight.shape
    length = _wide_length(Wp, dw, KW, grad_wide.shape[2] // Wp)
    out_per_group = CO // (C // CG)
    for task in prange(N * C):
        n = task // C
        c = task % C
        ci = c % CG
        first_out = (c // CG) * out_per_group
        plane = dxpad[n, c]
        plane[:] = 0
        for co in range(first_out, first_out + out_per_group):
            upstream = grad_wide[n, co, :length]
            for kh in range(KH):
                for kw in range(KW):
                    offset = kh * dh * Wp + kw * dw
                    _add_scaled(plane[offset:offset + length], weight[co, ci, kh, kw], upstream)


@njit(parallel=True, cache=True)
def _conv2d_wide_weight_grad_loop(grad_wide, xpad, Wp, dh, dw, dweight):
    """dw[co, ci, kh, kw] = Σ_n Σ_q g_wide[n, co, q] · xpad[n, g·CG + ci, q + kh·dh·Wp + kw·dw] (n in order)."""
    N, C = xpad.shape[0], xpad.shape[1]
    CO, CG, KH, KW = dweight.shape
    length = _wide_length(Wp, dw, KW, grad_wide.shape[2] // Wp)
    out_per_group = CO // (C // CG)
    taps = CG * KH * KW
    for task in prange(CO * taps):  # one weight per task
        co = task // taps
        ci = (task % taps) // (KH * KW)
        kh = (task % (KH * KW)) // KW
        kw = task % KW
        c = (co // out_per_group) * CG + ci
        offset = kh * dh * Wp + kw * dw
        total = xpad.dtype.type(0)
        for n in range(N):
            total += _lane_dot(grad_wide[n, co, :length], xpad[n, c, offset:offset + length])
        dweight[co, ci, kh, kw] = total


@njit(parallel=True, cache=True)
def _conv2d_bias_grad_loop(grad, dbias):
    """db[co] = Σ_{n, p} g[n, co, p] for grad viewed as (N, CO, OH*OW)."""
    for co in prange(grad.shape[1]):
        total = grad.dtype.type(0)
        for n in range(grad.shape[0]):
            total += _lane_sum(grad[n, co])
        dbias[co] = total


@njit(parallel=True, cache=True)
def _im2col_loop(x, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, cols):
    """cols[n, (c·KH + kh)·KW + kw, oh·OW + ow] = x[n, c, ih, iw] (0 in the padding).

    Row r of cols holds what tap r sees at every output pixel, so the conv of
    group g is the matrix product W_g (CO/G, CG·KH·KW) @ cols[n, rows of g].
    """
    N, C, H, W = x.shape
    rows = C * KH * KW
    zero = x.dtype.type(0)
    for task in prange(N * rows):
        n = task // rows
        row = task % rows
        c = row // (KH * KW)
        kh = (row // KW) % KH
        kw = row % KW
        dest = cols[n, row]
        for p in range(OH * OW):
            dest[p] = zero
        oh_lo, oh_hi = _valid_outputs(kh * dh - ph, sh, H, OH)
        ow_lo, ow_hi = _valid_outputs(kw * dw - pw, sw, W, OW)
        for oh in range(oh_lo, oh_hi):
            _tap_columns_gather(dest[oh * OW + ow_lo:oh * OW + ow_hi], x[n, c], oh * sh + kh * dh - ph,
                                ow_lo * sw + kw * dw - pw, sw)


@njit(parallel=True, cache=True)
def _col2im_loop(dcols, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, dx):
    """The adjoint of im2col: every entry of dcols is added back to the input pixel it was copied from."""
    N, C, H, W = dx.shape
    zero, one = dx.dtype.type(0), dx.dtype.type(1)
    for task in prange(N * C):  # one input plane per task: only this task writes it
        n = task // C
        c = task % C
        plane = dx[n, c]
        for ih in range(H):
            for iw in range(W):
                plane[ih, iw] = zero
        for kh in range(KH):
            oh_lo, oh_hi = _valid_outputs(kh * dh - ph, sh, H, OH)
            for kw in range(KW):
                ow_lo, ow_hi = _valid_outputs(kw * dw - pw, sw, W, OW)
                source = dcols[n, (c * KH + kh) * KW + kw]
                for oh in range(oh_lo, oh_hi):
                    _tap_columns_scatter(plane, oh * sh + kh * dh - ph, ow_lo * sw + kw * dw - pw, sw,
                                         one, source[oh * OW + ow_lo:oh * OW + ow_hi])


@njit(cache=True)
def _add_combination(row, weights, matrix):
    """row += Σ_j weights[j] · matrix[j]: one output row of a matrix product.

    Eight rows of ``matrix`` are combined per pass over ``row`` (row stays in L1
    and is loaded and stored once per eight products, not once per product),
    added in a fixed tree, so the order depends on the shapes only.
    """
    J, L = matrix.shape
    whole = J - J % 8
    for j in range(0, whole, 8):
        w0, w1, w2, w3 = weights[j], weights[j + 1], weights[j + 2], weights[j + 3]
        w4, w5, w6, w7 = weights[j + 4], weights[j + 5], weights[j + 6], weights[j + 7]
        m0, m1, m2, m3 = matrix[j], matrix[j + 1], matrix[j + 2], matrix[j + 3]
        m4, m5, m6, m7 = matrix[j + 4], matrix[j + 5], matrix[j + 6], matrix[j + 7]
        for l in range(L):
            row[l] += (((w0 * m0[l] + w1 * m1[l]) + (w2 * m2[l] + w3 * m3[l]))
                       + ((w4 * m4[l] + w5 * m5[l]) + (w6 * m6[l] + w7 * m7[l])))
    for j in range(whole, J):
        _add_scaled(row, weights[j], matrix[j])


@njit(parallel=True, cache=True)
def _grouped_matmul_loop(a, b, bias, has_bias, out):
    """out[n, g] = a[g] @ b[n, g] (+ bias[g·M + m] on row m): a (G, M, K), b (N, G, K, P), out (N, G, M, P)."""
    N, G, K, P = b.shape
    M = a.shape[1]
    zero = out.dtype.type(0)
    for task in prange(N * G * M):  # one output row per task
        n = task // (G * M)
        g = (task // M) % G
        m = task % M
        row = out[n, g, m]
        start = bias[g * M + m] if has_bias else zero
        for p in range(P):
            row[p] = start
        _add_combination(row, a[g, m], b[n, g])


@njit(parallel=True, cache=True)
def _conv2d_gemm_weight_grad_loop(cols, grad_t, dweight_t):
    """dWᵀ[g, k] = Σ_n Σ_p cols[n, g, k, p] · gᵀ[n, g, p]: cols (N, G, K, P), gᵀ (N, G, P, M), dWᵀ (G, K, M).

    The transposed form makes each task's output a contiguous row of length M
    (one weight column), summed over the samples in order n = 0..N-1.
    """
    N, G, K, P = cols.shape
    zero = dweight_t.dtype.type(0)
    for task in prange(G * K):
        g = task // K
        k = task % K
        row = dweight_t[g, k]
        for m in range(row.shape[0]):
            row[m] = zero
        for n in range(N):
            _add_combination(row, cols[n, g, k], grad_t[n, g])


class _ConvGeometry:
    """Checked conv2d arguments: shapes, output size, and which path (direct or GEMM) runs."""

    def __init__(self, kernel, x, weight, stride, padding, dilation, groups):
        self.x = _as_float(kernel, "x", x, 4)
        self.weight = _as_float(kernel, "weight", weight, 4, self.x.dtype)
        N, C, H, W = self.x.shape
        CO, CG, KH, KW = self.weight.shape
        if int(groups) != groups or groups < 1 or C % groups or CO % groups or CG != C // groups:
            raise ValueError(f"{kernel}: groups={groups!r} must divide C={C} and CO={CO}, and weight "
                             f"must be (CO, C/groups, KH, KW); got weight {self.weight.shape}")
        self.stride = _pair(kernel, "stride", stride, 1)
        self.padding = _pair(kernel, "padding", padding, 0)
        self.dilation = _pair(kernel, "dilation", dilation, 1)
        self.groups = int(groups)
        self.OH = conv_output_size(H, KH, self.stride[0], self.padding[0], self.dilation[0])
        self.OW = conv_output_size(W, KW, self.stride[1], self.padding[1], self.dilation[1])
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"{kernel}: the output would be empty ({self.OH}×{self.OW}) for input "
                             f"{H}×{W}, kernel {KH}×{KW}, stride {self.stride}, padding {self.padding}, "
                             f"dilation {self.dilation}")
        self.use_gemm = CO // self.groups >= GEMM_MIN_OUT_CHANNELS
        # A 1×1 kernel with stride 1 and no padding reads x as it is: im2col would be a copy.
        self.pointwise = (KH, KW, self.stride, self.padding) == (1, 1, (1, 1), (0, 0))

    @property
    def loop_arguments(self):
        return (*self.stride, *self.padding, *self.dilation)

    def columns(self):
        """im2col of x as (N, G, CG·KH·KW, OH·OW)."""
        N, C, H, W = self.x.shape
        _, CG, KH, KW = self.weight.shape
        if self.pointwise:
            cols = self.x.reshape(N, C, H * W)
        else:
            cols = np.empty((N, C * KH * KW, self.OH * self.OW), self.x.dtype)
            _im2col_loop(self.x, KH, KW, *self.loop_arguments, self.OH, self.OW, cols)
        return cols.reshape(N, self.groups, CG * KH * KW, self.OH * self.OW)

    def grouped_weight(self):
        CO, CG, KH, KW = self.weight.shape
        return self.weight.reshape(self.groups, CO // self.groups, CG * KH * KW)

    def padded_planes(self):
        """``(xpad (N, C, Hp·Wp), Wp, OH1, OW1)``: x zero-padded as flat planes, and the stride-1 output size."""
        (ph, pw), (dh, dw) = self.padding, self.dilation
        N, C, H, W = self.x.shape
        xpad = self.x
        if ph or pw:  # (np.pad costs ~25 µs of Python: a tenth of a CBAM forward's overhead)
            xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), self.x.dtype)
            xpad[:, :, ph:ph + H, pw:pw + W] = self.x
        Hp, Wp = xpad.shape[2:]
        _, _, KH, KW = self.weight.shape
        return xpad.reshape(N, C, Hp * Wp), Wp, Hp - dh * (KH - 1), Wp - dw * (KW - 1)

    def strided(self, wide, OH1, OW1):
        """The outputs at every (sh, sw)-th position of a wide stride-1 plane (N, CO, OH1, Wp): a strided view."""
        sh, sw = self.stride
        return wide[:, :, :OH1:sh, :OW1:sw]


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    conv = _ConvGeometry("conv2d_forward", x, weight, stride, padding, dilation, groups)
    N, CO = conv.x.shape[0], conv.weight.shape[0]
    bias_array, has_bias = _bias_argument("conv2d_forward", bias, CO, conv.x.dtype)
    if not conv.use_gemm:
        xpad, Wp, OH1, OW1 = conv.padded_planes()
        wide = np.empty((N, CO, OH1 * Wp), conv.x.dtype)
        _conv2d_wide_loop(xpad, conv.weight, bias_array, has_bias, Wp, *conv.dilation, wide)
        return np.ascontiguousarray(conv.strided(wide.reshape(N, CO, OH1, Wp), OH1, OW1))
    # (G, CO/G, K) @ (N, G, K, P) -> (N, G, CO/G, P): one matrix product per sample and group.
    out = np.empty((N, conv.groups, CO // conv.groups, conv.OH * conv.OW), conv.x.dtype)
    _grouped_matmul_loop(conv.grouped_weight(), conv.columns(), bias_array, has_bias, out)
    return out.reshape(N, CO, conv.OH, conv.OW)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias):
    conv = _ConvGeometry("conv2d_backward", x, weight, stride, padding, dilation, groups)
    N, C, H, W = conv.x.shape
    CO, CG, KH, KW = conv.weight.shape
    grad = _as_float("conv2d_backward", "grad", grad, 4, conv.x.dtype)
    _check_shape("conv2d_backward", "grad", grad, (N, CO, conv.OH, conv.OW))
    dbias = None
    if has_bias:
        dbias = np.empty(CO, grad.dtype)
        _conv2d_bias_grad_loop(grad.reshape(N, CO, -1), dbias)
    if not conv.use_gemm:
        xpad, Wp, OH1, OW1 = conv.padded_planes()
        grad_wide = np.zeros((N, CO, OH1, Wp), grad.dtype)  # zero at the junk columns and the skipped strides
        conv.strided(grad_wide, OH1, OW1)[...] = grad
        grad_wide = grad_wide.reshape(N, CO, OH1 * Wp)
        dxpad = np.empty_like(xpad)
        _conv2d_wide_input_grad_loop(grad_wide, conv.weight, Wp, *conv.dilation, dxpad)
        (ph, pw), Hp = conv.padding, xpad.shape[2] // Wp
        dx = np.ascontiguousarray(dxpad.reshape(N, C, Hp, Wp)[:, :, ph:ph + H, pw:pw + W])
        dweight = np.empty_like(conv.weight)
        _conv2d_wide_weight_grad_loop(grad_wide, xpad, Wp, *conv.dilation, dweight)
        return dx, dweight, dbias
    G = conv.groups
    per_group = grad.reshape(N, G, CO // G, -1)
    # dW_g = Σ_n g[n, g] @ cols[n, g]ᵀ, computed transposed (see the loop); gᵀ is a small (C/r-channel) copy.
    dweight_t = np.empty((G, CG * KH * KW, CO // G), grad.dtype)
    _conv2d_gemm_weight_grad_loop(conv.columns(), np.ascontiguousarray(per_group.transpose(0, 1, 3, 2)), dweight_t)
    dweight = dweight_t.transpose(0, 2, 1)
    # dcols = W_gᵀ @ g[n, g], folded back onto the input pixels by col2im.
    dcols = np.empty((N, G, CG * KH * KW, per_group.shape[3]), grad.dtype)
    _grouped_matmul_loop(np.ascontiguousarray(conv.grouped_weight().transpose(0, 2, 1)), per_group,
                         np.zeros(1, grad.dtype), False, dcols)
    dcols = dcols.reshape(N, C * KH * KW, -1)
    if conv.pointwise:
        dx = dcols.reshape(N, C, H, W)
    else:
        dx = np.empty_like(conv.x)
        _col2im_loop(dcols, KH, KW, *conv.loop_arguments, conv.OH, conv.OW, dx)
    return dx, dweight.reshape(conv.weight.shape), dbias


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
        # The deviations of a row go to a task-local row first, so that the sum of squares
        # is a lane dot product (one running sum was a scalar loop: a third of the kernel).
        squares = x.dtype.type(0)
        deviation = np.empty(L, x.dtype)
        for n in range(N):
            for l in range(L):
                deviation[l] = x[n, c, l] - mu
            squares += _lane_dot(deviation, deviation)
        sigma2 = squares / count
        scale = one / np.sqrt(sigma2 + eps)
        mean[c], var[c], inv_std[c] = mu, sigma2, scale
        for n in range(N):
            for l in range(L):
                normalised = (x[n, c, l] - mu) * scale
                xhat[n, c, l] = normalised
                out[n, c, l] = normalised * weight[c] + bias[c]


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
    for c in prange(C):
        sum_g = grad.dtype.type(0)
        sum_g_xhat = grad.dtype.type(0)
        for n in range(N):
            sum_g += _lane_sum(grad[n, c])
            sum_g_xhat += _lane_dot(grad[n, c], xhat[n, c])
        dbias[c], dweight[c] = sum_g, sum_g_xhat
        # Σ dx̂ = w·Σ g and Σ dx̂·x̂ = w·Σ g·x̂: the two statistics come with db and dw.
        mean_dxhat = weight[c] * sum_g / count
        mean_dxhat_xhat = weight[c] * sum_g_xhat / count
        for n in range(N):
            for l in range(L):
                dxhat = grad[n, c, l] * weight[c]
                if training:
                    dx[n, c, l] = (dxhat - mean_dxhat - xhat[n, c, l] * mean_dxhat_xhat) * inv_std[c]
                else:
                    dx[n, c, l] = dxhat * inv_std[c]


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


# --------------------------------------------------------------------------
# Softmax cross-entropy, mean over the batch
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _softmax_cross_entropy_loop(logits, labels, probs, picked):
    """log p[b, k] = z[b, k] - m - log Σ_k exp(z[b, k] - m), m = max_k z[b, k]; picked[b] = log p[b, label]."""
    B, K = logits.shape
    for b in prange(B):
        _, peak, _ = _sum_and_first_max(logits[b])
        total = logits.dtype.type(0)
        for k in range(K):
            total += np.exp(logits[b, k] - peak)
        log_total = np.log(total)
        for k in range(K):
            probs[b, k] = np.exp((logits[b, k] - peak) - log_total)
        picked[b] = (logits[b, labels[b]] - peak) - log_total


@njit(parallel=True, cache=True)
def _softmax_cross_entropy_backward_loop(probs, labels, scale, dlogits):
    """dz[b, k] = (p[b, k] - [k == label]) · g / B."""
    one = probs.dtype.type(1)
    for b in prange(probs.shape[0]):
        for k in range(probs.shape[1]):
            target = one if k == labels[b] else probs.dtype.type(0)
            dlogits[b, k] = (probs[b, k] - target) * scale


def _labels(kernel, labels, batch, classes):
    return _as_index(kernel, "labels", labels, (batch,), classes)


def softmax_cross_entropy_forward(logits, labels):
    """Returns ``(loss, probabilities)``; ``loss`` is a 0-d array."""
    logits = _as_float("softmax_cross_entropy_forward", "logits", logits, 2)
    _check_not_empty("softmax_cross_entropy_forward", "logits", logits.shape, (1,), "K (the classes)")
    labels = _labels("softmax_cross_entropy_forward", labels, *logits.shape)
    probs = np.empty_like(logits)
    picked = np.empty(logits.shape[0], logits.dtype)
    _softmax_cross_entropy_loop(logits, labels, probs, picked)
    # The batch mean runs after the parallel loop, in order b = 0..B-1.
    loss = -(_lane_sum(picked) / logits.dtype.type(len(picked)))
    return np.asarray(loss, logits.dtype), probs


def softmax_cross_entropy_backward(grad, probs, labels):
    probs = _as_float("softmax_cross_entropy_backward", "probs", probs, 2)
    labels = _labels("softmax_cross_entropy_backward", labels, *probs.shape)
    grad = _as_float("softmax_cross_entropy_backward", "grad", grad, 0, probs.dtype)
    dlogits = np.empty_like(probs)
    _softmax_cross_entropy_backward_loop(probs, labels, grad[()] / probs.dtype.type(len(labels)), dlogits)
    return dlogits


# --------------------------------------------------------------------------
# Fused attention kernels: one pass over the (N, C, H, W) tensor where the
# numpy backend composes several kernels (and several passes).
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _global_avg_max_pool_loop(planes, avg, peak, index):
    """CBAM's channel descriptors: avg[p] = mean of plane p, peak[p] = its max, index[p] = first argmax."""
    count = planes.dtype.type(planes.shape[1])
    for p in prange(planes.shape[0]):
        total, peak[p], index[p] = _sum_and_first_max(planes[p])
        avg[p] = total / count


@njit(parallel=True, cache=True)
def _global_avg_max_pool_backward_loop(grad_avg, grad_max, index, dx):
    """dx[p, s] = g_avg[p]/S + (g_max[p] if s is the argmax): each plane written once."""
    count = dx.dtype.type(dx.shape[1])
    for p in prange(dx.shape[0]):
        share = grad_avg[p] / count
        for s in range(dx.shape[1]):
            dx[p, s] = share
        dx[p, index[p]] += grad_max[p]


@njit(cache=True)
def _gate_and_pool_channel(x_row, y_row, g, c, total, peak, where):
    """One channel c of :func:`_channel_gate_and_pool_loop`, for the channels left over after the groups of four."""
    for s in range(x_row.shape[0]):
        value = x_row[s] * g
        y_row[s] = value
        total[s] += value
        if _replaces_max(value, peak[s]):
            peak[s], where[s] = value, c


@njit(parallel=True, cache=True)
def _channel_gate_and_pool_loop(x, gate, y, pooled, index):
    """y = gate ⊗ x, pooled[n, 0] = mean_c y, pooled[n, 1] = max_c y, index = first argmax over c."""
    N, C, S = x.shape
    count = x.dtype.type(C)
    blocks = _block_count(S)
    for task in prange(N * blocks):
        n = task // blocks
        start = (task % blocks) * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        # Running sum/max/argmax of this pixel block, in task-local rows (they
        # stay in L1; LLVM vectorises the loop only when they cannot alias x or y;
        # int32 channel numbers keep the select as wide as the float32 one).
        total = np.zeros(stop - start, x.dtype)
        peak = np.full(stop - start, -np.inf, x.dtype)
        where = np.zeros(stop - start, np.int32)
        # Channel rows in order, four per pass over the running rows (a quarter
        # of their loads and stores, which bounded the one-channel loop: 2×
        # slower). x is read once and y written once. Strict > in channel
        # order keeps the first maximal channel.
        whole = C - C % 4
        for c in range(0, whole, 4):
            g0, g1, g2, g3 = gate[n, c], gate[n, c + 1], gate[n, c + 2], gate[n, c + 3]
            x0, x1, x2, x3 = (x[n, c, start:stop], x[n, c + 1, start:stop],
                              x[n, c + 2, start:stop], x[n, c + 3, start:stop])
            y0, y1, y2, y3 = (y[n, c, start:stop], y[n, c + 1, start:stop],
                              y[n, c + 2, start:stop], y[n, c + 3, start:stop])
            for s in range(stop - start):
                v0, v1, v2, v3 = x0[s] * g0, x1[s] * g1, x2[s] * g2, x3[s] * g3
                y0[s], y1[s], y2[s], y3[s] = v0, v1, v2, v3
                total[s] += (v0 + v1) + (v2 + v3)
                best, best_channel = peak[s], where[s]
                if _replaces_max(v0, best):
                    best, best_channel = v0, c
                if _replaces_max(v1, best):
                    best, best_channel = v1, c + 1
                if _replaces_max(v2, best):
                    best, best_channel = v2, c + 2
                if _replaces_max(v3, best):
                    best, best_channel = v3, c + 3
                peak[s], where[s] = best, best_channel
        for c in range(whole, C):
            _gate_and_pool_channel(x[n, c, start:stop], y[n, c, start:stop], gate[n, c], c, total, peak, where)
        for s in range(stop - start):
            pooled[n, 0, start + s] = total[s] / count
            pooled[n, 1, start + s] = peak[s]
            index[n, start + s] = where[s]


@njit(parallel=True, cache=True)
def _channel_gate_and_pool_backward_loop(grad_y, mean_share, grad_max, x, gate, index, dx, dgate):
    """dy = g_y + g_mean/C + g_max·[c = argmax]; dx = dy·gate; dgate[n, c] = Σ_s dy·x.

    ``mean_share`` is the plane g_mean/C (divided once per pixel by the wrapper,
    not once per element here). One (n, c) plane per task: the task owns
    dx[n, c] and dgate[n, c]. dy is built in dx's plane first (it stays in L1),
    then reduced against x and scaled.
    """
    N, C, S = x.shape
    zero = x.dtype.type(0)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        upstream, share, peak_grad, where, out = grad_y[n, c], mean_share[n], grad_max[n], index[n], dx[n, c]
        for s in range(S):
            # a select, not a branch, so that the loop vectorises
            out[s] = upstream[s] + share[s] + (peak_grad[s] if where[s] == c else zero)
        dgate[n, c] = _lane_dot(out, x[n, c])
        g = gate[n, c]
        for s in range(S):
            out[s] *= g


#: |logit| bound under which BAM's gate is computed factored (see _residual_sigmoid_row):
#: e^(2·bound) stays finite and e^(-2·bound) stays a normal number in the dtype.
FACTORED_SIGMOID_BOUND = {np.dtype(np.float32): 40.0, np.dtype(np.float64): 340.0}


@njit(cache=True, inline="always")
def _residual_sigmoid_row(gate, mc, ms, exp_neg_ms, factored, one):
    """gate[s] = σ(mc + ms[s]) along a row of pixels.

    Factored: e^-(mc+ms) = e^-mc · e^-ms, whose exps were taken once per channel
    (here) and once per pixel (the wrapper), so the per-element work is a
    multiply and a divide that vectorise (Numba's exp does not: it is a scalar
    libm call per element). The test on ``factored`` sits outside the pixel
    loops: with it inside, neither loop vectorised (6× slower). Inlined into
    the caller's loop by Numba: compiled as a separate function, the divide
    loop did not vectorise either.
    """
    if factored:
        exp_neg_mc = np.exp(-mc)
        for s in range(gate.shape[0]):
            gate[s] = one / (one + exp_neg_mc * exp_neg_ms[s])
    else:
        for s in range(gate.shape[0]):
            gate[s] = _sigmoid(mc + ms[s], one)


@njit(parallel=True, cache=True)
def _negated_exp_loop(values, out):
    for i in prange(values.shape[0]):
        out[i] = np.exp(-values[i])


@njit(parallel=True, cache=True)
def _residual_gate_loop(x, channel_logit, spatial_logit, exp_neg_spatial, factored, out):
    """out = x + x·σ(Mc[n, c] + Ms[n, s]), i.e. BAM's (1 + σ(Mc + Ms)) ⊗ F."""
    N, C, S = x.shape
    one = x.dtype.type(1)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        value, out_row = x[n, c], out[n, c]
        # The output row holds σ first (it stays in L1), then x + x·σ.
        _residual_sigmoid_row(out_row, channel_logit[n, c], spatial_logit[n], exp_neg_spatial[n], factored, one)
        for s in range(S):
            out_row[s] = value[s] + value[s] * out_row[s]


@njit(parallel=True, cache=True)
def _residual_gate_backward_loop(grad, x, channel_logit, spatial_logit, exp_neg_spatial, factored,
                                 dx, dspatial, dchannel_parts):
    """σ = σ(Mc + Ms); dx = g·(1 + σ); dz = g·x·σ(1 - σ); dMs[n, s] = Σ_c dz; dMc[n, c] = Σ_s dz.

    A task is one sample and one pixel block: it owns dMs[n, block] and adds the
    channels in order; dMc needs every block, so each task writes its partial
    sum to dchannel_parts[n, block, c] and the blocks are added afterwards in
    order (the block layout depends on S only, never on the thread count).
    """
    N, C, S = x.shape
    one = x.dtype.type(1)
    blocks = dchannel_parts.shape[1]
    for task in prange(N * blocks):
        n = task // blocks
        block = task % blocks
        start = block * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        # Short loops over task-local rows (in L1): with fewer arrays per loop
        # LLVM can prove them independent and vectorises each (one fused loop
        # ran 7× slower).
        gate = np.empty(stop - start, x.dtype)
        dlogit = np.empty(stop - start, x.dtype)
        spatial_total = dspatial[n, start:stop]
        spatial_total[:] = 0
        ms, exp_neg_ms = spatial_logit[n, start:stop], exp_neg_spatial[n, start:stop]
        for c in range(C):
            upstream, value, dx_row = grad[n, c, start:stop], x[n, c, start:stop], dx[n, c, start:stop]
            _residual_sigmoid_row(gate, channel_logit[n, c], ms, exp_neg_ms, factored, one)
            for s in range(stop - start):
                dx_row[s] = upstream[s] * (one + gate[s])
            for s in range(stop - start):
                dlogit[s] = upstream[s] * value[s] * gate[s] * (one - gate[s])
            for s in range(stop - start):
                spatial_total[s] += dlogit[s]
            dchannel_parts[n, block, c] = _lane_sum(dlogit)


@njit(parallel=True, cache=True)
def _sum_blocks_loop(parts, total):
    """total[n, c] = Σ_block parts[n, block, c], blocks in order."""
    N, blocks, C = parts.shape
    for task in prange(N * C):
        n = task // C
        c = task % C
        acc = parts[n, 0, c]
        for block in range(1, blocks):
            acc += parts[n, block, c]
        total[n, c] = acc


def global_avg_max_pool_forward(x):
    """CBAM's two descriptors in one pass: ``(avg (N,C), max (N,C), index (N,C))``."""
    planes, nc = _planes("global_avg_max_pool_forward", x, is_max=True)
    avg, peak = np.empty(planes.shape[0], planes.dtype), np.empty(planes.shape[0], planes.dtype)
    index = np.empty(planes.shape[0], np.int64)
    _global_avg_max_pool_loop(planes, avg, peak, index)
    return avg.reshape(nc), peak.reshape(nc), index.reshape(nc)


def global_avg_max_pool_backward(grad_avg, grad_max, index, shape):
    kernel = "global_avg_max_pool_backward"
    grad_avg, shape, dx = _pooled_grad(kernel, grad_avg, shape)
    grad_max = _as_float(kernel, "grad_max", grad_max, 2, dx.dtype)
    _check_shape(kernel, "grad_max", grad_max, shape[:2])
    index = _as_index(kernel, "index", index, shape[:2], dx.shape[1])
    _global_avg_max_pool_backward_loop(grad_avg, grad_max.reshape(-1), index.reshape(-1), dx)
    return dx.reshape(shape)


def _gated_inputs(kernel, x, gate):
    x3, pooled_shape = _channels(kernel, x, is_max=True)
    gate = _as_float(kernel, "gate", gate, 2, x3.dtype)
    _check_shape(kernel, "gate", gate, x3.shape[:2])
    return x3, gate, pooled_shape


def channel_gate_and_pool_forward(x, gate):
    """``y = gate ⊗ x`` and CBAM's channel pool of y: ``(y, pooled (N,2,H,W) = [mean; max], index)``."""
    x3, gate, (N, _, H, W) = _gated_inputs("channel_gate_and_pool_forward", x, gate)
    y = np.empty_like(x3)
    pooled = np.empty((N, 2, H * W), x3.dtype)
    index = np.empty((N, H * W), np.int64)
    _channel_gate_and_pool_loop(x3, gate, y, pooled, index)
    return y.reshape(np.shape(x)), pooled.reshape(N, 2, H, W), index.reshape(N, 1, H, W)


def channel_gate_and_pool_backward(grad_y, grad_pooled, x, gate, index):
    """Returns ``(dx, dgate)``."""
    kernel = "channel_gate_and_pool_backward"
    x3, gate, (N, _, H, W) = _gated_inputs(kernel, x, gate)
    grad_y = _as_float(kernel, "grad_y", grad_y, 4, x3.dtype)
    _check_shape(kernel, "grad_y", grad_y, np.shape(x))
    grad_pooled = _as_float(kernel, "grad_pooled", grad_pooled, 4, x3.dtype)
    _check_shape(kernel, "grad_pooled", grad_pooled, (N, 2, H, W))
    index = _as_index(kernel, "index", index, (N, 1, H, W), x3.shape[1])
    dx = np.empty_like(x3)
    dgate = np.empty(gate.shape, x3.dtype)
    grad_pooled = grad_pooled.reshape(N, 2, H * W)
    mean_share = grad_pooled[:, 0] / x3.dtype.type(x3.shape[1])
    _channel_gate_and_pool_backward_loop(grad_y.reshape(x3.shape), mean_share, np.ascontiguousarray(grad_pooled[:, 1]),
                                         x3, gate, index.reshape(N, H * W), dx, dgate)
    return dx.reshape(np.shape(x)), dgate


def _residual_inputs(kernel, x, channel_logit, spatial_logit):
    x3, spatial_shape = _channels(kernel, x)
    channel_logit = _as_float(kernel, "channel_logit", channel_logit, 2, x3.dtype)
    _check_shape(kernel, "channel_logit", channel_logit, x3.shape[:2])
    spatial_logit = _as_float(kernel, "spatial_logit", spatial_logit, 4, x3.dtype)
    _check_shape(kernel, "spatial_logit", spatial_logit, spatial_shape)
    spatial_logit = spatial_logit.reshape(x3.shape[0], x3.shape[2])
    # Factor σ's exp when no logit is large enough for e^-Mc · e^-Ms to overflow
    # or underflow (always, in practice); otherwise one exp per element.
    bound = FACTORED_SIGMOID_BOUND[x3.dtype]
    factored = bool(np.abs(channel_logit).max() <= bound and np.abs(spatial_logit).max() <= bound)
    exp_neg_spatial = np.zeros(spatial_logit.shape, x3.dtype)  # read only when factored
    if factored:
        _negated_exp_loop(spatial_logit.reshape(-1), exp_neg_spatial.reshape(-1))
    return x3, channel_logit, spatial_logit, exp_neg_spatial, factored


def residual_gate_forward(x, channel_logit, spatial_logit):
    """BAM's output ``(1 + σ(Mc + Ms)) ⊗ x`` with Mc (N,C) and Ms (N,1,H,W) broadcast."""
    x3, *logits = _residual_inputs("residual_gate_forward", x, channel_logit, spatial_logit)
    out = np.empty_like(x3)
    _residual_gate_loop(x3, *logits, out)
    return out.reshape(np.shape(x))


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    """Returns ``(dx, dchannel_logit (N,C), dspatial_logit (N,1,H,W))``."""
    kernel = "residual_gate_backward"
    x3, *logits = _residual_inputs(kernel, x, channel_logit, spatial_logit)
    grad = _as_float(kernel, "grad", grad, 4, x3.dtype)
    _check_shape(kernel, "grad", grad, np.shape(x))
    N, C, S = x3.shape
    dx = np.empty_like(x3)
    dspatial = np.empty((N, S), x3.dtype)
    parts = np.empty((N, -(-S // PIXEL_BLOCK), C), x3.dtype)
    _residual_gate_backward_loop(grad.reshape(x3.shape), x3, *logits, dx, dspatial, parts)
    dchannel = np.empty((N, C), x3.dtype)
    _sum_blocks_loop(parts, dchannel)
    N, _, H, W = np.shape(x)
    return dx.reshape(N, C, H, W), dchannel, dspatial.reshape(N, 1, H, W)
