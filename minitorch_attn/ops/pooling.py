"""Global pooling over H×W and channel-wise pooling over C (CBAM's descriptors)."""
from __future__ import annotations

from ..autograd import Function
from ._checks import nchw as _nchw


class GlobalAvgPool(Function):
    r"""AvgPool: :math:`F^c_{avg}[n,c] = \frac{1}{HW}\sum_{i,j} F[n,c,i,j]`. (N,C,H,W) -> (N,C).

    Backward: every position receives :math:`g[n,c]/(HW)`.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return ctx.kernels.global_avg_pool_forward(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.global_avg_pool_backward(grad, ctx.shape)


class GlobalMaxPool(Function):
    r"""MaxPool: :math:`F^c_{max}[n,c] = \max_{i,j} F[n,c,i,j]`. (N,C,H,W) -> (N,C).

    Backward: all of :math:`g[n,c]` goes to the first maximum (row-major), PyTorch's choice.
    """

    @staticmethod
    def forward(ctx, x):
        out, index = ctx.kernels.global_max_pool_forward(x)
        ctx.shape = x.shape
        ctx.save_for_backward(index)
        return out

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return ctx.kernels.global_max_pool_backward(grad, index, ctx.shape)


class GlobalLPPool(Function):
    r"""LP pool with p = 2 (official CBAM ``'lp'``): :math:`\big(\sum_{i,j} F[n,c,i,j]^2\big)^{1/2}`. (N,C,H,W) -> (N,C).

    Backward: :math:`g \cdot F / \text{out}` (0 where the whole plane is 0).
    """

    @staticmethod
    def forward(ctx, x):
        out = ctx.kernels.global_lp_pool_forward(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.global_lp_pool_backward(grad, *ctx.saved_tensors)


class GlobalLSEPool(Function):
    r"""Log-sum-exp pool (official CBAM ``'lse'``): :math:`\log\sum_{i,j} e^{F[n,c,i,j]}`. (N,C,H,W) -> (N,C).

    Backward: :math:`g \cdot \mathrm{softmax}_{i,j}(F)`.
    """

    @staticmethod
    def forward(ctx, x):
        out = ctx.kernels.global_lse_pool_forward(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.global_lse_pool_backward(grad, *ctx.saved_tensors)


class GlobalAvgMaxPool(Function):
    """Both CBAM descriptors, ``(AvgPool(F), MaxPool(F))``, in one pass over F (fused on Numba/CUDA)."""

    @staticmethod
    def forward(ctx, x):
        avg, peak, index = ctx.kernels.global_avg_max_pool_forward(x)
        ctx.shape = x.shape
        ctx.save_for_backward(index)
        return avg, peak

    @staticmethod
    def backward(ctx, grad_avg, grad_max):
        (index,) = ctx.saved_tensors
        return ctx.kernels.global_avg_max_pool_backward(grad_avg, grad_max, index, ctx.shape,
                                                        add_to=ctx.accumulate_into[0])


class ChannelMean(Function):
    r"""Channel-wise AvgPool: :math:`F^s_{avg}[n,0,i,j] = \frac{1}{C}\sum_c F[n,c,i,j]`. (N,C,H,W) -> (N,1,H,W)."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return ctx.kernels.channel_mean_forward(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.channel_mean_backward(grad, ctx.shape)


class ChannelMax(Function):
    r"""Channel-wise MaxPool: :math:`F^s_{max}[n,0,i,j] = \max_c F[n,c,i,j]`. (N,C,H,W) -> (N,1,H,W).

    Backward: all of the gradient to the first maximal channel (``torch.max(dim=1)``'s index).
    """

    @staticmethod
    def forward(ctx, x):
        out, index = ctx.kernels.channel_max_forward(x)
        ctx.shape = x.shape
        ctx.save_for_backward(index)
        return out

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return ctx.kernels.channel_max_backward(grad, index, ctx.shape)


def global_avg_pool(x):
    return GlobalAvgPool.apply(_nchw(x))


def global_max_pool(x):
    return GlobalMaxPool.apply(_nchw(x))


def global_lp_pool(x):
    return GlobalLPPool.apply(_nchw(x))


def global_lse_pool(x):
    return GlobalLSEPool.apply(_nchw(x))


def global_avg_max_pool(x):
    return GlobalAvgMaxPool.apply(_nchw(x))


def channel_mean(x):
    return ChannelMean.apply(_nchw(x))


def channel_max(x):
    return ChannelMax.apply(_nchw(x))


GLOBAL_POOLS = {"avg": global_avg_pool, "max": global_max_pool, "lp": global_lp_pool, "lse": global_lse_pool}
