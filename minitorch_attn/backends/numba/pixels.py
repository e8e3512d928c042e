"""The convs with small output planes, on pixels whose channels lie in the vector lanes.

On the wide rows of :mod:`.frames` a 4×4 output plane is a 5×5 block, and 9 of
its 25 positions are junk: the 128-channel 4×4 conv of the benchmarked ResNet-10
computed 1.56 sums for every one it kept. Here x is stored channels-last and
zero-padded, ``(N, Hp, Wp, C)`` flattened, and output pixel p reads it at
``bases[p] + tap_offsets[t] + ci``: one base per pixel, where stride and
padding go, and one offset per tap, where dilation goes. The output channels
are the lanes of the micro-kernels' tiles,

    out[p, co] = start[co] + Σ_t Σ_ci x[bases[p] + tap_offsets[t] + ci] · weight[t·C + ci, co],

so nothing is computed that is not an output. (On big planes the wide rows'
junk is a thin border and their loads are shared by all the taps; there
they stay.) The input gradient of a stride-1 conv is such a conv too: the
output gradient, padded by the kernel's reach less the padding, by the
flipped kernel with its channels swapped. The weight gradient sums over the
pixels: dW[t·C + ci, co] = Σ_p x[bases[p] + tap_offsets[t] + ci] · grad[p, co].
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .microkernels import _four_channel_dots, _four_pixels
from .simd import TILE_BYTES, lanes

#: Output planes of at most this many pixels take the pixel path. Forward and backward of the benchmarked
#: ResNet-10's convs, in one process on a Zen 3 core, alternating: the wide rows took 1.18–1.22× as long as
#: this path at 128 channels of 4×4, 1.09–1.16× for the stride-2 64→128 onto 4×4, 1.03–1.09× for the
#: stride-2 32→64 onto 8×8; at 32 channels of 16×16 (Winograd there) 0.99–1.01×.
PIXELS_MAX_PLANE = 64

#: Output pixels a task sweeps per block of output channels and taps before moving on.
PIXEL_RUN = 32

#: Bytes of weights one pass over a run reads: the taps of a pass stay in a 32 KiB L1 while the run's pixels
#: go by. All the taps at once read them from L2, and the 128-channel 4×4 conv ran at 44 GFLOPS, not 60.
PASS_WEIGHT_BYTES = 16 * 1024

#: Output pixels per block of the weight gradient, each summed into its own partial (added in block order).
WEIGHT_GRAD_PIXELS = 128


def pixels_fit(C, CO, out_pixels, groups, dtype):
    """Whether a conv of C input and CO output channels (groups of them) onto out_pixels-pixel planes takes the
    pixel path: small planes, one group, CO a whole number of the micro-kernel's two tiles, C of fours."""
    return (groups == 1 and out_pixels <= PIXELS_MAX_PLANE and CO % (2 * lanes(dtype, TILE_BYTES)) == 0
            and C % 4 == 0)


@njit(parallel=True, cache=True)
def _pack_loop(x, top, left, packed):
    """packed[n, top + h, left + w, c] = x[n, c, h, w], and 0 on the border."""
    N, C, H, W = x.shape
    for n in prange(N):
        packed[n] = 0
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    packed[n, top + h, left + w, c] = x[n, c, h, w]


@njit(parallel=True, cache=True)
def _unpack_loop(rows, out):
    """out[n, c, i, j] = rows[(n·OH + i)·OW + j, c]."""
    N, C, OH, OW = out.shape
    for n in prange(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    out[n, c, i, j] = rows[(n * OH + i) * OW + j, c]


@njit(parallel=True, cache=True)
def _pixel_conv_loop(x, bases, tap_offsets, C, weight, start, tasks, out):
    """out[p, co] = start[co] + Σ_t Σ_ci x[bases[p] + tap_offsets[t] + ci] · weight[t·C + ci, co] (flat x,
    the weights in :func:`weight_panels`, out (pixels, CO), pixels a multiple of 4). A task owns a range of
    pixels; the taps come in passes of PASS_WEIGHT_BYTES of weights, each adding onto the last in order."""
    quads, CO = bases.shape[0] // 4, out.shape[1]
    step = 2 * (TILE_BYTES // weight.itemsize)
    taps_per_pass = max(1, PASS_WEIGHT_BYTES // (C * step * weight.itemsize))
    taps = tap_offsets.shape[0]
    for task in prange(tasks):
        lo, hi = task * quads // tasks * 4, (task + 1) * quads // tasks * 4
        for run in range(lo, hi, PIXEL_RUN):
            for co in range(0, CO, step):
                for t0 in range(0, taps, taps_per_pass):
                    for p in range(run, min(hi, run + PIXEL_RUN), 4):
                        _four_pixels(out, p, co, x, bases, tap_offsets, C, weight, t0,
                                     min(taps, t0 + taps_per_pass), start)


@njit(parallel=True, cache=True)
def _pixel_weight_grad_loop(grad, grad_bases, x, bases, tap_offsets, C, partial):
    """partial[b, t·C + ci, co] = Σ_{p in block b} x[bases[p] + tap_offsets[t] + ci] · grad[grad_bases[p] + co],
    block b the pixels b·WEIGHT_GRAD_PIXELS onwards; a task is one block and one tap."""
    blocks, _, CO = partial.shape
    taps, pixels = tap_offsets.shape[0], bases.shape[0]
    step = 2 * (TILE_BYTES // grad.itemsize)
    for task in prange(blocks * taps):
        block, t = task // taps, task % taps
        lo, hi = block * WEIGHT_GRAD_PIXELS, min(pixels, (block + 1) * WEIGHT_GRAD_PIXELS)
        for co in range(0, CO, step):
            for ci in range(0, C, 4):
                _four_channel_dots(grad, grad_bases, co, x, bases, tap_offsets[t] + ci, lo, hi, partial[block],
                                   t * C + ci)


def _pack(x, pad_h, pad_w):
    """x (N, C, H, W) channels-last with pad_h zero rows above and below, pad_w columns either side:
    (N, Hp, Wp, Cs), Cs ≥ C, the channels past C zero.

    A pixel's channels take an odd number of cache lines (Cs): at 128 float32 channels, 8 lines, the pixels
    the micro-kernels read in turn all fell into 8 of L1's 64 sets and pushed each other out (the weight
    gradient of 64×128×4×4 ran at 25–35 GFLOPS)."""
    N, C, H, W = x.shape
    per_line = 64 // x.itemsize
    lines = -(-C // per_line)
    packed = np.empty((N, H + 2 * pad_h, W + 2 * pad_w, (lines + 1 - lines % 2) * per_line), x.dtype)
    _pack_loop(x, pad_h, pad_w, packed)
    return packed


def weight_panels(rows, dtype):
    """The weights rows[t·C + ci, co] of a pixel conv as the micro-kernel reads them: panels of 2T
    columns (T a tile's lanes), each panel's rows one after the other, so a pass over some taps reads
    one contiguous run (rows CO apart fell into a few of L1's sets, as :func:`_pack` says of pixels)."""
    step = 2 * lanes(dtype, TILE_BYTES)
    K, CO = rows.shape
    return np.ascontiguousarray(rows.reshape(K, CO // step, step).transpose(1, 0, 2)).reshape(-1)


def _bases(N, rows, columns, step_h, step_w, packed_shape, pad_to=1):
    """The flat index in a channels-last array of ``packed_shape`` (N, Hp, Wp, C) of pixel (i·step_h, j·step_w)
    of each sample, for i < rows, j < columns in C order; then zeros (pixel 0) up to a multiple of pad_to."""
    _, Hp, Wp, C = packed_shape
    n, i, j = np.meshgrid(np.arange(N), np.arange(rows) * step_h, np.arange(columns) * step_w, indexing="ij")
    bases = (((n * Hp + i) * Wp + j) * C).reshape(-1)
    return np.concatenate([bases, np.zeros(-len(bases) % pad_to, bases.dtype)]).astype(np.int64)


def _tap_offsets(KH, KW, dh, dw, packed_shape):
    _, _, Wp, C = packed_shape
    kh, kw = np.meshgrid(np.arange(KH) * dh, np.arange(KW) * dw, indexing="ij")
    return ((kh * Wp + kw) * C).reshape(-1).astype(np.int64)


def _conv(packed, bases, offsets, weight_rows, start, N, OH, OW):
    """The pixel conv of ``packed`` by ``weight_rows`` (taps·C, CO) as an NCHW array (N, CO, OH, OW)."""
    K, CO = weight_rows.shape
    pixels = bases.shape[0]
    rows = np.empty((pixels, CO), packed.dtype)
    tasks = min(pixels // 4, 4 * numba.get_num_threads())  # the sums do not depend on the tasks
    _pixel_conv_loop(packed.reshape(-1), bases, offsets, K // offsets.shape[0],
                     weight_panels(weight_rows, packed.dtype), start, tasks, rows)
    out = np.empty((N, CO, OH, OW), packed.dtype)
    _unpack_loop(rows, out)
    return out


class PixelConv:
    """One conv on the pixel path: x packed, and where each output pixel and tap reads it."""

    def __init__(self, x, weight_shape, stride, padding, dilation, out_size):
        N = x.shape[0]
        _, _, KH, KW = weight_shape
        self.x_shape, self.kernel = x.shape, (KH, KW)
        self.stride, self.padding, self.dilation, (self.OH, self.OW) = stride, padding, dilation, out_size
        self.packed = _pack(x, *padding)
        self.bases = _bases(N, self.OH, self.OW, *stride, self.packed.shape, pad_to=4)
        self.offsets = _tap_offsets(KH, KW, *dilation, self.packed.shape)

    def forward(self, weight, start):
        CO = weight.shape[0]
        rows = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, CO)  # [t·C + ci, co]
        return _conv(self.packed, self.bases, self.offsets, rows, start, self.packed.shape[0], self.OH, self.OW)

    def input_grad_fits(self, C, dtype):
        """Whether dx is a pixel conv too: stride 1, padding within the kernel's reach, C output lanes."""
        return self.stride == (1, 1) and C % (2 * lanes(dtype, TILE_BYTES)) == 0 and all(
            p <= d * (k - 1) for p, d, k in zip(self.padding, self.dilation, self.kernel))

    def backward(self, grad, weight, wants_dx):
        """``(dx or None, dW)`` for the output gradient ``grad`` (N, CO, OH, OW)."""
        N, C, H, W = self.x_shape
        CO, _, KH, KW = weight.shape
        (dh, dw), (ph, pw) = self.dilation, self.padding
        pixel_dx = wants_dx and self.input_grad_fits(C, grad.dtype)
        # padded for dx by the kernel's reach less the padding: dx[i] = Σ_k g_padded[i + k·d] · W[K − 1 − k]
        pad = (dh * (KH - 1) - ph, dw * (KW - 1) - pw) if pixel_dx else (0, 0)
        packed_grad = _pack(grad, *pad)
        _, _, grad_w, grad_stride = packed_grad.shape
        grad_bases = _bases(N, self.OH, self.OW, 1, 1, packed_grad.shape) + (pad[0] * grad_w + pad[1]) * grad_stride
        pixels = N * self.OH * self.OW
        partial = np.empty((-(-pixels // WEIGHT_GRAD_PIXELS), KH * KW * C, CO), grad.dtype)
        _pixel_weight_grad_loop(packed_grad.reshape(-1), grad_bases, self.packed.reshape(-1), self.bases[:pixels],
                                self.offsets, C, partial)
        dweight = partial.sum(axis=0).reshape(KH, KW, C, CO).transpose(3, 2, 0, 1)
        dx = None
        if pixel_dx:
            flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)).reshape(-1, C)
            bases = _bases(N, H, W, 1, 1, packed_grad.shape, pad_to=4)
            offsets = _tap_offsets(KH, KW, dh, dw, packed_grad.shape)
            dx = _conv(packed_grad, bases, offsets, flipped, np.zeros(C, grad.dtype), N, H, W)
        return dx, np.ascontiguousarray(dweight)
