"""Attention-specific ops with fused kernels (single passes over F on Numba/CUDA).

On the NumPy backend they run the unfused reference kernels, so the same module
code is the readable path there and the fast path elsewhere.
"""
from __future__ import annotations

from ..autograd import Function
from ._checks import as_tensor, check_ndim, check_same_dtype, nchw


class GatedChannelPool(Function):
    r"""The channel pool that CBAM's spatial gate reads, of :math:`F' = M_c \otimes F`, without storing F':

    F (N,C,H,W), M_c (N,C) -> :math:`[\mathrm{AvgPool}_c(F'); \mathrm{MaxPool}_c(F')]` (N,2,H,W).
    (The paper's order: mean first; the official code stacks ``[max, mean]``.)
    """

    @staticmethod
    def forward(ctx, x, gate):
        pooled, index = ctx.kernels.gated_channel_pool_forward(x, gate)
        ctx.save_for_backward(x, gate, index)
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled):
        return ctx.kernels.gated_channel_pool_backward(grad_pooled, *ctx.saved_tensors,
                                                       add_to=ctx.accumulate_into[0])


class ChannelSpatialGate(Function):
    r"""CBAM's output in the channel-first arrangement (Eq. 1): :math:`F'' = M_s \otimes (M_c \otimes F)`.

    F (N,C,H,W), M_c (N,C), M_s (N,1,H,W), broadcast over H×W and C -> (N,C,H,W). F' = M_c ⊗ F is
    formed on the fly, in the forward and in the backward pass, instead of being stored.
    """

    @staticmethod
    def forward(ctx, x, channel_gate, spatial_gate):
        ctx.save_for_backward(x, channel_gate, spatial_gate)
        return ctx.kernels.channel_spatial_gate_forward(x, channel_gate, spatial_gate)

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.channel_spatial_gate_backward(grad, *ctx.saved_tensors)


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


def gated_channel_pool(x, gate):
    x = nchw(x)
    gate = _check_channel_gate(x, gate, "gate")
    check_same_dtype((x, gate), ("x", "gate"))
    return GatedChannelPool.apply(x, gate)


def _check_spatial_map(x, spatial, name):
    spatial = nchw(spatial, name)
    expected = (x.shape[0], 1) + x.shape[2:]
    if spatial.shape != expected:
        raise ValueError(f"{name} must have shape {expected} for x of shape {x.shape}, got {spatial.shape}")
    return spatial


def channel_spatial_gate(x, channel_gate, spatial_gate):
    x = nchw(x)
    channel_gate = _check_channel_gate(x, channel_gate, "channel_gate")
    spatial_gate = _check_spatial_map(x, spatial_gate, "spatial_gate")
    check_same_dtype((x, channel_gate, spatial_gate), ("x", "channel_gate", "spatial_gate"))
    return ChannelSpatialGate.apply(x, channel_gate, spatial_gate)


def residual_gate(x, channel_logit, spatial_logit):
    x = nchw(x)
    channel_logit = _check_channel_gate(x, channel_logit, "channel_logit")
    spatial_logit = _check_spatial_map(x, spatial_logit, "spatial_logit")
    check_same_dtype((x, channel_logit, spatial_logit), ("x", "channel_logit", "spatial_logit"))
    return ResidualGate.apply(x, channel_logit, spatial_logit)
