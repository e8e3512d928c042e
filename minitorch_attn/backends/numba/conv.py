"""Kernels of ``ops/conv.py``: conv2d forward and backward (wide-row loops; im2col and a GEMM for strided and 1×1 convs)."""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .checks import _as_float, _bias_argument, _check_shape, _pair
from .lanes import _add_combination, _add_scaled, _lane_sum


#: A conv with at least this many output channels per group that is pointwise
#: (1×1, stride 1, no padding: a GEMM on x itself) or strided (the wide loops
#: compute every stride-1 output and keep 1 in sh·sw) goes through im2col + a
#: matrix product; every other conv runs the direct wide-row loops.
GEMM_MIN_OUT_CHANNELS = 8

#: Bytes of input rows one task of the direct loop reads (see :func:`_conv2d_wide_loop`).
WIDE_CHUNK_BYTES = 512 * 1024

#: Wide positions per task of the direct loop's weight gradient. Each block sums into its own partial
#: gradient and the partials are added in block order, so the order of the sum is fixed by the shapes alone.
WEIGHT_GRAD_BLOCK = 2048

#: Running sums per dot product of the weight gradient (see :func:`_four_tap_dots`).
DOT_LANES = 64

#: From this many output channels per group on, the direct loop's weight gradient is built as rows of a
#: matrix product instead of dot products (:func:`_conv2d_wide_weight_grad_rows_loop`), over blocks of
#: WEIGHT_GRAD_ROWS_BLOCK positions (the transposed gradient block, 512·M floats, stays in L2).
WEIGHT_GRAD_ROWS_MIN_OUT_CHANNELS = 32
WEIGHT_GRAD_ROWS_BLOCK = 512


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


# Direct convolution on "wide rows". Stack the zero-padded samples of a channel
# one under the other into one tall image, Wp columns wide, Hs rows per sample
# (see _stacked_planes), and flatten it: at stride 1, output pixel (oh, ow) of
# sample n is flat position q = (n·Hs + oh)·Wp + ow, and tap (kh, kw) reads the
# input at q + kh·dh·Wp + kw·dw. Give the output the same layout (the last
# Wp - OW1 columns of each row, and the last Hs - OH1 rows of each sample, are
# junk, never read) and every tap becomes ONE contiguous multiply-add over the
# whole batch: long rows that vectorise, where a slice per output row (28 pixels
# at 28×28, 4 at 4×4) spent its time in loop overhead. A strided conv is the
# stride-1 conv read at every sh-th row and sw-th column; the input gradient of
# a stride-1 conv is the stride-1 conv of the output gradient by the flipped
# weights. (OH1, OW1: the stride-1 output size.)
@njit(cache=True, inline="always")
def _tap_start(tap, plane, lo, Wp, dh, dw, KH, KW):
    """Where tap ``(ci, kh, kw)`` (numbered in C order) reads for wide output ``lo``, in a group's flat planes.

    As an unsigned integer: Numba then needs no negative-index wraparound in the loops that add it.
    """
    return np.uint64((tap // (KH * KW)) * plane + lo + ((tap // KW) % KH) * dh * Wp + (tap % KW) * dw)


@njit(cache=True)
def _add_taps(row_a, row_b, weights_a, weights_b, planes, plane, lo, Wp, dh, dw, KH, KW):
    """row_a[l] += Σ_t weights_a[t] · (what tap t reads at wide output lo + l), and so for row_b, over the
    taps t = (ci, kh, kw) of one group's flat planes.

    Two output rows share every input value loaded, and eight taps are combined per
    pass over them, added in a fixed tree: the order depends on the shapes only.
    (One row per pass ran at ~45 GFLOPS, two at ~70, on a Zen 4 core.)
    """
    taps, length = weights_a.shape[0], np.uint64(row_a.shape[0])
    whole = taps - taps % 8
    for t in range(0, whole, 8):
        s0 = _tap_start(t, plane, lo, Wp, dh, dw, KH, KW)
        s1 = _tap_start(t + 1, plane, lo, Wp, dh, dw, KH, KW)
        s2 = _tap_start(t + 2, plane, lo, Wp, dh, dw, KH, KW)
        s3 = _tap_start(t + 3, plane, lo, Wp, dh, dw, KH, KW)
        s4 = _tap_start(t + 4, plane, lo, Wp, dh, dw, KH, KW)
        s5 = _tap_start(t + 5, plane, lo, Wp, dh, dw, KH, KW)
        s6 = _tap_start(t + 6, plane, lo, Wp, dh, dw, KH, KW)
        s7 = _tap_start(t + 7, plane, lo, Wp, dh, dw, KH, KW)
        a0, a1, a2, a3 = weights_a[t], weights_a[t + 1], weights_a[t + 2], weights_a[t + 3]
        a4, a5, a6, a7 = weights_a[t + 4], weights_a[t + 5], weights_a[t + 6], weights_a[t + 7]
        b0, b1, b2, b3 = weights_b[t], weights_b[t + 1], weights_b[t + 2], weights_b[t + 3]
        b4, b5, b6, b7 = weights_b[t + 4], weights_b[t + 5], weights_b[t + 6], weights_b[t + 7]
        for l in range(length):
            v0, v1, v2, v3 = planes[s0 + l], planes[s1 + l], planes[s2 + l], planes[s3 + l]
            v4, v5, v6, v7 = planes[s4 + l], planes[s5 + l], planes[s6 + l], planes[s7 + l]
            row_a[l] += (((a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3)) + ((a4 * v4 + a5 * v5) + (a6 * v6 + a7 * v7)))
            row_b[l] += (((b0 * v0 + b1 * v1) + (b2 * v2 + b3 * v3)) + ((b4 * v4 + b5 * v5) + (b6 * v6 + b7 * v7)))
    for t in range(whole, taps):
        start = _tap_start(t, plane, lo, Wp, dh, dw, KH, KW)
        for l in range(length):
            row_a[l] += weights_a[t] * planes[start + l]
            row_b[l] += weights_b[t] * planes[start + l]


@njit(parallel=True, cache=True)
def _conv2d_wide_loop(xpad, weight, bias, has_bias, Wp, dh, dw, length, chunk, wide):
    """wide[co, q] = b[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw] · xpad[g·CG + ci, q + kh·dh·Wp + kw·dw], q < length.

    xpad (C, positions) and wide (CO, positions) are the stacked flat planes. A task
    computes ``chunk`` positions of every output channel, two channels at a time:
    the input rows its taps read overlap (a 3×3 kernel reads each pixel 9 times),
    so they come from memory once and then from cache, and no im2col matrix is
    written. An odd last channel is paired with a scratch row of zero weights.
    """
    C, plane = xpad.shape
    CO, CG, KH, KW = weight.shape
    flat_weight = weight.reshape(CO, CG * KH * KW)
    no_weights = np.zeros(CG * KH * KW, weight.dtype)
    out_per_group = CO // (C // CG)
    zero = wide.dtype.type(0)
    for task in prange((length + chunk - 1) // chunk):
        lo = task * chunk
        hi = min(length, lo + chunk)
        scratch = np.empty(hi - lo, wide.dtype)
        for g in range(C // CG):
            planes = xpad[g * CG:(g + 1) * CG].reshape(-1)
            for co in range(g * out_per_group, (g + 1) * out_per_group, 2):
                pair = co + 1 < (g + 1) * out_per_group
                row_a = wide[co, lo:hi]
                row_b = wide[co + 1, lo:hi] if pair else scratch
                start_a = bias[co] if has_bias else zero
                start_b = bias[co + 1] if has_bias and pair else zero
                for l in range(hi - lo):
                    row_a[l] = start_a
                    row_b[l] = start_b
                _add_taps(row_a, row_b, flat_weight[co], flat_weight[co + 1] if pair else no_weights,
                          planes, plane, lo, Wp, dh, dw, KH, KW)


@njit(cache=True)
def _four_tap_dots(upstream, planes, s0, s1, s2, s3, lanes):
    """lanes[k, 0] = Σ_l upstream[l] · planes[s_k + l] for the four starts s0..s3.

    Each dot keeps DOT_LANES running sums (element l goes to sum l % DOT_LANES),
    added at the end in a fixed tree, so its order is fixed by the shapes. Scalar
    running sums, as in :func:`lanes._lane_dot`, are not vectorised by LLVM and
    wait on the adder (~7 GFLOPS on a Zen 4 core); a fixed-size inner loop over
    an array of sums is, and four dots at once share the loads of ``upstream``.
    """
    zero = lanes.dtype.type(0)
    for k in range(DOT_LANES):
        lanes[0, k] = lanes[1, k] = lanes[2, k] = lanes[3, k] = zero
    length = upstream.shape[0]
    whole = length - length % DOT_LANES
    for i in range(0, whole, DOT_LANES):
        for k in range(DOT_LANES):
            u = upstream[i + k]
            j = np.uint64(i + k)
            lanes[0, k] += u * planes[s0 + j]
            lanes[1, k] += u * planes[s1 + j]
            lanes[2, k] += u * planes[s2 + j]
            lanes[3, k] += u * planes[s3 + j]
    for i in range(whole, length):
        u = upstream[i]
        j = np.uint64(i)
        lanes[0, i - whole] += u * planes[s0 + j]
        lanes[1, i - whole] += u * planes[s1 + j]
        lanes[2, i - whole] += u * planes[s2 + j]
        lanes[3, i - whole] += u * planes[s3 + j]
    width = DOT_LANES // 2
    while width >= 1:
        for k in range(width):
            lanes[0, k] += lanes[0, k + width]
            lanes[1, k] += lanes[1, k + width]
            lanes[2, k] += lanes[2, k + width]
            lanes[3, k] += lanes[3, k + width]
        width //= 2


@njit(parallel=True, cache=True)
def _conv2d_wide_weight_grad_loop(grad_wide, xpad, Wp, dh, dw, KH, KW, length, partial):
    """partial[b, co, t] = Σ_{q in block b} g_wide[co, q] · xpad[g·CG + ci, q + kh·dh·Wp + kw·dw], t = (ci, kh, kw).

    g_wide (CO, positions) is zero at the junk positions, so they add nothing; block
    b is positions b·WEIGHT_GRAD_BLOCK onwards, and the caller adds the blocks in order.
    """
    C, plane = xpad.shape
    blocks, CO, taps = partial.shape
    CG = taps // (KH * KW)
    out_per_group = CO // (C // CG)
    for block in prange(blocks):
        lo = block * WEIGHT_GRAD_BLOCK
        hi = min(length, lo + WEIGHT_GRAD_BLOCK)
        lanes = np.empty((4, DOT_LANES), partial.dtype)
        for co in range(CO):
            first_in = (co // out_per_group) * CG
            upstream = grad_wide[co, lo:hi]
            planes = xpad[first_in:first_in + CG].reshape(-1)
            for t in range(0, taps, 4):
                # a last group of fewer than four taps repeats the last tap, and drops the repeats
                last = taps - 1
                _four_tap_dots(upstream, planes, _tap_start(t, plane, lo, Wp, dh, dw, KH, KW),
                               _tap_start(min(t + 1, last), plane, lo, Wp, dh, dw, KH, KW),
                               _tap_start(min(t + 2, last), plane, lo, Wp, dh, dw, KH, KW),
                               _tap_start(min(t + 3, last), plane, lo, Wp, dh, dw, KH, KW), lanes)
                for k in range(min(4, taps - t)):
                    partial[block, co, t + k] = lanes[k, 0]


@njit(parallel=True, cache=True)
def _conv2d_wide_weight_grad_rows_loop(grad_t, xpad, Wp, dh, dw, KH, KW, length, partial_t):
    """partial_t[b, g, t, m] = Σ_{q in block b} xpad[g·CG + ci, q + kh·dh·Wp + kw·dw] · gᵀ[g, q, m], t = (ci, kh, kw).

    The same sums as :func:`_conv2d_wide_weight_grad_loop`, for many outputs per
    group: with the gradient transposed to (G, positions, M), a tap's weights for
    all M outputs are one row of a matrix product, built eight positions per pass
    by :func:`lanes._add_combination` (no reduction inside a row, so LLVM
    vectorises it; ~45 GFLOPS against ~30 for the dots at M = 64 and 128).
    Block b is positions b·WEIGHT_GRAD_ROWS_BLOCK onwards.
    """
    C, plane = xpad.shape
    blocks, G, taps, M = partial_t.shape
    CG = C // G
    zero = partial_t.dtype.type(0)
    for task in prange(blocks * G):
        block = task // G
        g = task % G
        lo = block * WEIGHT_GRAD_ROWS_BLOCK
        hi = min(length, lo + WEIGHT_GRAD_ROWS_BLOCK)
        upstream = grad_t[g, lo:hi]
        planes = xpad[g * CG:(g + 1) * CG].reshape(-1)
        for t in range(taps):
            row = partial_t[block, g, t]
            for m in range(M):
                row[m] = zero
            start = _tap_start(t, plane, lo, Wp, dh, dw, KH, KW)
            _add_combination(row, planes[start:start + np.uint64(hi - lo)], upstream)


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
        plane[:] = zero
        for kh in range(KH):
            oh_lo, oh_hi = _valid_outputs(kh * dh - ph, sh, H, OH)
            for kw in range(KW):
                ow_lo, ow_hi = _valid_outputs(kw * dw - pw, sw, W, OW)
                source = dcols[n, (c * KH + kh) * KW + kw]
                for oh in range(oh_lo, oh_hi):
                    _tap_columns_scatter(plane, oh * sh + kh * dh - ph, ow_lo * sw + kw * dw - pw, sw,
                                         one, source[oh * OW + ow_lo:oh * OW + ow_hi])


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


@njit(parallel=True, cache=True)
def _stack_loop(x, top, left, stacked):
    """stacked[c, n, top + i, left + j] = x[n, c, i, j], and 0 around it, for every sample n of x."""
    N, C, H, W = x.shape
    zero = stacked.dtype.type(0)
    for task in prange(C * N):
        c = task // N
        n = task % N
        plane = stacked[c, n]
        plane[:] = zero
        for i in range(H):
            plane[top + i, left:left + W] = x[n, c, i]


@njit(parallel=True, cache=True)
def _unstack_loop(stacked, top, left, sh, sw, out):
    """out[n, c, i, j] = stacked[c, n, top + i·sh, left + j·sw]: the planes back in NCHW, cropped and strided."""
    N, C, OH, OW = out.shape
    for task in prange(N * C):
        n = task // C
        c = task % C
        for i in range(OH):
            row = stacked[c, n, top + i * sh]
            for j in range(OW):
                out[n, c, i, j] = row[left + j * sw]


def _stacked_planes(x, padding, kernel_size, dilation):
    """x stacked per channel for the wide loops: ``(planes (C, (N+1)·Hs·Wp), Hs, Wp, OH1, OW1)``.

    Sample n's pixel (i, j) sits at row n·Hs + ph + i, column pw + j of its channel's
    tall image, Wp columns wide. The zero bands between samples (rows) and between
    rows (columns, through the wrap-around) serve as the padding of both neighbours,
    so a band is max(p, 2p - reach) wide, not 2p: p for a "same" conv, which saves
    31% of the positions at 4×4 pixels. One zero block after the last sample keeps
    the reads of the last junk positions inside. (OH1, OW1): the stride-1 output size.
    """
    (ph, pw), (N, C, H, W) = padding, x.shape
    reach_h, reach_w = dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1)
    Hs, Wp = H + max(ph, 2 * ph - reach_h), W + max(pw, 2 * pw - reach_w)
    planes = np.empty((C, N + 1, Hs, Wp), x.dtype)
    planes[:, N] = 0
    _stack_loop(x, ph, pw, planes)
    return planes.reshape(C, -1), Hs, Wp, H + 2 * ph - reach_h, W + 2 * pw - reach_w


def _wide_length(N, Hs, Wp, OH1, OW1):
    """How many stacked positions are computed: up to the last sample's last output."""
    return ((N - 1) * Hs + OH1 - 1) * Wp + OW1


def _stride1_conv(x, weight, bias_array, has_bias, padding, dilation):
    """The stride-1 conv of x by the wide loop: ``(its stacked planes (CO, N+1, Hs, Wp), OH1, OW1)``."""
    N, CO = x.shape[0], weight.shape[0]
    xpad, Hs, Wp, OH1, OW1 = _stacked_planes(x, padding, weight.shape[2:], dilation)
    wide = np.empty((CO, xpad.shape[1]), x.dtype)
    # The chunk's input rows (one group's channels) stay within about half of a 1 MiB L2 cache, and every
    # thread gets at least four chunks. (The sums do not depend on the chunks: each output adds its taps
    # in the same order whichever task computes it, so the thread count may choose them.)
    length = _wide_length(N, Hs, Wp, OH1, OW1)
    chunk = min(WIDE_CHUNK_BYTES // (weight.shape[1] * x.itemsize), -(-length // (4 * numba.get_num_threads())))
    _conv2d_wide_loop(xpad, weight, bias_array, has_bias, Wp, *dilation, length, max(256, chunk // 64 * 64), wide)
    return wide.reshape(CO, N + 1, Hs, Wp), OH1, OW1


class _ConvGeometry:
    """Checked conv2d arguments: shapes, output size, and which path (wide loops or im2col + GEMM) runs."""

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
        # A 1×1 conv without padding at stride s reads every s-th pixel only: it is the stride-1 conv of
        # those pixels (the shortcut of a downsampling residual block), with no stride-1 output wasted.
        self.subsamples = (KH, KW, self.padding) == (1, 1, (0, 0)) and self.stride != (1, 1)
        # A 1×1 kernel with stride 1 and no padding reads x as it is: im2col would be a copy, and the GEMM
        # runs on x itself (restacking x for the wide loops made BAM's 256 -> 16 conv 1.4-2.4× slower).
        self.pointwise = (KH, KW, self.stride, self.padding) == (1, 1, (1, 1), (0, 0))
        many_outputs = CO // self.groups >= GEMM_MIN_OUT_CHANNELS
        self.use_gemm = many_outputs and (self.pointwise or (self.stride != (1, 1) and not self.subsamples))

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

    def kept_pixels(self):
        """Every (sh, sw)-th pixel of x: all that a subsampling 1×1 conv reads."""
        return np.ascontiguousarray(self.x[:, :, ::self.stride[0], ::self.stride[1]])

    def grouped_weight(self):
        CO, CG, KH, KW = self.weight.shape
        return self.weight.reshape(self.groups, CO // self.groups, CG * KH * KW)

    def transposed_weight(self):
        """W'[g·CG + ci, m, kh, kw] = W[g·M + m, ci, KH-1-kh, KW-1-kw]: the weights of the conv that is the
        stride-1 conv's adjoint (input and output channels swapped within each group, taps flipped)."""
        CO, CG, KH, KW = self.weight.shape
        G = self.groups
        swapped = self.weight.reshape(G, CO // G, CG, KH, KW).transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
        return np.ascontiguousarray(swapped).reshape(G * CG, CO // G, KH, KW)

    def stride1_grad(self, grad):
        """The gradient of the stride-1 outputs (N, CO, OH1, OW1): grad at every (sh, sw)-th one, 0 elsewhere."""
        if self.stride == (1, 1):
            return grad
        (dh, dw), (_, _, KH, KW) = self.dilation, self.weight.shape
        N, CO = grad.shape[:2]
        H, W = self.x.shape[2:]
        OH1 = H + 2 * self.padding[0] - dh * (KH - 1)
        OW1 = W + 2 * self.padding[1] - dw * (KW - 1)
        full = np.zeros((N, CO, OH1, OW1), grad.dtype)
        full[:, :, ::self.stride[0], ::self.stride[1]] = grad
        return full


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    conv = _ConvGeometry("conv2d_forward", x, weight, stride, padding, dilation, groups)
    N, CO = conv.x.shape[0], conv.weight.shape[0]
    bias_array, has_bias = _bias_argument("conv2d_forward", bias, CO, conv.x.dtype)
    if conv.subsamples:
        return conv2d_forward(conv.kept_pixels(), conv.weight, bias, 1, 0, conv.dilation, conv.groups)
    if not conv.use_gemm:
        wide, _, _ = _stride1_conv(conv.x, conv.weight, bias_array, has_bias, conv.padding, conv.dilation)
        out = np.empty((N, CO, conv.OH, conv.OW), conv.x.dtype)
        _unstack_loop(wide, 0, 0, *conv.stride, out)
        return out
    # (G, CO/G, K) @ (N, G, K, P) -> (N, G, CO/G, P): one matrix product per sample and group.
    out = np.empty((N, conv.groups, CO // conv.groups, conv.OH * conv.OW), conv.x.dtype)
    _grouped_matmul_loop(conv.grouped_weight(), conv.columns(), bias_array, has_bias, out)
    return out.reshape(N, CO, conv.OH, conv.OW)


def _wide_backward(conv, grad):
    """dx and dW of the wide path: dx is itself a stride-1 conv (of the stride-1 gradient by the flipped,
    transposed weights), and dW correlates that gradient with the padded input, tap by tap."""
    N, C, H, W = conv.x.shape
    CO, CG, KH, KW = conv.weight.shape
    (ph, pw), (dh, dw) = conv.padding, conv.dilation
    grad1 = conv.stride1_grad(grad)
    # The adjoint pads by the kernel's reach minus the forward padding; padding wider than the reach
    # adds input pixels no output sees, which the adjoint then produces as zeros at the border.
    pad_h, pad_w = min(ph, (KH - 1) * dh), min(pw, (KW - 1) * dw)
    dx_wide, _, _ = _stride1_conv(grad1, conv.transposed_weight(), np.zeros(1, grad.dtype), False,
                                  ((KH - 1) * dh - pad_h, (KW - 1) * dw - pad_w), conv.dilation)
    dx = np.empty_like(conv.x)
    _unstack_loop(dx_wide, ph - pad_h, pw - pad_w, 1, 1, dx)
    xpad, Hs, Wp, OH1, OW1 = _stacked_planes(conv.x, conv.padding, (KH, KW), conv.dilation)
    length = _wide_length(N, Hs, Wp, OH1, OW1)
    G, M = conv.groups, CO // conv.groups
    if M < WEIGHT_GRAD_ROWS_MIN_OUT_CHANNELS:
        grad_wide = np.empty((CO, N + 1, Hs, Wp), grad.dtype)
        grad_wide[:, N] = 0
        _stack_loop(grad1, 0, 0, grad_wide)  # zero at the junk positions
        partial = np.empty((-(-length // WEIGHT_GRAD_BLOCK), CO, CG * KH * KW), grad.dtype)
        _conv2d_wide_weight_grad_loop(grad_wide.reshape(CO, -1), xpad, Wp, dh, dw, KH, KW, length, partial)
        return dx, partial.sum(axis=0).reshape(conv.weight.shape)
    grad_t = np.zeros((G, N + 1, Hs, Wp, M), grad.dtype)  # zero at the junk positions
    grad_t[:, :N, :OH1, :OW1] = grad1.reshape(N, G, M, OH1, OW1).transpose(1, 0, 3, 4, 2)
    partial_t = np.empty((-(-length // WEIGHT_GRAD_ROWS_BLOCK), G, CG * KH * KW, M), grad.dtype)
    _conv2d_wide_weight_grad_rows_loop(grad_t.reshape(G, -1, M), xpad, Wp, dh, dw, KH, KW, length, partial_t)
    return dx, partial_t.sum(axis=0).transpose(0, 2, 1).reshape(conv.weight.shape)


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
    if conv.subsamples:
        dx_kept, dweight, _ = conv2d_backward(grad, conv.kept_pixels(), conv.weight, 1, 0, conv.dilation,
                                              conv.groups, False)
        dx = np.zeros_like(conv.x)
        dx[:, :, ::conv.stride[0], ::conv.stride[1]] = dx_kept
        return dx, dweight, dbias
    if not conv.use_gemm:
        return (*_wide_backward(conv, grad), dbias)
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
    if conv.pointwise:
        dx = dcols.reshape(N, C, H, W)
    else:
        dx = np.empty_like(conv.x)
        _col2im_loop(dcols.reshape(N, C * KH * KW, -1), KH, KW, *conv.loop_arguments, conv.OH, conv.OW, dx)
    return dx, dweight.reshape(conv.weight.shape), dbias
