"""Kernels of ``ops/conv.py``: conv2d forward and backward (direct wide-row loops, or im2col and a GEMM)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import _as_float, _bias_argument, _check_shape, _pair
from .lanes import _add_combination, _add_scaled, _lane_dot, _lane_sum


#: conv2d uses im2col + a matrix product when a group has at least this many output
#: channels (each im2col row is then reused by many outputs, which is where a
#: GEMM beats direct loops: BAM's 1×1 and dilated 3×3 convs with C/r channels),
#: and direct loops below it (CBAM's 2→1 7×7 conv, BAM's C/r→1 1×1, depthwise).
GEMM_MIN_OUT_CHANNELS = 8


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
