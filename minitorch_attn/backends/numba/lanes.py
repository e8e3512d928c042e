"""Shared loops over one contiguous row: the lane reductions, the row updates of the matrix
products, the NaN-aware first maximum, the overflow-free sigmoid, and the pixel blocks."""
from __future__ import annotations

import numpy as np
from numba import njit

from .simd import (vector_add, vector_fma, vector_load, vector_max, vector_peak, vector_splat, vector_sub, vector_sum,
                   vector_width)

#: Pixels per task in the loops that reduce over channels. Such a task walks
#: the channels, reading a segment of this many pixels from each plane: long
#: segments keep the hardware prefetchers streaming (256-pixel segments made
#: BAM's residual-gate backward 2× slower at 28×28). A batch of one then has
#: few tasks (H·W / 1024); the benchmarked batches have 8 or more.
PIXEL_BLOCK = 1024


@njit(cache=True)
def _lane_sum(row):
    """Σ row over a contiguous row: two machine vectors of running sums (:mod:`.simd`), then one vector
    for what is left of 2W, then the last < W elements one by one; the vectors are added in their
    fixed halving tree. The order depends on the length and the vector width W only.
    """
    W = vector_width(row)
    n = row.shape[0]
    zero = row.dtype.type(0)
    a0 = a1 = vector_splat(zero)
    pairs = n - n % (2 * W)
    for i in range(0, pairs, 2 * W):
        a0 = vector_add(a0, vector_load(row, i))
        a1 = vector_add(a1, vector_load(row, i + W))
    whole = n - n % W
    if whole > pairs:
        a0 = vector_add(a0, vector_load(row, pairs))
    tail = zero
    for i in range(whole, n):
        tail += row[i]
    return vector_sum(vector_add(a0, a1)) + tail


@njit(cache=True)
def _lane_dot(a, b):
    """Σ a·b over two contiguous rows of equal length, in :func:`_lane_sum`'s order (each product
    added with one rounding, ``fma``)."""
    W = vector_width(a)
    n = a.shape[0]
    zero = a.dtype.type(0)
    a0 = a1 = vector_splat(zero)
    pairs = n - n % (2 * W)
    for i in range(0, pairs, 2 * W):
        a0 = vector_fma(vector_load(a, i), vector_load(b, i), a0)
        a1 = vector_fma(vector_load(a, i + W), vector_load(b, i + W), a1)
    whole = n - n % W
    if whole > pairs:
        a0 = vector_fma(vector_load(a, pairs), vector_load(b, pairs), a0)
    tail = zero
    for i in range(whole, n):
        tail += a[i] * b[i]
    return vector_sum(vector_add(a0, a1)) + tail


@njit(cache=True)
def _lane_centered_squares(row, centre):
    """Σ (row - centre)² over a contiguous row, in :func:`_lane_sum`'s order (the variance's second pass:
    no cancellation, and no row of deviations written out to be read back)."""
    W = vector_width(row)
    n = row.shape[0]
    zero = row.dtype.type(0)
    a0 = a1 = vector_splat(zero)
    c = vector_splat(centre)
    pairs = n - n % (2 * W)
    for i in range(0, pairs, 2 * W):
        d0, d1 = vector_sub(vector_load(row, i), c), vector_sub(vector_load(row, i + W), c)
        a0, a1 = vector_fma(d0, d0, a0), vector_fma(d1, d1, a1)
    whole = n - n % W
    if whole > pairs:
        d0 = vector_sub(vector_load(row, pairs), c)
        a0 = vector_fma(d0, d0, a0)
    tail = zero
    for i in range(whole, n):
        tail += (row[i] - centre) * (row[i] - centre)
    return vector_sum(vector_add(a0, a1)) + tail


@njit(cache=True)
def _lane_sum_and_dot(a, b):
    """``(Σ a, Σ a·b)`` over two contiguous rows of equal length in one read, each in :func:`_lane_dot`'s order."""
    W = vector_width(a)
    n = a.shape[0]
    zero = a.dtype.type(0)
    s0 = s1 = d0 = d1 = vector_splat(zero)
    pairs = n - n % (2 * W)
    for i in range(0, pairs, 2 * W):
        u0, u1 = vector_load(a, i), vector_load(a, i + W)
        s0, s1 = vector_add(s0, u0), vector_add(s1, u1)
        d0, d1 = vector_fma(u0, vector_load(b, i), d0), vector_fma(u1, vector_load(b, i + W), d1)
    whole = n - n % W
    if whole > pairs:
        u0 = vector_load(a, pairs)
        s0, d0 = vector_add(s0, u0), vector_fma(u0, vector_load(b, pairs), d0)
    sum_tail = dot_tail = zero
    for i in range(whole, n):
        sum_tail += a[i]
        dot_tail += a[i] * b[i]
    return vector_sum(vector_add(s0, s1)) + sum_tail, vector_sum(vector_add(d0, d1)) + dot_tail


@njit(cache=True)
def _sum_and_first_max(row):
    """``(Σ row, max row, index of the first maximum)`` in one read of a non-empty contiguous ``row``.

    The sum is :func:`_lane_sum`'s. For the max, the row goes by chunks of 2W
    (two vectors): the lanes' maxima of a chunk are reduced to one number, and
    the running maximum moves only on a strictly larger chunk maximum, so it
    remembers the FIRST chunk that reached the final maximum; the first maximum
    is the first element of that chunk equal to it. (Comparing every element
    with the running maximum, or keeping an index per lane, is a dependent
    chain LLVM cannot vectorise: one element per cycle, 3× slower than reading
    the row.) A NaN anywhere makes the sum NaN, so the scan for the first NaN
    (which is then the maximum) costs one test on rows without one; a NaN sum
    from inf - inf finds none, and the maximum found above stands.
    """
    W = vector_width(row)
    n = row.shape[0]
    zero = row.dtype.type(0)
    a0 = a1 = vector_splat(zero)
    peak = row[0]
    peak_chunk = 0
    pairs = n - n % (2 * W)
    for i in range(0, pairs, 2 * W):
        v0, v1 = vector_load(row, i), vector_load(row, i + W)
        a0, a1 = vector_add(a0, v0), vector_add(a1, v1)
        chunk_peak = vector_peak(vector_max(v0, v1))
        if chunk_peak > peak:
            peak, peak_chunk = chunk_peak, i
    whole = n - n % W
    if whole > pairs:
        v0 = vector_load(row, pairs)
        a0 = vector_add(a0, v0)
        chunk_peak = vector_peak(v0)
        if chunk_peak > peak:
            peak, peak_chunk = chunk_peak, pairs
    tail = zero
    for i in range(whole, n):
        tail += row[i]
        if row[i] > peak:
            peak, peak_chunk = row[i], i
    total = vector_sum(vector_add(a0, a1)) + tail
    if np.isnan(total):
        for i in range(n):
            if np.isnan(row[i]):
                return total, row[i], i
    where = peak_chunk
    while row[where] != peak:  # fewer than 2W steps, inside one chunk
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


@njit(cache=True)
def _add_scaled(dest, scale, source):
    """dest += scale · source for two rows of equal length."""
    for i in range(dest.shape[0]):
        dest[i] += scale * source[i]


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
