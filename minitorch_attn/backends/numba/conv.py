"""Kernels of ``ops/conv.py``: conv2d forward and backward, as loops over the batch stacked into "wide rows"
(direct sums, or Winograd's for the 3×3 "same" convs that suit it), or channels-last for small planes."""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .checks import _as_float, _bias_argument, _check_shape, _pair
from .frames import POSITION_QUANTUM, _Axis, _Frame, _strided_copy, _task_positions, _unstack_loop, task_count
from .lanes import _lane_sum
from .microkernels import _group_outputs, _group_weight_grads
from .pixels import PixelConv, pixels_fit
from .winograd import winograd_conv3x3, winograd_fits

#: Bytes of input rows one task of the direct loop reads (see :func:`_conv2d_wide_loop`).
WIDE_CHUNK_BYTES = 512 * 1024

#: A 1×1 conv on samples of fewer pixels than this that are not a whole number of POSITION_QUANTUM runs on
#: the stacked planes (see :class:`_ConvGeometry`).
POINTWISE_MIN_RAGGED_PIXELS = 512

#: Wide positions per task of the direct loop's weight gradient. Each block sums into its own partial
#: gradient and the partials are added in block order, so the order of the sum is fixed by the shapes alone.
WEIGHT_GRAD_BLOCK = 2048


# --------------------------------------------------------------------------
# Convolution: out[n, co, oh, ow] = b[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw]
#     · x[n, g·CG + ci, oh·sh + kh·dh − ph, ow·sw + kw·dw − pw]
# (g = co's group, CG = input channels per group; pixels outside x are 0).
#
# Every conv here runs on "wide rows" (frames.py): the batch stacked into tall
# planes, where a tap is one offset for the whole batch and a strided conv is a
# stride-1 conv over phase planes. The input gradient is the adjoint: for each
# phase, the stride-1 conv of the output gradient by that phase's taps, shifts
# negated, channels swapped within each group. The sums run in the
# register-blocked micro-kernels of microkernels.py.
#
# A 1×1 conv without padding needs no stacking where its samples are big: x (N, C, H·W)
# is a matrix per sample already, and _pointwise_loop multiplies it as it is.
#
# A conv onto small output planes (a backbone's last stages: 8×8 and 4×4) runs
# channels-last instead (pixels.py), where the wide rows would be mostly junk.
#
# A 3×3 conv of stride 1 and padding 1 whose channels suit it (winograd_fits: 32
# or more in and out, and a task's transformed tiles within half of L2, so the
# backbone's 32 and 64 in float32) takes winograd.py's F(2×2, 3×3): 16
# multiplications per 2×2 outputs instead of 36, forward and input gradient.
# The weight gradient stays direct.
# --------------------------------------------------------------------------
def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@njit(parallel=True, cache=True)
def _conv2d_wide_loop(planes, flat_weight, start, offsets, groups, length, tasks, wide):
    """wide[co, q] = start[co] + Σ_t flat_weight[co, t] · planes_g[offsets[t] + q], for q < length.

    planes (P, positions) and wide (CO, positions) are stacked flat planes
    (:class:`_Frame`), planes_g the P/groups planes of co's group, flattened, and
    ``offsets`` where each tap of a group reads; length is a multiple of
    POSITION_QUANTUM. Each of the ``tasks`` computes a run of positions of every
    output channel: the input rows its taps read overlap (a 3×3 kernel reads each
    pixel 9 times), so they come from memory once and then from cache, and no
    im2col matrix is written.
    """
    per_group, planes_per_group = wide.shape[0] // groups, planes.shape[0] // groups
    for task in prange(tasks):
        lo, hi = _task_positions(task, tasks, length)
        for g in range(groups):
            group_planes = planes[g * planes_per_group:(g + 1) * planes_per_group].reshape(-1)
            _group_outputs(wide, g, per_group, lo, hi, flat_weight, offsets, group_planes, start)


@njit(parallel=True, cache=True)
def _pointwise_loop(x, flat_weight, start, groups, chunk, out):
    """out[n, co, p] = start[co] + Σ_ci flat_weight[co, ci] · x[n, g·CG + ci, p]: a 1×1 conv on x as it is.

    x (N, C, P) and out (N, CO, P). A task computes ``chunk`` positions of one
    sample (a multiple of POSITION_QUANTUM); the last POSITION_QUANTUM-ragged
    positions of a sample go through zero-padded copies, so no load reads past x.
    """
    N, C, P = x.shape
    CO = out.shape[1]
    CG, per_group = C // groups, CO // groups
    whole = P - P % POSITION_QUANTUM
    chunks = -(-P // chunk)
    offsets, tail_offsets = np.arange(CG) * P, np.arange(CG) * POSITION_QUANTUM
    for task in prange(N * chunks):
        n = task // chunks
        lo = (task % chunks) * chunk
        for g in range(groups):
            group_planes = x[n, g * CG:(g + 1) * CG].reshape(-1)
            _group_outputs(out[n], g, per_group, lo, min(whole, lo + chunk), flat_weight, offsets, group_planes,
                           start)
        if task % chunks == chunks - 1 and whole < P:
            tail = np.zeros((C, POSITION_QUANTUM), x.dtype)
            tail[:, :P - whole] = x[n, :, whole:]
            tail_out = np.empty((CO, POSITION_QUANTUM), x.dtype)
            for g in range(groups):
                _group_outputs(tail_out, g, per_group, 0, POSITION_QUANTUM, flat_weight, tail_offsets,
                               tail[g * CG:(g + 1) * CG].reshape(-1), start)
            out[n, :, whole:] = tail_out[:, :P - whole]


@njit(parallel=True, cache=True)
def _conv2d_wide_weight_grad_loop(grad_wide, u, planes, offsets, groups, length, partial):
    """partial[b, co, t] = Σ_{q in block b} g_wide[co, u + q] · planes_g[offsets[t] + q], t = (ci, kh, kw).

    g_wide (CO, positions) holds output q at u + q and is zero at the junk positions, so they add nothing; block
    b is positions b·WEIGHT_GRAD_BLOCK onwards, and the caller adds the blocks in
    order. A task is one block, one group and four taps, for every output channel
    of the group: the four taps' input rows stay in L1 while the gradient streams.
    """
    blocks, CO, taps = partial.shape
    planes_per_group, per_group = planes.shape[0] // groups, CO // groups
    quads = -(-taps // 4)
    for task in prange(blocks * groups * quads):
        block = task // (groups * quads)
        g = (task // quads) % groups
        lo = block * WEIGHT_GRAD_BLOCK
        group_planes = planes[g * planes_per_group:(g + 1) * planes_per_group].reshape(-1)
        _group_weight_grads(grad_wide, u, g, per_group, group_planes, offsets, (task % quads) * 4, lo,
                            min(length, lo + WEIGHT_GRAD_BLOCK), partial[block])


@njit(parallel=True, cache=True)
def _pointwise_weight_grad_loop(grad, x, groups, partial):
    """partial[n·B + b, co, ci] = Σ_{p in block b of sample n} g[n, co, p] · x[n, g·CG + ci, p]: the weight
    gradient of a 1×1 conv, x (N, C, P) and grad (N, CO, P) as they are, in blocks of WEIGHT_GRAD_BLOCK
    positions (the caller adds them in order); a ragged end goes through zero-padded copies."""
    N, C, P = x.shape
    CO = grad.shape[1]
    CG, per_group = C // groups, CO // groups
    whole = P - P % POSITION_QUANTUM
    blocks = partial.shape[0] // N
    offsets, tail_offsets = np.arange(CG) * P, np.arange(CG) * POSITION_QUANTUM
    for task in prange(N * blocks):
        n = task // blocks
        lo = (task % blocks) * WEIGHT_GRAD_BLOCK
        hi = min(whole, lo + WEIGHT_GRAD_BLOCK)
        ragged = task % blocks == blocks - 1 and whole < P
        tail, tail_grad = np.zeros((C, POSITION_QUANTUM), x.dtype), np.zeros((CO, POSITION_QUANTUM), x.dtype)
        if ragged:
            tail[:, :P - whole] = x[n, :, whole:]
            tail_grad[:, :P - whole] = grad[n, :, whole:]
        ends = np.empty((CO, CG), x.dtype)
        for g in range(groups):
            for t in range(0, CG, 4):
                _group_weight_grads(grad[n], 0, g, per_group, x[n, g * CG:(g + 1) * CG].reshape(-1), offsets, t, lo,
                                    hi, partial[task])
                if ragged:
                    _group_weight_grads(tail_grad, 0, g, per_group, tail[g * CG:(g + 1) * CG].reshape(-1),
                                        tail_offsets, t, 0, POSITION_QUANTUM, ends)
                    partial[task, g * per_group:(g + 1) * per_group, t:t + 4] += \
                        ends[g * per_group:(g + 1) * per_group, t:t + 4]


@njit(parallel=True, cache=True)
def _subsample_loop(x, sh, sw, kept):
    """kept[n, c, i, j] = x[n, c, i·sh, j·sw]: the pixels a strided 1×1 conv reads. (NumPy's strided copy
    ran on one thread: a ResNet shortcut's 64×16×32×32 took longer than its conv.)"""
    N, C, H, W = x.shape
    KH, KW = kept.shape[2:]
    source, dest = x.reshape(-1), kept.reshape(-1)
    for plane in prange(N * C):
        for i in range(KH):
            _strided_copy(source, (plane * H + i * sh) * W, sw, dest, (plane * KH + i) * KW, 1, KW)


@njit(parallel=True, cache=True)
def _upsample_loop(kept, sh, sw, out):
    """out[n, c, i·sh, j·sw] = kept[n, c, i, j] and 0 at every other pixel: the input gradient of a strided
    1×1 conv, one plane per task (zeroed and filled while it is in cache)."""
    N, C, H, W = out.shape
    KH, KW = kept.shape[2:]
    source, dest = kept.reshape(-1), out.reshape(-1)
    for plane in prange(N * C):
        dest[plane * H * W:(plane + 1) * H * W] = 0
        for i in range(KH):
            _strided_copy(source, (plane * KH + i) * KW, 1, dest, (plane * H + i * sh) * W, sw, KW)


@njit(parallel=True, cache=True)
def _conv2d_bias_grad_loop(grad, dbias):
    """db[co] = Σ_{n, p} g[n, co, p] for grad viewed as (N, CO, OH*OW)."""
    for co in prange(grad.shape[1]):
        total = grad.dtype.type(0)
        for n in range(grad.shape[0]):
            total += _lane_sum(grad[n, co])
        dbias[co] = total


def _frame_conv(frame, planes, flat_weight, start, offsets, groups):
    """wide[co, q] = start[co] + Σ_t flat_weight[co, t] · (tap t of co's group at q): ``(CO, blocks,
    span_h, span_w)``."""
    wide = np.empty((flat_weight.shape[0], frame.plane), planes.dtype)
    # A task's input rows (one group's planes) stay within about half of a 1 MiB L2 cache. (The sums do not
    # depend on the tasks: each output adds its taps in the same order whichever task computes it, so the
    # thread count may choose them.)
    tasks = task_count(frame.length, WIDE_CHUNK_BYTES // (planes.shape[0] // groups * planes.itemsize),
                       numba.get_num_threads())
    _conv2d_wide_loop(planes, np.ascontiguousarray(flat_weight), start, offsets, groups, frame.length, tasks,
                      wide)
    return wide.reshape(-1, frame.blocks, frame.span_h, frame.span_w)


class _ConvGeometry:
    """Checked conv2d arguments, and the frame and tap offsets of the forward conv."""

    def __init__(self, kernel, x, weight, stride, padding, dilation, groups):
        self.x = _as_float(kernel, "x", x, 4)
        self.weight = _as_float(kernel, "weight", weight, 4, self.x.dtype)
        N, C, H, W = self.x.shape
        CO, CG, KH, KW = self.weight.shape
        if int(groups) != groups or groups < 1 or C % groups or CO % groups or CG != C // groups:
            raise ValueError(f"{kernel}: groups={groups!r} must divide C={C} and CO={CO}, and weight "
                             f"must be (CO, C/groups, KH, KW); got weight {self.weight.shape}")
        stride = _pair(kernel, "stride", stride, 1)
        padding = _pair(kernel, "padding", padding, 0)
        dilation = _pair(kernel, "dilation", dilation, 1)
        self.groups = int(groups)
        self.options = (stride, padding, dilation, self.groups)
        self.OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
        self.OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
        if self.OH < 1 or self.OW < 1:
            raise ValueError(f"{kernel}: the output would be empty ({self.OH}×{self.OW}) for input "
                             f"{H}×{W}, kernel {KH}×{KW}, stride {stride}, padding {padding}, "
                             f"dilation {dilation}")
        # A 1×1 conv without padding reads x as it is, at every (sh, sw)-th pixel: a matrix product per sample,
        # with no stacking. Unless the samples are small and ragged: the wide rows of a 1×1 conv without
        # padding waste nothing, where a ragged end pads to POSITION_QUANTUM (4 of 64 positions used at 4×4:
        # a ResNet shortcut's backward took 3.5× as long).
        kept = len(range(0, H, stride[0])) * len(range(0, W, stride[1]))
        self.pointwise = ((KH, KW) == (1, 1) and padding == (0, 0)
                          and (kept % POSITION_QUANTUM == 0 or kept >= POINTWISE_MIN_RAGGED_PIXELS))
        # The 3×3 "same" convs of a backbone take Winograd's F(2×2, 3×3), forward and input gradient alike
        # (the input gradient of such a conv is one too: swapped channels, flipped kernel).
        self.winograd = ((KH, KW, stride, padding, dilation, self.groups) == (3, 3, (1, 1), (1, 1), (1, 1), 1)
                         and winograd_fits(C, CO, self.x.dtype))
        # Small output planes (the last stages of a backbone) go channels-last, where the wide rows would
        # compute mostly junk (pixels.py).
        self.pixels = (not self.pointwise and not self.winograd
                       and pixels_fit(C, CO, self.OH * self.OW, self.groups, self.x.dtype))
        self.axis_h = _Axis(H, KH, stride[0], padding[0], dilation[0])
        self.axis_w = _Axis(W, KW, stride[1], padding[1], dilation[1])
        self.frame = _Frame(N, (self.axis_h.phase_size, self.axis_w.phase_size), (self.OH, self.OW),
                            self.axis_h.shift, self.axis_w.shift)

    def signature(self):
        """What the stacked planes of x depend on besides its values (a kept stack must match it)."""
        return self.x.shape, self.x.dtype, self.weight.shape, self.options

    def pixel_conv(self):
        stride, padding, dilation, _ = self.options
        return PixelConv(self.x, self.weight.shape, stride, padding, dilation, (self.OH, self.OW))

    def kept_pixels(self):
        """Every (sh, sw)-th pixel of x: all that a 1×1 conv without padding reads (x itself at stride 1)."""
        sh, sw = self.axis_h.stride, self.axis_w.stride
        if (sh, sw) == (1, 1):
            return self.x
        N, C, H, W = self.x.shape
        kept = np.empty((N, C, len(range(0, H, sh)), len(range(0, W, sw))), self.x.dtype)
        _subsample_loop(self.x, sh, sw, kept)
        return kept

    def input_planes(self):
        """``(x's phase planes in the frame, offsets[t])`` for the taps t = (ci, kh, kw) in C order."""
        h, w, frame = self.axis_h, self.axis_w, self.frame
        CG = self.weight.shape[1]
        plane_index = ((np.arange(CG)[:, None, None] * len(h.phases) + np.array(h.phase_index)[:, None])
                       * len(w.phases) + np.array(w.phase_index))
        offsets = plane_index * frame.plane + frame.offset(np.array(h.shift)[:, None], np.array(w.shift))
        return frame.stack(self.x, h, w), offsets.reshape(-1).astype(np.int64)

    def adjoint_frame(self):
        """The frame of the input gradient's convs: grad is their data, x's phases their outputs."""
        h, w = self.axis_h, self.axis_w
        return _Frame(self.x.shape[0], (self.OH, self.OW), (h.phase_size, w.phase_size), [-e for e in h.shift],
                      [-e for e in w.shift])

    def input_grad(self, planes, frame):
        """dx: per phase of x, the stride-1 conv of grad (its ``planes`` in the adjoint ``frame``) by the taps
        that read that phase."""
        h, w = self.axis_h, self.axis_w
        C = self.x.shape[1]
        CO, CG, _, _ = self.weight.shape
        G, M = self.groups, CO // self.groups
        every_phase = len(h.phases) == h.stride and len(w.phases) == w.stride
        dx = np.empty_like(self.x) if every_phase else np.zeros_like(self.x)  # an unread phase gets 0
        # W'[g, ci, m, kh, kw] = W[g·M + m, ci, kh, kw]: input and output channels swapped within each group
        swapped = self.weight.reshape(G, M, CG, *self.weight.shape[2:]).transpose(0, 2, 1, 3, 4)
        for a in h.phases:
            wides = []
            for b in w.phases:
                rows, columns = h.taps_of(a), w.taps_of(b)
                flat = np.ascontiguousarray(swapped[:, :, :, rows, columns]).reshape(C, -1)
                reads = frame.offset(-np.array(h.shift[rows])[:, None], -np.array(w.shift[columns]))
                offsets = (np.arange(M)[:, None, None] * frame.plane + reads).reshape(-1).astype(np.int64)
                wides.append(_frame_conv(frame, planes, flat, np.zeros(C, dx.dtype), offsets, G))
            if w.stride == 2 and w.phases == [0, 1]:  # both column phases in one pass (see _stack_loop)
                _unstack_loop(wides[0], h.stride, 2, a, 0, dx, wides[1])
            else:
                for b, wide in zip(w.phases, wides):
                    _unstack_loop(wide, h.stride, w.stride, a, b, dx)
        return dx


def _pointwise_forward(x, flat_weight, start, groups):
    """The 1×1 conv of x (N, C, H, W) without padding, on x as it is: (N, CO, H, W)."""
    N, C, H, W = x.shape
    CO = flat_weight.shape[0]
    out = np.empty((N, CO, H, W), x.dtype)
    # about half of L2 of input rows per task, and at least four tasks per thread
    chunk = min(WIDE_CHUNK_BYTES // (C // groups * x.itemsize), -(-N * H * W // (4 * numba.get_num_threads())))
    chunk = max(4 * POSITION_QUANTUM, chunk // POSITION_QUANTUM * POSITION_QUANTUM)
    _pointwise_loop(x.reshape(N, C, -1), np.ascontiguousarray(flat_weight), start, groups, chunk,
                    out.reshape(N, CO, -1))
    return out


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, workspace=None):
    """``workspace``: None, or the op's dict for conv2d_backward, which gets the stacked planes of x (they
    are what the weight gradient reads; stacking x again in the backward took 7.8 ms of a 1-thread resnet10
    training step of about 140 ms)."""
    conv = _ConvGeometry("conv2d_forward", x, weight, stride, padding, dilation, groups)
    N, CO = conv.x.shape[0], conv.weight.shape[0]
    bias_array, _ = _bias_argument("conv2d_forward", bias, CO, conv.x.dtype)  # zeros when there is none
    if conv.pointwise:
        return _pointwise_forward(conv.kept_pixels(), conv.weight.reshape(CO, -1), bias_array, conv.groups)
    if conv.winograd:
        return winograd_conv3x3(conv.x, conv.weight, bias_array)
    if conv.pixels:
        pixel_conv = conv.pixel_conv()
        if workspace is not None:
            workspace["input_planes"] = (conv.signature(), pixel_conv)
        return pixel_conv.forward(conv.weight, bias_array)
    planes, offsets = conv.input_planes()
    if workspace is not None:
        workspace["input_planes"] = (conv.signature(), planes, offsets)
    wide = _frame_conv(conv.frame, planes, conv.weight.reshape(CO, -1), bias_array, offsets, conv.groups)
    out = np.empty((N, CO, conv.OH, conv.OW), conv.x.dtype)
    _unstack_loop(wide, 1, 1, 0, 0, out)
    return out


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias, workspace=None):
    """``workspace``: None, or the dict conv2d_forward filled for this x and weight (its planes are used once);
    where it holds ``"input_grad": False``, dx is not computed and None is returned in its place."""
    conv = _ConvGeometry("conv2d_backward", x, weight, stride, padding, dilation, groups)
    wants_dx = workspace is None or workspace.get("input_grad", True)
    N = conv.x.shape[0]
    CO = conv.weight.shape[0]
    grad = _as_float("conv2d_backward", "grad", grad, 4, conv.x.dtype)
    _check_shape("conv2d_backward", "grad", grad, (N, CO, conv.OH, conv.OW))
    dbias = None
    if has_bias:
        dbias = np.empty(CO, grad.dtype)
        _conv2d_bias_grad_loop(grad.reshape(N, CO, -1), dbias)
    if conv.pointwise:
        kept = conv.kept_pixels()
        M, CG = CO // conv.groups, conv.weight.shape[1]
        partial = np.empty((N * -(-conv.OH * conv.OW // WEIGHT_GRAD_BLOCK), CO, CG), grad.dtype)
        _pointwise_weight_grad_loop(grad.reshape(N, CO, -1), kept.reshape(N, kept.shape[1], -1), conv.groups,
                                    partial)
        dx = None
        if wants_dx:
            flat = conv.weight.reshape(conv.groups, M, CG).transpose(0, 2, 1).reshape(-1, M)  # Wᵀ of each group
            dx = _pointwise_forward(grad, flat, np.zeros(flat.shape[0], grad.dtype), conv.groups)
        if dx is not None and kept is not conv.x:  # the pixels a strided 1×1 conv skips get 0
            dx_kept, dx = dx, np.empty_like(conv.x)
            _upsample_loop(dx_kept, conv.axis_h.stride, conv.axis_w.stride, dx)
        return dx, partial.sum(axis=0).reshape(conv.weight.shape), dbias
    kept = None if workspace is None else workspace.pop("input_planes", None)
    if kept is not None and kept[0] != conv.signature():
        kept = None
    if conv.pixels:
        pixel_conv = conv.pixel_conv() if kept is None else kept[1]
        dx, dweight = pixel_conv.backward(grad, conv.weight, wants_dx)
        if wants_dx and dx is None:
            adjoint = conv.adjoint_frame()
            dx = conv.input_grad(adjoint.stack(grad), adjoint)
        return dx, dweight, dbias
    adjoint = conv.adjoint_frame()
    grad_planes = adjoint.stack(grad) if wants_dx else None
    # dW correlates the gradient, at the forward's output positions (zero at the junk ones), with x's
    # planes. When the two frames are one (a "same" stride-1 conv), the adjoint's stacked gradient is
    # that already, read from where its data start.
    start = int(conv.frame.offset(0, 0))
    if wants_dx and adjoint.layout == conv.frame.layout and start + conv.frame.length <= adjoint.plane:
        grad_wide = grad_planes
    else:
        grad_wide, start = conv.frame.stack(grad, where=(0, 0)), 0
    planes, offsets = conv.input_planes() if kept is None else kept[1:]
    partial = np.empty((-(-conv.frame.length // WEIGHT_GRAD_BLOCK), CO, offsets.shape[0]), grad.dtype)
    _conv2d_wide_weight_grad_loop(grad_wide, start, planes, offsets, conv.groups, conv.frame.length, partial)
    if not wants_dx:
        dx = None
    elif conv.winograd:
        dx = winograd_conv3x3(grad, conv.weight, np.zeros(conv.x.shape[1], grad.dtype), adjoint=True)
    else:
        dx = conv.input_grad(grad_planes, adjoint)
    return dx, partial.sum(axis=0).reshape(conv.weight.shape), dbias
