"""Softmax cross-entropy (for training the backbones)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ._checks import as_tensor, check_ndim


class SoftmaxCrossEntropy(Function):
    r""":math:`L = -\frac{1}{N}\sum_n \log \mathrm{softmax}(z_n)_{y_n}`; logits (N, K), labels (N,) -> scalar.

    Backward: :math:`dz = g\,(\mathrm{softmax}(z) - \mathrm{onehot}(y)) / N`.
    """

    @staticmethod
    def forward(ctx, logits, labels):
        loss, probs = ctx.kernels.softmax_cross_entropy_forward(logits, labels)
        ctx.save_for_backward(probs, labels)
        return loss

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.softmax_cross_entropy_backward(grad, *ctx.saved_tensors)


def cross_entropy(logits, labels):
    logits = as_tensor(logits, "logits")
    check_ndim(logits, 2, "logits", "(N, K)")
    labels = np.asarray(labels)
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"cross_entropy: labels must be integers of shape ({logits.shape[0]},), "
                         f"got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), "
                         f"got values from {labels.min()} to {labels.max()}")
    return SoftmaxCrossEntropy.apply(logits, labels.astype(np.int64))
