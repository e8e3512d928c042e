"""Batch normalisation with PyTorch's semantics (train and eval mode, running statistics)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ._checks import as_tensor, check_same_dtype


class BatchNorm(Function):
    r"""Batch norm over every axis but the channel axis 1; x is viewed as (N, C, L) with L = H·W (or 1).

    .. math:: \hat x = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad y = \gamma \hat x + \beta

    Train mode uses the batch mean :math:`\mu_B` and the *biased* variance :math:`\sigma_B^2` (divide by m = N·L);
    eval mode uses the running statistics instead. Backward in train mode also flows through
    :math:`\mu_B` and :math:`\sigma_B^2`:
    :math:`dx = \frac{1}{\sigma}\big(d\hat x - \overline{d\hat x} - \hat x\,\overline{d\hat x\,\hat x}\big)`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, running_mean, running_var, training, momentum, eps):
        shape = x.shape
        x3 = x.reshape(shape[0], shape[1], -1)
        if training:
            out, xhat, inv_std, mean, var = ctx.kernels.batch_norm_train_forward(x3, weight, bias, eps)
            if running_mean is not None:
                update_running_stats(running_mean, running_var, mean, var, x3.shape[0] * x3.shape[2], momentum)
        else:
            out, xhat, inv_std = ctx.kernels.batch_norm_eval_forward(x3, running_mean, running_var, weight, bias, eps)
        ctx.training = training
        ctx.save_for_backward(xhat, inv_std, weight)
        return out.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        xhat, inv_std, weight = ctx.saved_tensors
        g3 = grad.reshape(xhat.shape)
        dx, dweight, dbias = ctx.kernels.batch_norm_backward(g3, xhat, inv_std, weight, ctx.training)
        return dx.reshape(grad.shape), dweight, dbias


def update_running_stats(running_mean, running_var, batch_mean, batch_var, count, momentum):
    r"""In place: :math:`r \leftarrow (1 - m)\,r + m\,b`, with the *unbiased* batch variance
    :math:`\sigma_B^2 \cdot \frac{count}{count - 1}` (PyTorch's convention)."""
    running_mean *= 1 - momentum
    running_mean += momentum * batch_mean
    running_var *= 1 - momentum
    running_var += momentum * batch_var * (count / (count - 1))


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1, eps=1e-5):
    """Checked entry point; in train mode it also updates ``running_mean``/``running_var`` (ndarrays) in place."""
    x, weight, bias = as_tensor(x, "x"), as_tensor(weight, "weight"), as_tensor(bias, "bias")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"batch_norm: x must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    channels = x.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        # Buffers updated in place: a Tensor or another dtype would be silently copied or would change
        # the output's dtype.
        if value is not None and (not isinstance(value, np.ndarray) or value.dtype != x.dtype):
            raise TypeError(f"batch_norm: {name} must be None or an ndarray of x's dtype {x.dtype}, got "
                            f"{type(value).__name__} of dtype {getattr(value, 'dtype', None)}")
    for name, value in (("weight", weight.data), ("bias", bias.data),
                        ("running_mean", running_mean), ("running_var", running_var)):
        if value is not None and np.shape(value) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},) for x of shape {x.shape}, "
                             f"got {np.shape(value)}")
    check_same_dtype((x, weight, bias), ("x", "weight", "bias"))
    if not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
    if eps <= 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps}")
    count = x.size // channels
    if training and count == 1:
        raise ValueError(
            f"batch_norm: x must have more than 1 value per channel when training (N·H·W > 1), "
            f"got x of shape {x.shape}"
        )
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    return BatchNorm.apply(x, weight, bias, running_mean=running_mean, running_var=running_var,
                           training=training, momentum=momentum, eps=eps)
