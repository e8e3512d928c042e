"""The register-blocked micro-kernels of the convs: tiles of sums held in machine vectors (:mod:`.simd`).

They hold a tile of sums in registers while they walk every tap: 4 output
channels × 4 vectors of positions for the forward (per tap: 4 loads, 4
broadcast weights, 16 multiply-adds), 4 output channels × 4 taps for the weight
gradient (per vector of positions: 4 loads of the gradient, 4 of the input, 16
multiply-adds). Each sum adds its terms in an order fixed by the shapes,
whichever task runs it. They read stacked planes (:mod:`.frames`) or anything
laid out like them: x itself for a 1×1 conv, the Winograd transforms.
"""
from __future__ import annotations

from numba import njit

from .simd import vector_fma, vector_load, vector_splat, vector_store, vector_sum, vector_width


@njit(cache=True)
def _four_output_rows(wide, co, q, flat_weight, offsets, planes, start):
    """wide[co + r, q + l] = start[co + r] + Σ_t flat_weight[co + r, t] · planes[offsets[t] + q + l],
    for r < 4 and l < 4W (W = vector_width): sixteen vectors of sums, taps added in order."""
    width = vector_width(planes)
    a00 = vector_splat(start[co])
    a10 = vector_splat(start[co + 1])
    a20 = vector_splat(start[co + 2])
    a30 = vector_splat(start[co + 3])
    a01 = a02 = a03 = a00
    a11 = a12 = a13 = a10
    a21 = a22 = a23 = a20
    a31 = a32 = a33 = a30
    for t in range(offsets.shape[0]):
        at = offsets[t] + q
        x0, x1 = vector_load(planes, at), vector_load(planes, at + width)
        x2, x3 = vector_load(planes, at + 2 * width), vector_load(planes, at + 3 * width)
        w0, w1 = vector_splat(flat_weight[co, t]), vector_splat(flat_weight[co + 1, t])
        w2, w3 = vector_splat(flat_weight[co + 2, t]), vector_splat(flat_weight[co + 3, t])
        a00, a01, a02, a03 = vector_fma(w0, x0, a00), vector_fma(w0, x1, a01), vector_fma(w0, x2, a02), vector_fma(w0, x3, a03)
        a10, a11, a12, a13 = vector_fma(w1, x0, a10), vector_fma(w1, x1, a11), vector_fma(w1, x2, a12), vector_fma(w1, x3, a13)
        a20, a21, a22, a23 = vector_fma(w2, x0, a20), vector_fma(w2, x1, a21), vector_fma(w2, x2, a22), vector_fma(w2, x3, a23)
        a30, a31, a32, a33 = vector_fma(w3, x0, a30), vector_fma(w3, x1, a31), vector_fma(w3, x2, a32), vector_fma(w3, x3, a33)
    _store_four(wide[co], q, width, a00, a01, a02, a03)
    _store_four(wide[co + 1], q, width, a10, a11, a12, a13)
    _store_four(wide[co + 2], q, width, a20, a21, a22, a23)
    _store_four(wide[co + 3], q, width, a30, a31, a32, a33)


@njit(cache=True)
def _one_output_row(wide, co, q, flat_weight, offsets, planes, start):
    """:func:`_four_output_rows` for the single row co: the channels of a group left over after the fours
    (a depthwise conv has one per group, CBAM's 7×7 one in all)."""
    width = vector_width(planes)
    a0 = a1 = a2 = a3 = vector_splat(start[co])
    for t in range(offsets.shape[0]):
        at = offsets[t] + q
        w = vector_splat(flat_weight[co, t])
        a0, a1 = vector_fma(w, vector_load(planes, at), a0), vector_fma(w, vector_load(planes, at + width), a1)
        a2 = vector_fma(w, vector_load(planes, at + 2 * width), a2)
        a3 = vector_fma(w, vector_load(planes, at + 3 * width), a3)
    _store_four(wide[co], q, width, a0, a1, a2, a3)


@njit(cache=True, inline="always")
def _store_four(row, q, width, v0, v1, v2, v3):
    vector_store(row, q, v0)
    vector_store(row, q + width, v1)
    vector_store(row, q + 2 * width, v2)
    vector_store(row, q + 3 * width, v3)


@njit(cache=True)
def _group_outputs(wide, g, per_group, lo, hi, flat_weight, offsets, planes, start):
    """wide[co, q] = start[co] + Σ_t flat_weight[co, t] · planes[offsets[t] + q] for the outputs co of group
    g and lo <= q < hi (a multiple of POSITION_QUANTUM apart): four rows at a time, then the lone ones."""
    step = 4 * vector_width(wide)
    fours_end = (g + 1) * per_group - per_group % 4
    for co in range(g * per_group, fours_end, 4):
        for q in range(lo, hi, step):
            _four_output_rows(wide, co, q, flat_weight, offsets, planes, start)
    for co in range(fours_end, (g + 1) * per_group):
        for q in range(lo, hi, step):
            _one_output_row(wide, co, q, flat_weight, offsets, planes, start)


@njit(cache=True)
def _four_by_four_dots(grad_wide, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t):
    """partial[co + r, t + k] = Σ_{lo <= q < hi} g[co + r, u + q] · planes[s_k + q] for r, k < 4 (as many
    k as fit in partial): vector lanes of running sums, then each vector's lanes in a fixed tree."""
    width = vector_width(planes)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = vector_splat(planes.dtype.type(0))
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = a00
    g0, g1, g2, g3 = grad_wide[co], grad_wide[co + 1], grad_wide[co + 2], grad_wide[co + 3]
    for q in range(lo, hi, width):
        at = u + q
        u0, u1, u2, u3 = vector_load(g0, at), vector_load(g1, at), vector_load(g2, at), vector_load(g3, at)
        x0, x1 = vector_load(planes, s0 + q), vector_load(planes, s1 + q)
        x2, x3 = vector_load(planes, s2 + q), vector_load(planes, s3 + q)
        a00, a01, a02, a03 = vector_fma(u0, x0, a00), vector_fma(u0, x1, a01), vector_fma(u0, x2, a02), vector_fma(u0, x3, a03)
        a10, a11, a12, a13 = vector_fma(u1, x0, a10), vector_fma(u1, x1, a11), vector_fma(u1, x2, a12), vector_fma(u1, x3, a13)
        a20, a21, a22, a23 = vector_fma(u2, x0, a20), vector_fma(u2, x1, a21), vector_fma(u2, x2, a22), vector_fma(u2, x3, a23)
        a30, a31, a32, a33 = vector_fma(u3, x0, a30), vector_fma(u3, x1, a31), vector_fma(u3, x2, a32), vector_fma(u3, x3, a33)
    _store_sums(partial[co], t, a00, a01, a02, a03)
    _store_sums(partial[co + 1], t, a10, a11, a12, a13)
    _store_sums(partial[co + 2], t, a20, a21, a22, a23)
    _store_sums(partial[co + 3], t, a30, a31, a32, a33)


@njit(cache=True)
def _one_by_four_dots(grad_wide, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t):
    """:func:`_four_by_four_dots` for the single output channel co."""
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
    fours_end = (g + 1) * per_group - per_group % 4
    for co in range(g * per_group, fours_end, 4):
        _four_by_four_dots(grad_rows, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t)
    for co in range(fours_end, (g + 1) * per_group):
        _one_by_four_dots(grad_rows, u, co, planes, s0, s1, s2, s3, lo, hi, partial, t)
