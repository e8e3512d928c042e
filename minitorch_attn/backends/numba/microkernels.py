"""The register-blocked micro-kernels of the convs: tiles of sums held in machine vectors (:mod:`.simd`).

They hold a block of sums in registers while they walk every tap: 4 output
channels × 2 tiles of positions for the forward (per tap: 2 loads, 4 broadcast
weights, 8 multiply-adds of tiles), 2 output channels × 4 taps for the weight
gradient (per tile of positions: 2 loads of the gradient, 4 of the input, 8
multiply-adds). A tile (:data:`~.simd.TILE_BYTES`) is one vector register with
AVX2 and two with AVX-512, so the 8 tiles of sums fill half of either machine's
registers. Each sum adds its terms in an order fixed by the shapes, whichever
task runs it. They read stacked planes (:mod:`.frames`) or anything laid out
like them: x itself for a 1×1 conv, the Winograd transforms.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .simd import tile_load, tile_splat, tile_width, vector_fma, vector_load, vector_splat, vector_store, vector_sum, \
    vector_width


@njit(cache=True)
def _four_output_rows(wide, co, q, flat_weight, offsets, planes, start):
    """wide[co + r, q + l] = start[co + r] + Σ_t flat_weight[co + r, t] · planes[offsets[t] + q + l],
    for r < 4 and l < 2T (T = tile_width): eight tiles of sums, taps added in order."""
    width = tile_width(planes)
    s0, s1 = tile_splat(start[co]), tile_splat(start[co + 1])
    s2, s3 = tile_splat(start[co + 2]), tile_splat(start[co + 3])
    sums = (s0, s0, s1, s1, s2, s2, s3, s3)
    for t in range(offsets.shape[0]):
        at = offsets[t] + q
        sums = _four_by_two(tile_splat(flat_weight[co, t]), tile_splat(flat_weight[co + 1, t]),
                            tile_splat(flat_weight[co + 2, t]), tile_splat(flat_weight[co + 3, t]),
                            tile_load(planes, at), tile_load(planes, at + width), sums)
    _store_four_by_two(wide, co, q, width, sums)


@njit(cache=True, inline="always")
def _four_by_two(s0, s1, s2, s3, v0, v1, sums):
    """One multiply-add into each of the 4 × 2 tiles of sums that the micro-kernels hold:
    sums[2r + j] + s_r · v_j, for r < 4 and j < 2."""
    a00, a01, a10, a11, a20, a21, a30, a31 = sums
    return (vector_fma(s0, v0, a00), vector_fma(s0, v1, a01), vector_fma(s1, v0, a10), vector_fma(s1, v1, a11),
            vector_fma(s2, v0, a20), vector_fma(s2, v1, a21), vector_fma(s3, v0, a30), vector_fma(s3, v1, a31))


@njit(cache=True, inline="always")
def _store_four_by_two(rows, first, column, width, sums):
    """rows[first + r, column + l] = lane l of the tiles sums[2r], sums[2r + 1] (l < 2T), for r < 4."""
    _store_two(rows[first], column, width, sums[0], sums[1])
    _store_two(rows[first + 1], column, width, sums[2], sums[3])
    _store_two(rows[first + 2], column, width, sums[4], sums[5])
    _store_two(rows[first + 3], column, width, sums[6], sums[7])


@njit(cache=True, inline="always")
def _store_two(row, q, width, v0, v1):
    vector_store(row, q, v0)
    vector_store(row, q + width, v1)


@njit(cache=True)
def _one_output_row(wide, co, q, flat_weight, offsets, planes, start):
    """wide[co, q + l] = start[co] + Σ_t flat_weight[co, t] · planes[offsets[t] + q + l] for l < 4W (W =
    vector_width): the channels of a group left over after the fours (a depthwise conv has one per group,
    CBAM's 7×7 one in all). Four vectors, not two tiles: one row of two AVX2 tiles is two chains of
    multiply-adds, each waiting on its last."""
    width = vector_width(planes)
    a0 = a1 = a2 = a3 = vector_splat(start[co])
    for t in range(offsets.shape[0]):
        at = offsets[t] + q
        w = vector_splat(flat_weight[co, t])
        a0, a1 = vector_fma(w, vector_load(planes, at), a0), vector_fma(w, vector_load(planes, at + width), a1)
        a2 = vector_fma(w, vector_load(planes, at + 2 * width), a2)
        a3 = vector_fma(w, vector_load(planes, at + 3 * width), a3)
    _store_two(wide[co], q, width, a0, a1)
    _store_two(wide[co], q + 2 * width, width, a2, a3)


#: Positions every output channel of a group sweeps before the next positions (a multiple of
#: POSITION_QUANTUM), so that the input rows the first block of four channels brought into cache are
#: still there for the others. Sweeping each block over a task's whole run took 5–15% longer (Zen 3).
KERNEL_RUN = 128


@njit(cache=True)
def _group_outputs(wide, g, per_group, lo, hi, flat_weight, offsets, planes, start):
    """wide[co, q] = start[co] + Σ_t flat_weight[co, t] · planes[offsets[t] + q] for the outputs co of group
    g and lo <= q < hi (a multiple of POSITION_QUANTUM apart): four rows at a time, then the lone ones."""
    fours_end = (g + 1) * per_group - per_group % 4
    four_step, one_step = 2 * tile_width(wide), 4 * vector_width(wide)
    for run in range(lo, hi, KERNEL_RUN):
        end = min(hi, run + KERNEL_RUN)
        for co in range(g * per_group, fours_end, 4):
            for q in range(run, end, four_step):
                _four_output_rows(wide, co, q, flat_weight, offsets, planes, start)
        for co in range(fours_end, (g + 1) * per_group):
            for q in range(run, end, one_step):
                _one_output_row(wide, co, q, flat_weight, offsets, planes, start)


@njit(cache=True)
def _two_by_four_dots(grad_wide, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t):
    """partial[co + r, t + k] = Σ_{lo <= q < hi} g[co + r, u + q] · planes[s_k + q] for r < 2, k < 4 (as many
    k as fit in partial): tile lanes of running sums, then each tile's lanes in a fixed tree."""
    width = tile_width(planes)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = tile_splat(planes.dtype.type(0))
    g0, g1 = grad_wide[co], grad_wide[co + 1]
    for q in range(lo, hi, width):
        u0, u1 = tile_load(g0, u + q), tile_load(g1, u + q)
        x0, x1 = tile_load(planes, s0 + q), tile_load(planes, s1 + q)
        x2, x3 = tile_load(planes, s2 + q), tile_load(planes, s3 + q)
        a00, a01, a02, a03 = vector_fma(u0, x0, a00), vector_fma(u0, x1, a01), vector_fma(u0, x2, a02), vector_fma(u0, x3, a03)
        a10, a11, a12, a13 = vector_fma(u1, x0, a10), vector_fma(u1, x1, a11), vector_fma(u1, x2, a12), vector_fma(u1, x3, a13)
    _store_sums(partial[co], t, a00, a01, a02, a03)
    _store_sums(partial[co + 1], t, a10, a11, a12, a13)


@njit(cache=True)
def _one_by_four_dots(grad_wide, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t):
    """:func:`_two_by_four_dots` for the single output channel co (vectors, not tiles: see
    :func:`_one_output_row`)."""
    width = vector_width(planes)
    a0 = a1 = a2 = a3 = vector_splat(planes.dtype.type(0))
    g0 = grad_wide[co]
    for q in range(lo, hi, width):
        v = vector_load(g0, u + q)
        a0, a1 = vector_fma(v, vector_load(planes, s0 + q), a0), vector_fma(v, vector_load(planes, s1 + q), a1)
        a2, a3 = vector_fma(v, vector_load(planes, s2 + q), a2), vector_fma(v, vector_load(planes, s3 + q), a3)
    _store_sums(partial[co], t, a0, a1, a2, a3)


@njit(cache=True, inline="always")
def _store_sums(row, t, v0, v1, v2, v3):
    """row[t + k] = the lane sum of v_k, for the k < 4 that fit in row (a last group of taps repeats its
    last tap to make four, and drops the repeats here)."""
    row[t] = vector_sum(v0)
    if t + 1 < row.shape[0]:
        row[t + 1] = vector_sum(v1)
    if t + 2 < row.shape[0]:
        row[t + 2] = vector_sum(v2)
    if t + 3 < row.shape[0]:
        row[t + 3] = vector_sum(v3)


@njit(cache=True)
def _group_weight_grads(grad_rows, u, g, per_group, planes, offsets, t, lo, hi, partial):
    """partial[co, t + k] = Σ_{lo <= q < hi} grad_rows[co, u + q] · planes[offsets[t + k] + q] for the outputs co
    of group g and the four taps from t (a last group of fewer repeats its last tap, and drops the repeats)."""
    last = offsets.shape[0] - 1
    s0, s1, s2, s3 = offsets[t], offsets[min(t + 1, last)], offsets[min(t + 2, last)], offsets[min(t + 3, last)]
    pairs_end = (g + 1) * per_group - per_group % 2
    for co in range(g * per_group, pairs_end, 2):
        _two_by_four_dots(grad_rows, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t)
    for co in range(pairs_end, (g + 1) * per_group):
        _one_by_four_dots(grad_rows, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t)


@njit(cache=True)
def _four_pixels(out, p, co, x, bases, tap_offsets, C, weight, t0, t1, start):
    """The channels-last conv of :mod:`.pixels`, for out rows p..p+3 and channels co..co+2T−1 (T = tile_width):
    out[p + r, co + l] (+)= Σ_{t0 <= t < t1} Σ_ci x[bases[p + r] + tap_offsets[t] + ci] · weight[t·C + ci, co + l],
    x flat and the weights in panels of 2T columns (:func:`.pixels.weight_panels`), starting from start[co + l]
    when t0 = 0 and from out itself after: a conv's taps may come in several calls and add in the same order
    as in one."""
    width = tile_width(weight)
    step, rows = 2 * width, tap_offsets.shape[0] * C
    if t0 == 0:
        first, second = tile_load(start, co), tile_load(start, co + width)
        sums = (first, second, first, second, first, second, first, second)
    else:
        sums = (tile_load(out[p], co), tile_load(out[p], co + width), tile_load(out[p + 1], co),
                tile_load(out[p + 1], co + width), tile_load(out[p + 2], co), tile_load(out[p + 2], co + width),
                tile_load(out[p + 3], co), tile_load(out[p + 3], co + width))
    # Unsigned indices: a signed one is checked for wrap-around, which cost a third of the speed here.
    b0, b1, b2, b3 = np.uint64(bases[p]), np.uint64(bases[p + 1]), np.uint64(bases[p + 2]), np.uint64(bases[p + 3])
    k = (co // step * rows + t0 * C) * step
    for t in range(t0, t1):
        for ci in range(C):
            at = np.uint64(tap_offsets[t] + ci)
            sums = _four_by_two(tile_splat(x[b0 + at]), tile_splat(x[b1 + at]), tile_splat(x[b2 + at]),
                                tile_splat(x[b3 + at]), tile_load(weight, k), tile_load(weight, k + width), sums)
            k += step
    _store_four_by_two(out, p, co, width, sums)


@njit(cache=True)
def _four_channel_dots(grad, grad_bases, co, x, bases, at, lo, hi, partial, k):
    """The channels-last weight gradient of :mod:`.pixels`: partial[k + r, co + l] = Σ_{lo <= p < hi}
    x[bases[p] + at + r] · grad[grad_bases[p] + co + l] for r < 4, l < 2T, pixels added in order."""
    width = tile_width(grad)
    zero = tile_splat(grad.dtype.type(0))
    sums = (zero, zero, zero, zero, zero, zero, zero, zero)
    one = np.uint64(1)  # unsigned, as in _four_pixels: a signed b + 1 is checked for wrap-around
    for p in range(np.uint64(lo), np.uint64(hi)):
        g = np.uint64(grad_bases[p] + co)
        b = np.uint64(bases[p] + at)
        sums = _four_by_two(tile_splat(x[b]), tile_splat(x[b + one]), tile_splat(x[b + np.uint64(2)]),
                            tile_splat(x[b + np.uint64(3)]), tile_load(grad, g), tile_load(grad, g + width), sums)
    _store_four_by_two(partial, k, co, width, sums)
