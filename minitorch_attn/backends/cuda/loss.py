"""CUDA kernels of ``ops/loss.py``: softmax cross-entropy, mean over the batch."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import device
from .device import MAX_THREADS_PER_BLOCK, _check_not_empty
from .blocks import _beats, _block_first_max, _block_sum
from .arith import _sum_over_axes


# --------------------------------------------------------------------------
# Softmax cross-entropy, mean over the batch: block m owns row m of the logits.
# --------------------------------------------------------------------------
@cuda.jit
def _softmax_cross_entropy_kernel(logits, labels, probs, row_loss):
    """lse = max + log(sum_k exp(z_k - max)); probs = exp(z - lse); row_loss = lse - z[label]."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    m = cuda.blockIdx.x
    K = logits.shape[1]
    best, best_k = -math.inf, K
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        if _beats(logits[m, k], k, best, best_k):
            best, best_k = logits[m, k], k
    peak, _ = _block_first_max(best, best_k, values, indices)
    partial = 0.0
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        partial += math.exp(logits[m, k] - peak)
    lse = peak + math.log(_block_sum(partial, values))
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        probs[m, k] = math.exp(logits[m, k] - lse)
    if cuda.threadIdx.x == 0:
        row_loss[m] = lse - logits[m, labels[m]]


@cuda.jit
def _softmax_cross_entropy_backward_kernel(grad, probs, labels, dlogits):
    """dz[m,k] = g * (probs[m,k] - [k == label[m]]) / M."""
    M, K = probs.shape
    for flat in range(cuda.grid(1), probs.size, cuda.gridsize(1)):
        m, k = flat // K, flat % K
        target = 1 if k == labels[m] else 0
        dlogits[m, k] = grad * (probs[m, k] - target) / M


def softmax_cross_entropy_forward(logits, labels):
    M, K = logits.shape
    _check_not_empty("softmax_cross_entropy_forward", "logits", logits.shape, (1,), "K (the classes)")
    d_logits, d_labels = device.upload(logits, labels.astype(np.int64, copy=False))
    probs, row_loss = device.empty(logits.shape, logits.dtype), device.empty(M, logits.dtype)
    device.launch(_softmax_cross_entropy_kernel, blocks=M, reduce_over=K)(d_logits, d_labels, probs, row_loss)
    loss = _sum_over_axes(row_loss, (M,), (0,), divisor=M)
    return loss.copy_to_host().reshape(()), probs.copy_to_host()


def softmax_cross_entropy_backward(grad, probs, labels):
    d_probs, d_labels = device.upload(probs, labels.astype(np.int64, copy=False))
    dlogits = device.empty(probs.shape, probs.dtype)
    device.launch(_softmax_cross_entropy_backward_kernel, items=probs.size)(float(grad), d_probs, d_labels, dlogits)
    return dlogits.copy_to_host()
