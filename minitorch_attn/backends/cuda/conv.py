"""CUDA kernels of ``ops/conv.py``: conv2d forward and backward, one thread per output or input element."""
from __future__ import annotations

import numpy as np
from numba import cuda

from ..numpy_backend import conv_output_size
from . import device
from .device import MAX_THREADS_PER_BLOCK
from .blocks import _block_sum
from .arith import _sum_over_axes


# --------------------------------------------------------------------------
# Convolution (cross-correlation) with stride s, zero padding p, dilation d, groups.
# Output pixel (oh, ow) reads, through tap (i, j), input pixel
#     (ih, iw) = (oh*s_h - p_h + i*d_h, ow*s_w - p_w + j*d_w),
# and a pixel outside the input is a padding zero. Channel c belongs to group c // CG.
# --------------------------------------------------------------------------
@cuda.jit
def _conv2d_kernel(x, weight, bias, stride, padding, dilation, out):
    """out[n,o,oh,ow] = b[o] + sum_{cg,i,j} W[o,cg,i,j] x[n, g*CG + cg, ih, iw]: one thread per output."""
    N, CO, OH, OW = out.shape
    H, W = x.shape[2], x.shape[3]
    CG, KH, KW = weight.shape[1], weight.shape[2], weight.shape[3]
    outputs_per_group = CO // (x.shape[1] // CG)
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, o, oh, ow = flat // (CO * OH * OW), flat // (OH * OW) % CO, flat // OW % OH, flat % OW
        first_channel = o // outputs_per_group * CG
        total = 0.0
        for cg in range(CG):
            for i in range(KH):
                ih = oh * stride[0] - padding[0] + i * dilation[0]
                for j in range(KW):
                    iw = ow * stride[1] - padding[1] + j * dilation[1]
                    if 0 <= ih < H and 0 <= iw < W:
                        total += weight[o, cg, i, j] * x[n, first_channel + cg, ih, iw]
        out[n, o, oh, ow] = total + bias[o]


@cuda.jit(device=True)
def _output_position(pixel, tap, stride, padding, dilation, size):
    """The output row (or column) that read input ``pixel`` through ``tap``, or -1 if none did."""
    shifted = pixel + padding - tap * dilation
    if shifted < 0 or shifted % stride != 0 or shifted // stride >= size:
        return -1
    return shifted // stride


@cuda.jit
def _conv2d_input_grad_kernel(grad, weight, stride, padding, dilation, dx):
    """dx[n,c,ih,iw] = sum over the outputs o of c's group and the taps (i,j) that read (ih,iw) of
    g[n,o,oh,ow] W[o,cg,i,j]: one thread per input element gathers, so no two threads write one place."""
    N, C, H, W = dx.shape
    CO, OH, OW = grad.shape[1], grad.shape[2], grad.shape[3]
    CG, KH, KW = weight.shape[1], weight.shape[2], weight.shape[3]
    outputs_per_group = CO // (C // CG)
    for flat in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, ih, iw = flat // (C * H * W), flat // (H * W) % C, flat // W % H, flat % W
        group, cg = c // CG, c % CG
        total = 0.0
        for o in range(group * outputs_per_group, (group + 1) * outputs_per_group):
            for i in range(KH):
                oh = _output_position(ih, i, stride[0], padding[0], dilation[0], OH)
                for j in range(KW):
                    ow = _output_position(iw, j, stride[1], padding[1], dilation[1], OW)
                    if oh >= 0 and ow >= 0:
                        total += grad[n, o, oh, ow] * weight[o, cg, i, j]
        dx[n, c, ih, iw] = total


@cuda.jit
def _conv2d_weight_grad_kernel(grad, x, stride, padding, dilation, dweight):
    """dW[o,cg,i,j] = sum_{n,oh,ow} g[n,o,oh,ow] x[n, g*CG + cg, ih, iw]: block (o,cg,i,j) tree-sums."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, CO, OH, OW = grad.shape
    H, W = x.shape[2], x.shape[3]
    CG, KH, KW = dweight.shape[1], dweight.shape[2], dweight.shape[3]
    b = cuda.blockIdx.x
    o, cg, i, j = b // (CG * KH * KW), b // (KH * KW) % CG, b // KW % KH, b % KW
    c = o // (CO // (x.shape[1] // CG)) * CG + cg
    partial = 0.0
    for k in range(cuda.threadIdx.x, N * OH * OW, cuda.blockDim.x):
        n, oh, ow = k // (OH * OW), k // OW % OH, k % OW
        ih = oh * stride[0] - padding[0] + i * dilation[0]
        iw = ow * stride[1] - padding[1] + j * dilation[1]
        if 0 <= ih < H and 0 <= iw < W:
            partial += grad[n, o, oh, ow] * x[n, c, ih, iw]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dweight[o, cg, i, j] = total


def _conv_geometry(stride, padding, dilation):
    return tuple(np.asarray(v, np.int64) for v in (stride, padding, dilation))


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, workspace=None):
    """``workspace`` (see numpy_backend.conv2d_forward): nothing is kept on this backend."""
    N, C, H, W = x.shape
    CO, CG, KH, KW = weight.shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    d_x, d_weight, d_bias, *geometry = device.upload(
        x, weight, np.zeros(CO, x.dtype) if bias is None else bias, *_conv_geometry(stride, padding, dilation))
    out = device.empty((N, CO, OH, OW), x.dtype)
    device.launch(_conv2d_kernel, items=out.size)(d_x, d_weight, d_bias, *geometry, out)
    return out.copy_to_host()


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias, workspace=None):
    N, C, H, W = x.shape
    d_grad, d_x, d_weight, *geometry = device.upload(grad, x, weight, *_conv_geometry(stride, padding, dilation))
    dx, dweight = device.empty(x.shape, x.dtype), device.empty(weight.shape, weight.dtype)
    device.launch(_conv2d_input_grad_kernel, items=dx.size)(d_grad, d_weight, *geometry, dx)
    device.launch(_conv2d_weight_grad_kernel, blocks=weight.size, reduce_over=N * grad.shape[2] * grad.shape[3])(
        d_grad, d_x, *geometry, dweight)
    dbias = _sum_over_axes(d_grad, grad.shape, (0, 2, 3)).copy_to_host() if has_bias else None
    return dx.copy_to_host(), dweight.copy_to_host(), dbias
