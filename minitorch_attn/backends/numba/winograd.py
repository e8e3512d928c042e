"""Winograd F(2×2, 3×3): a 3×3 conv of stride 1 and padding 1 with 16 multiplications per 2×2 outputs, not 36.

Cut the output into 2×2 tiles. Tile (i, j) reads the 4×4 input tile d at rows
2i − 1 .. 2i + 2 and columns 2j − 1 .. 2j + 2, and (Lavin & Gray 2016)

    Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A,

    Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]],
    G  = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]],
    Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],

with g_c the 3×3 kernel of input channel c and ⊙ elementwise over the 4×4
transform positions ξ. So the conv becomes 16 matrix products, one per ξ:
M_ξ[co, tile] = Σ_c U_ξ[co, c] · V_ξ[c, tile], each run by the forward
micro-kernel of :mod:`.microkernels` (U = G g Gᵀ is the weight, c the tap).
Every entry of B, G and A is 0, ±1 or ±½, exact in binary. In float32 the
largest error, over the largest output, was 2–5·10⁻⁷ on the backbone's shapes,
against float64 PyTorch; the direct loops' longer sums (9C terms, not C) gave
7·10⁻⁷–2·10⁻⁶.

The tiles live in a :class:`~.frames._Frame`: x stacked in its four phases
(even/odd rows × even/odd columns), so that element (r, s) of every tile, for a
vector of consecutive tiles, is one contiguous load (a 4-tap, stride-2 axis:
tap r reads phase (r − 1) mod 2 at tile row i + ⌊(r − 1)/2⌋). A task transforms
a chunk of tiles, multiplies, and transforms back while the chunk is in cache;
the four output phases are then put back in NCHW.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .frames import POSITION_QUANTUM, _Axis, _Frame, _task_positions, _unstack_loop, task_count
from .microkernels import _group_outputs
from .simd import vector_add, vector_load, vector_splat, vector_store, vector_sub, vector_width

#: The 3×3 convs with at least this many input and output channels take the Winograd path. With 16, the
#: transforms cost as much as the multiplications they save (64×16×32×32, 1 thread: 4.7 ms, direct 4.5).
WINOGRAD_MIN_CHANNELS = 32

#: Bytes of transformed tiles (input and output) one task keeps: up to half of a 1 MiB L2 cache. A conv
#: whose smallest chunk (POSITION_QUANTUM tiles) needs more stays direct: at 128 channels in and out the
#: Winograd conv of 64×128×4×4 took 5.3 ms on 1 thread and 8.2 on 2, the direct one 4.6 and 2.9.
WINOGRAD_CHUNK_BYTES = 512 * 1024


def winograd_fits(C, CO, dtype):
    """Whether a 3×3 "same" conv of C input and CO output channels takes :func:`winograd_conv3x3`."""
    scratch = 16 * (C + CO) * POSITION_QUANTUM * np.dtype(dtype).itemsize
    return min(C, CO) >= WINOGRAD_MIN_CHANNELS and scratch <= WINOGRAD_CHUNK_BYTES


@njit(cache=True, inline="always")
def _b_transpose(d0, d1, d2, d3):
    """Bᵀ · (d0, d1, d2, d3)."""
    return vector_sub(d0, d2), vector_add(d1, d2), vector_sub(d2, d1), vector_sub(d1, d3)


@njit(cache=True, inline="always")
def _a_transpose(m0, m1, m2, m3):
    """Aᵀ · (m0, m1, m2, m3)."""
    return vector_add(vector_add(m0, m1), m2), vector_sub(vector_sub(m1, m2), m3)


@njit(cache=True, inline="always")
def _tile_row(odd, even, at, o0, o1, o2, o3):
    """Row r of the input tiles at ``at``: its columns 0..3 read the odd, even, odd, even column phases."""
    return (vector_load(odd, at + o0), vector_load(even, at + o1), vector_load(odd, at + o2),
            vector_load(even, at + o3))


@njit(cache=True)
def _input_transform(planes, c, offsets, lo, count, tiles, at, stride):
    """tiles[ξ·stride + at + q] = (Bᵀ d B)[ξ] for the input tiles d of channel c at positions lo + q, q < count.

    planes are x's phase planes, channel-major, phases (row, column) in the order (0, 0), (0, 1), (1, 0),
    (1, 1); offsets[4r + s] is where element (r, s) of a tile is read from its position. ``tiles`` is flat,
    its rows ξ ``stride`` apart (padded: see :func:`_winograd_loop`)."""
    width = vector_width(planes)
    even_even, even_odd, odd_even, odd_odd = planes[4 * c], planes[4 * c + 1], planes[4 * c + 2], planes[4 * c + 3]
    for q in range(0, count, width):
        source = lo + q
        # rows 0 and 2 of a tile are odd input rows, 1 and 3 even ones; columns alike
        d00, d01, d02, d03 = _tile_row(odd_odd, odd_even, source, offsets[0], offsets[1], offsets[2], offsets[3])
        d10, d11, d12, d13 = _tile_row(even_odd, even_even, source, offsets[4], offsets[5], offsets[6], offsets[7])
        d20, d21, d22, d23 = _tile_row(odd_odd, odd_even, source, offsets[8], offsets[9], offsets[10], offsets[11])
        d30, d31, d32, d33 = _tile_row(even_odd, even_even, source, offsets[12], offsets[13], offsets[14],
                                       offsets[15])
        # Bᵀ d, one column at a time, then (Bᵀ d) B, one row at a time
        t00, t10, t20, t30 = _b_transpose(d00, d10, d20, d30)
        t01, t11, t21, t31 = _b_transpose(d01, d11, d21, d31)
        t02, t12, t22, t32 = _b_transpose(d02, d12, d22, d32)
        t03, t13, t23, t33 = _b_transpose(d03, d13, d23, d33)
        _store_row(tiles, at + q, stride, 0, _b_transpose(t00, t01, t02, t03))
        _store_row(tiles, at + q, stride, 4, _b_transpose(t10, t11, t12, t13))
        _store_row(tiles, at + q, stride, 8, _b_transpose(t20, t21, t22, t23))
        _store_row(tiles, at + q, stride, 12, _b_transpose(t30, t31, t32, t33))


@njit(cache=True, inline="always")
def _store_row(tiles, at, stride, first, row):
    v0, v1, v2, v3 = row
    vector_store(tiles, first * stride + at, v0)
    vector_store(tiles, (first + 1) * stride + at, v1)
    vector_store(tiles, (first + 2) * stride + at, v2)
    vector_store(tiles, (first + 3) * stride + at, v3)


@njit(cache=True, inline="always")
def _load_row(products, at, stride, first):
    return (vector_load(products, first * stride + at), vector_load(products, (first + 1) * stride + at),
            vector_load(products, (first + 2) * stride + at), vector_load(products, (first + 3) * stride + at))


@njit(cache=True)
def _output_transform(products, at, stride, count, bias, wide, to, phase_stride):
    """wide[(2a + b)·phase_stride + to + q] = bias + (Aᵀ M A)[a, b] for the products
    M[ξ] = products[ξ·stride + at + q] of the tiles, q < count (both arrays flat)."""
    width = vector_width(wide)
    start = vector_splat(bias)
    for q in range(0, count, width):
        m00, m01, m02, m03 = _load_row(products, at + q, stride, 0)
        m10, m11, m12, m13 = _load_row(products, at + q, stride, 4)
        m20, m21, m22, m23 = _load_row(products, at + q, stride, 8)
        m30, m31, m32, m33 = _load_row(products, at + q, stride, 12)
        # Aᵀ M, one column at a time, then (Aᵀ M) A, one row at a time
        s00, s10 = _a_transpose(m00, m10, m20, m30)
        s01, s11 = _a_transpose(m01, m11, m21, m31)
        s02, s12 = _a_transpose(m02, m12, m22, m32)
        s03, s13 = _a_transpose(m03, m13, m23, m33)
        y00, y01 = _a_transpose(s00, s01, s02, s03)
        y10, y11 = _a_transpose(s10, s11, s12, s13)
        vector_store(wide, to + q, vector_add(start, y00))
        vector_store(wide, phase_stride + to + q, vector_add(start, y01))
        vector_store(wide, 2 * phase_stride + to + q, vector_add(start, y10))
        vector_store(wide, 3 * phase_stride + to + q, vector_add(start, y11))


@njit(parallel=True, cache=True)
def _winograd_loop(planes, transformed_weight, bias, offsets, length, tasks, wide):
    """wide[(a, b), co, q] = output pixel (2i + a, 2j + b) of the tile at position q, for q < length.

    planes (4·C, positions): x's phase planes; transformed_weight (16, CO, C): U_ξ = (G g Gᵀ)_ξ. Each of the
    ``tasks`` owns a run of positions: it transforms their input tiles, runs the 16 products and transforms
    them back, all within its own scratch rows."""
    C = planes.shape[0] // 4
    CO, positions = transformed_weight.shape[1], wide.shape[2]
    most = -(-(length // POSITION_QUANTUM) // tasks) * POSITION_QUANTUM  # the longest run
    # The 16 rows ξ of the scratch arrays are 16 elements longer than the data: rows a power of two apart
    # map to the same L1 set, and the transforms' 16 streams then evicted each other (5× slower).
    tile_stride, product_stride = C * most + 16, CO * most + 16
    taps = np.arange(C) * most
    zero = np.zeros(CO, planes.dtype)
    flat_wide = wide.reshape(-1)
    for task in prange(tasks):
        lo, hi = _task_positions(task, tasks, length)
        tiles = np.empty(16 * tile_stride, planes.dtype)
        products = np.empty(16 * product_stride, planes.dtype)
        for c in range(C):
            _input_transform(planes, c, offsets, lo, hi - lo, tiles, c * most, tile_stride)
        for xi in range(16):
            product = products[xi * product_stride:xi * product_stride + CO * most].reshape(CO, most)
            _group_outputs(product, 0, CO, 0, hi - lo, transformed_weight[xi], taps,
                           tiles[xi * tile_stride:(xi + 1) * tile_stride], zero)
        for co in range(CO):
            _output_transform(products, co * most, product_stride, hi - lo, bias[co], flat_wide,
                              co * positions + lo, CO * positions)


@njit(cache=True, inline="always")
def _g_times(a, b, c):
    """G · (a, b, c)."""
    return a, (a + b + c) * 0.5, (a - b + c) * 0.5, c


@njit(parallel=True, cache=True)
def _weight_transform_loop(weight, adjoint, transformed):
    """transformed[4i + j, o, c] = (G g Gᵀ)[i, j] for g = weight[o, c], or for the adjoint conv's kernel
    g = weight[c, o] turned by 180° (the input gradient's): in float64, rounded once to weight's dtype."""
    outputs, inputs = transformed.shape[1:]
    for o in prange(outputs):
        for c in range(inputs):
            g = weight[c, o, ::-1, ::-1] if adjoint else weight[o, c]
            # G g: each column of g in turn, then (G g) Gᵀ: each row of G g
            a0, a1, a2, a3 = _g_times(np.float64(g[0, 0]), np.float64(g[1, 0]), np.float64(g[2, 0]))
            b0, b1, b2, b3 = _g_times(np.float64(g[0, 1]), np.float64(g[1, 1]), np.float64(g[2, 1]))
            d0, d1, d2, d3 = _g_times(np.float64(g[0, 2]), np.float64(g[1, 2]), np.float64(g[2, 2]))
            _store_transformed(transformed, 0, o, c, _g_times(a0, b0, d0))
            _store_transformed(transformed, 4, o, c, _g_times(a1, b1, d1))
            _store_transformed(transformed, 8, o, c, _g_times(a2, b2, d2))
            _store_transformed(transformed, 12, o, c, _g_times(a3, b3, d3))


@njit(cache=True, inline="always")
def _store_transformed(transformed, first, o, c, row):
    u0, u1, u2, u3 = row
    transformed[first, o, c] = u0
    transformed[first + 1, o, c] = u1
    transformed[first + 2, o, c] = u2
    transformed[first + 3, o, c] = u3


def transformed_weight(weight, adjoint=False):
    """U_ξ = (G g Gᵀ)_ξ of each 3×3 kernel of ``weight`` (CO, C, 3, 3): (16, CO, C), or with ``adjoint`` the
    kernels of the input gradient's conv (channels swapped, turned by 180°): (16, C, CO)."""
    outputs, inputs = weight.shape[:2][::-1] if adjoint else weight.shape[:2]
    transformed = np.empty((16, outputs, inputs), weight.dtype)
    _weight_transform_loop(weight, adjoint, transformed)
    return transformed


def winograd_conv3x3(x, weight, bias, adjoint=False):
    """out = conv2d(x, weight, bias, stride=1, padding=1) for a 3×3 weight (CO, C, 3, 3), x (N, C, H, W)
    and bias (CO,), by Winograd F(2×2, 3×3): (N, CO, H, W). With ``adjoint``, the input gradient of that
    conv instead, for x the output gradient (N, CO, H, W) and bias (C,) zeros: (N, C, H, W), the same conv
    with the kernels' channels swapped and turned by 180°."""
    N, C, H, W = x.shape
    CO = weight.shape[1] if adjoint else weight.shape[0]
    # A tile's rows: 4 taps at stride 2 from row −1 (so its data sit at one zero row of padding)
    tile_h, tile_w = _Axis(H, 4, 2, 1, 1), _Axis(W, 4, 2, 1, 1)
    tiles_h, tiles_w = -(-H // 2), -(-W // 2)
    frame = _Frame(N, (tile_h.phase_size, tile_w.phase_size), (tiles_h, tiles_w), tile_h.shift, tile_w.shift)
    planes = frame.stack(x, tile_h, tile_w)
    offsets = frame.offset(np.array(tile_h.shift)[:, None], np.array(tile_w.shift)).reshape(-1).astype(np.int64)
    tasks = task_count(frame.length, WINOGRAD_CHUNK_BYTES // (16 * (C + CO) * x.itemsize), numba.get_num_threads())
    wide = np.empty((4, CO, frame.plane), x.dtype)
    _winograd_loop(planes, transformed_weight(weight, adjoint), bias, offsets, frame.length, tasks, wide)
    out = np.empty((N, CO, H, W), x.dtype)
    phases = wide.reshape(4, CO, frame.blocks, frame.span_h, frame.span_w)
    for a in range(2):
        _unstack_loop(phases[2 * a], 2, 2, a, 0, out, phases[2 * a + 1])
    return out
