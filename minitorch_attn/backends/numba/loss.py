"""Kernels of ``ops/loss.py``: softmax cross-entropy, mean over the batch."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import _as_float, _as_index, _check_not_empty
from .lanes import _lane_sum, _sum_and_first_max


# --------------------------------------------------------------------------
# Softmax cross-entropy, mean over the batch
# --------------------------------------------------------------------------
@njit(parallel=True, cache=True)
def _softmax_cross_entropy_loop(logits, labels, probs, picked):
    """log p[b, k] = z[b, k] - m - log Σ_k exp(z[b, k] - m), m = max_k z[b, k]; picked[b] = log p[b, label]."""
    B, K = logits.shape
    for b in prange(B):
        _, peak, _ = _sum_and_first_max(logits[b])
        total = logits.dtype.type(0)
        for k in range(K):
            total += np.exp(logits[b, k] - peak)
        log_total = np.log(total)
        for k in range(K):
            probs[b, k] = np.exp((logits[b, k] - peak) - log_total)
        picked[b] = (logits[b, labels[b]] - peak) - log_total


@njit(parallel=True, cache=True)
def _softmax_cross_entropy_backward_loop(probs, labels, scale, dlogits):
    """dz[b, k] = (p[b, k] - [k == label]) · g / B."""
    one = probs.dtype.type(1)
    for b in prange(probs.shape[0]):
        for k in range(probs.shape[1]):
            target = one if k == labels[b] else probs.dtype.type(0)
            dlogits[b, k] = (probs[b, k] - target) * scale


def _labels(kernel, labels, batch, classes):
    return _as_index(kernel, "labels", labels, (batch,), classes)


def softmax_cross_entropy_forward(logits, labels):
    """Returns ``(loss, probabilities)``; ``loss`` is a 0-d array."""
    logits = _as_float("softmax_cross_entropy_forward", "logits", logits, 2)
    _check_not_empty("softmax_cross_entropy_forward", "logits", logits.shape, (1,), "K (the classes)")
    labels = _labels("softmax_cross_entropy_forward", labels, *logits.shape)
    probs = np.empty_like(logits)
    picked = np.empty(logits.shape[0], logits.dtype)
    _softmax_cross_entropy_loop(logits, labels, probs, picked)
    # The batch mean runs after the parallel loop, in order b = 0..B-1.
    loss = -(_lane_sum(picked) / logits.dtype.type(len(picked)))
    return np.asarray(loss, logits.dtype), probs


def softmax_cross_entropy_backward(grad, probs, labels):
    probs = _as_float("softmax_cross_entropy_backward", "probs", probs, 2)
    labels = _labels("softmax_cross_entropy_backward", labels, *probs.shape)
    grad = _as_float("softmax_cross_entropy_backward", "grad", grad, 0, probs.dtype)
    dlogits = np.empty_like(probs)
    _softmax_cross_entropy_backward_loop(probs, labels, grad[()] / probs.dtype.type(len(labels)), dlogits)
    return dlogits
