"""Attention-specific ops with fused kernels (single passes over F on Numba/CUDA).

On the NumPy backend they run the unfused reference kernels, so the same module
code is the readable path there and the fast path elsewhere.
"""
from __future__ import annotations

from ..autograd import Function
from ._checks import as_tensor, check_ndim, check_same_dtype, nchw


class ChannelGateAndPool(Function):
    r"""CBAM's :math:`F' = M_c \otimes F` together with the channel pool of F' that the spatial gate reads:

    F (N,C,H,W), M_c (N,C) -> F' (N,C,H,W), :math:`[\mathrm{AvgPool}_c(F'); \mathrm{MaxPool}_c(F')]` (N,2,H,W).
    (The paper's order: mean first; the official code stacks ``[max, mean]``.)
    """

    @staticmethod
    def forward(ctx, x, gate):
        y, pooled, index = ctx.kernels.channel_gate_and_pool_forward(x, gate)
        ctx.save_for_backward(x, gate, index)
        return y, pooled

    @staticmethod
    def backward(ctx, grad_y, grad_pooled):
        return ctx.kernels.channel_gate_and_pool_backward(grad_y, grad_pooled, *ctx.saved_tensors)


class ResidualGate(Function):
    r"""BAM's output with sum fusion: :math:`F' = F + F \otimes \sigma(M_c(F) + M_s(F))`.

    F (N,C,H,W), M_c (N,C), M_s (N,1,H,W), broadcast to C×H×W before the sum -> (N,C,H,W).
    """

    @staticmethod
    def forward(ctx, x, channel_logit, spatial_logit):
        ctx.save_for_backward(x, channel_logit, spatial_logit)
        return ctx.kernels.residual_gate_forward(x, channel_logit, spatial_logit)

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.residual_gate_backward(grad, *ctx.saved_tensors)


def _check_channel_gate(x, gate, name):
    gate = as_tensor(gate, name)
    check_ndim(gate, 2, name, "(N, C)")
    if gate.shape != x.shape[:2]:
        raise ValueError(f"{name} must have shape (N, C) = {x.shape[:2]} for x of shape {x.shape}, got {gate.shape}")
    return gate


def channel_gate_and_pool(x, gate):
    x = nchw(x)
    gate = _check_channel_gate(x, gate, "gate")
    check_same_dtype((x, gate), ("x", "gate"))
    return ChannelGateAndPool.apply(x, gate)


def residual_gate(x, channel_logit, spatial_logit):
    x = nchw(x)
    channel_logit = _check_channel_gate(x, channel_logit, "channel_logit")
    spatial_logit = nchw(spatial_logit, "spatial_logit")
    expected = (x.shape[0], 1) + x.shape[2:]
    if spatial_logit.shape != expected:
        raise ValueError(f"spatial_logit must have shape {expected} for x of shape {x.shape}, got {spatial_logit.shape}")
    check_same_dtype((x, channel_logit, spatial_logit), ("x", "channel_logit", "spatial_logit"))
    return ResidualGate.apply(x, channel_logit, spatial_logit)
