"""Shared loops over one contiguous row: the lane reductions, the row updates of the matrix
products, the NaN-aware first maximum, the overflow-free sigmoid, and the pixel blocks."""
from __future__ import annotations

import numpy as np
from numba import njit

#: Pixels per task in the loops that reduce over channels. Such a task walks
#: the channels, reading a segment of this many pixels from each plane: long
#: segments keep the hardware prefetchers streaming (256-pixel segments made
#: BAM's residual-gate backward 2× slower at 28×28). A batch of one then has
#: few tasks (H·W / 1024); the benchmarked batches have 8 or more.
PIXEL_BLOCK = 1024


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
