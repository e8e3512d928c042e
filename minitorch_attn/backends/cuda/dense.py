"""CUDA kernels of ``ops/dense.py``: the linear layer, ReLU and sigmoid."""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import device
from .device import MAX_THREADS_PER_BLOCK
from .blocks import _block_sum, _sigmoid
from .arith import _sum_over_axes


# --------------------------------------------------------------------------
# Dense layers and activations
# --------------------------------------------------------------------------
@cuda.jit
def _linear_kernel(x, weight, bias, out):
    """out[m, o] = b[o] + sum_k x[m, k] W[o, k]: one thread per output element."""
    M, O = out.shape
    for flat in range(cuda.grid(1), M * O, cuda.gridsize(1)):
        m, o = flat // O, flat % O
        total = 0.0
        for k in range(x.shape[1]):
            total += x[m, k] * weight[o, k]
        out[m, o] = total + bias[o]


@cuda.jit
def _linear_input_grad_kernel(grad, weight, dx):
    """dx[m, k] = sum_o g[m, o] W[o, k]: one thread per input element."""
    M, K = dx.shape
    for flat in range(cuda.grid(1), M * K, cuda.gridsize(1)):
        m, k = flat // K, flat % K
        total = 0.0
        for o in range(grad.shape[1]):
            total += grad[m, o] * weight[o, k]
        dx[m, k] = total


@cuda.jit
def _linear_weight_grad_kernel(grad, x, dweight):
    """dW[o, k] = sum_m g[m, o] x[m, k]: block (o, k) tree-sums over the batch."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    K = dweight.shape[1]
    o, k = cuda.blockIdx.x // K, cuda.blockIdx.x % K
    partial = 0.0
    for m in range(cuda.threadIdx.x, grad.shape[0], cuda.blockDim.x):
        partial += grad[m, o] * x[m, k]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dweight[o, k] = total


def linear_forward(x, weight, bias):
    M, O = x.shape[0], weight.shape[0]
    # no bias is a zero bias: one kernel for both
    d_x, d_weight, d_bias = device.upload(x, weight, np.zeros(O, x.dtype) if bias is None else bias)
    out = device.empty((M, O), x.dtype)
    device.launch(_linear_kernel, items=M * O)(d_x, d_weight, d_bias, out)
    return out.copy_to_host()


def linear_backward(grad, x, weight, has_bias):
    d_grad, d_x, d_weight = device.upload(grad, x, weight)
    dx, dweight = device.empty(x.shape, x.dtype), device.empty(weight.shape, weight.dtype)
    device.launch(_linear_input_grad_kernel, items=x.size)(d_grad, d_weight, dx)
    device.launch(_linear_weight_grad_kernel, blocks=weight.size, reduce_over=x.shape[0])(d_grad, d_x, dweight)
    dbias = _sum_over_axes(d_grad, grad.shape, (0,)).copy_to_host() if has_bias else None
    return dx.copy_to_host(), dweight.copy_to_host(), dbias


@cuda.jit
def _relu_kernel(x, out):
    """max(x, 0), with NaN kept (as np.maximum and torch.relu keep it): test x < 0, not x > 0."""
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[k] = 0 if x[k] < 0 else x[k]


@cuda.jit
def _relu_backward_kernel(grad, out, dx):
    """dx = 0 where out <= 0, else g (NaN outputs pass the gradient, as in PyTorch)."""
    for k in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        dx[k] = 0 if out[k] <= 0 else grad[k]


@cuda.jit
def _sigmoid_kernel(x, out):
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[k] = _sigmoid(x[k])


@cuda.jit
def _sigmoid_backward_kernel(grad, out, dx):
    """dx = g * s * (1 - s) with s = sigmoid(x), the saved output."""
    for k in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        dx[k] = grad[k] * out[k] * (1 - out[k])


def _elementwise(kernel, *arrays):
    """Run an element-wise kernel on same-shaped arrays; the result has the first one's shape and dtype."""
    devices = device.upload(*(a.reshape(-1) for a in arrays))
    out = device.empty(arrays[0].size, arrays[0].dtype)
    device.launch(kernel, items=out.size)(*devices, out)
    return out.copy_to_host().reshape(arrays[0].shape)


def relu_forward(x):
    return _elementwise(_relu_kernel, x)


def relu_backward(grad, out):
    return _elementwise(_relu_backward_kernel, grad, out)


def sigmoid_forward(x):
    return _elementwise(_sigmoid_kernel, x)


def sigmoid_backward(grad, out):
    return _elementwise(_sigmoid_backward_kernel, grad, out)
