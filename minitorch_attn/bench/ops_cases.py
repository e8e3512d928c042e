"""The op cases: one autograd Function of ours and the same computation in plain PyTorch.

Every op runs at the shapes it has inside the blocks: F-sized ops on (N,C,H,W), the spatial convolution
on CBAM's pooled pair (N,2,H,W), BAM's reduced-branch ops on (N,C/r,H,W).

Ours is timed at the Function level (``forward(ctx, ...)`` then ``backward(ctx, ...)``): that is the op's
whole work, kernels and their Python glue, without the tape's bookkeeping, which belongs to the blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import ops
from ..autograd import Context
from ..backends import kernels
from .traffic import reduced_channels

#: The reduction ratio r of both papers, used for the reduced-map op shapes.
REDUCTION = 16


@dataclass(frozen=True)
class OpCase:
    """``inputs(shape, dtype, rng)`` -> the op's array arguments (all differentiated);
    ``options(shape, dtype)`` -> its keyword options; ``torch_forward(tensors, options, variant)`` -> torch outputs."""

    name: str
    function: type
    inputs: Callable
    torch_forward: Callable
    options: Callable = lambda shape, dtype: {}
    variants: tuple = ("eager",)


def _full(shape, dtype, rng):
    return rng.standard_normal(shape).astype(dtype)


def _reduced_shape(shape):
    n, c, h, w = shape
    return (n, reduced_channels(c, REDUCTION), h, w)


def _plane(shape, channels=1):
    n, _, h, w = shape
    return (n, channels, h, w)


def global_max(x, variant):
    """Max over H×W: ``amax`` (splits the gradient between ties) or the index-based ``max`` (first maximum)."""
    if variant == "amax":
        return x.amax(dim=(2, 3))
    return x.flatten(2).max(dim=2).values


def channel_max(x, variant):
    if variant == "amax":
        return x.amax(dim=1, keepdim=True)
    return x.max(dim=1, keepdim=True).values


MAX_VARIANTS = ("amax", "index")


def torch_global_avg_max_pool(tensors, options, variant):
    (x,) = tensors
    return x.mean(dim=(2, 3)), global_max(x, variant)


def torch_gated_channel_pool(tensors, options, variant):
    import torch

    x, gate = tensors
    y = x * gate[:, :, None, None]
    return (torch.cat([y.mean(dim=1, keepdim=True), channel_max(y, variant)], dim=1),)


def torch_channel_spatial_gate(tensors, options, variant):
    x, channel_gate, spatial_gate = tensors
    return (x * channel_gate[:, :, None, None] * spatial_gate,)


def torch_residual_gate(tensors, options, variant):
    import torch

    x, channel_logit, spatial_logit = tensors
    # addcmul fuses the product and the residual sum: two passes over F fewer than x + x * gate.
    return (torch.addcmul(x, x, torch.sigmoid(channel_logit[:, :, None, None] + spatial_logit)),)


def torch_conv2d(tensors, options, variant):
    import torch.nn.functional as F

    return (F.conv2d(*tensors, stride=options["stride"], padding=options["padding"],
                     dilation=options["dilation"], groups=options["groups"]),)


def torch_batch_norm(tensors, options, variant):
    import torch.nn.functional as F

    x, weight, bias = tensors
    return (F.batch_norm(x, options["running_mean"], options["running_var"], weight, bias,
                         training=True, momentum=options["momentum"], eps=options["eps"]),)


def _conv_options(padding, dilation):
    return lambda shape, dtype: dict(stride=(1, 1), padding=(padding, padding), dilation=(dilation, dilation), groups=1)


def _conv_inputs(in_shape, c_out, k, bias):
    def build(shape, dtype, rng):
        x_shape = in_shape(shape)
        c_in = x_shape[1]
        bound = 1 / np.sqrt(c_in * k * k)
        arrays = [_full(x_shape, dtype, rng),
                  rng.uniform(-bound, bound, (c_out(shape), c_in, k, k)).astype(dtype)]
        if bias:
            arrays.append(rng.uniform(-bound, bound, c_out(shape)).astype(dtype))
        return tuple(arrays)

    return build


def _batch_norm_options(shape, dtype):
    channels = _reduced_shape(shape)[1]
    return dict(running_mean=np.zeros(channels, dtype), running_var=np.ones(channels, dtype), training=True,
                momentum=0.1, eps=1e-5)


def _batch_norm_inputs(shape, dtype, rng):
    channels = _reduced_shape(shape)[1]
    return (_full(_reduced_shape(shape), dtype, rng), rng.uniform(0.5, 1.5, channels).astype(dtype),
            rng.standard_normal(channels).astype(dtype))


OP_CASES = {case.name: case for case in (
    OpCase("global_avg_max_pool", ops.GlobalAvgMaxPool,
           lambda shape, dtype, rng: (_full(shape, dtype, rng),),
           torch_global_avg_max_pool, variants=MAX_VARIANTS),
    OpCase("gated_channel_pool", ops.GatedChannelPool,
           lambda shape, dtype, rng: (_full(shape, dtype, rng), rng.uniform(0, 1, shape[:2]).astype(dtype)),
           torch_gated_channel_pool, variants=MAX_VARIANTS),
    OpCase("channel_spatial_gate", ops.ChannelSpatialGate,
           lambda shape, dtype, rng: (_full(shape, dtype, rng), rng.uniform(0, 1, shape[:2]).astype(dtype),
                                      rng.uniform(0, 1, _plane(shape)).astype(dtype)),
           torch_channel_spatial_gate),
    OpCase("conv7x7", ops.Conv2d, _conv_inputs(lambda shape: _plane(shape, 2), lambda shape: 1, 7, bias=False),
           torch_conv2d, options=_conv_options(3, 1)),
    OpCase("residual_gate", ops.ResidualGate,
           lambda shape, dtype, rng: (_full(shape, dtype, rng), _full(shape[:2], dtype, rng),
                                      _full(_plane(shape), dtype, rng)),
           torch_residual_gate),
    OpCase("conv1x1_reduce", ops.Conv2d,
           _conv_inputs(lambda shape: shape, lambda shape: _reduced_shape(shape)[1], 1, bias=True),
           torch_conv2d, options=_conv_options(0, 1)),
    OpCase("conv3x3_dilated", ops.Conv2d,
           _conv_inputs(_reduced_shape, lambda shape: _reduced_shape(shape)[1], 3, bias=True),
           torch_conv2d, options=_conv_options(4, 4)),
    OpCase("batch_norm", ops.BatchNorm, _batch_norm_inputs, torch_batch_norm, options=_batch_norm_options),
)}


class OursOp:
    """One op of ours ready to run: its inputs, an upstream gradient per output, and the two timed passes."""

    def __init__(self, case, shape, dtype, seed):
        rng = np.random.default_rng(seed)
        self.case = case
        self.arrays = case.inputs(shape, np.dtype(dtype), rng)
        self.options = case.options(shape, np.dtype(dtype))
        self.kernels = kernels()
        outputs = self._forward(self._context())[1]
        self.upstream = tuple(rng.standard_normal(o.shape).astype(dtype) for o in outputs)

    def _context(self):
        return Context(self.kernels, (True,) * len(self.arrays))

    def _forward(self, ctx):
        out = self.case.function.forward(ctx, *self.arrays, **self.options)
        return ctx, out if isinstance(out, tuple) else (out,)

    def forward(self):
        return self._forward(self._context())[1]

    def forward_backward(self):
        """(outputs, input gradients)."""
        ctx, outputs = self._forward(self._context())
        grads = self.case.function.backward(ctx, *self.upstream)
        return outputs, grads if isinstance(grads, tuple) else (grads,)


class TorchOp:
    """The same op in PyTorch on copies of the same arrays and upstream gradients."""

    def __init__(self, ours, variant):
        import torch

        self.case, self.variant = ours.case, variant
        # array options (batch norm's running statistics) get torch copies: each side updates its own
        self.options = {key: torch.tensor(value) if isinstance(value, np.ndarray) else value
                        for key, value in ours.options.items()}
        self.tensors = [torch.tensor(a, requires_grad=True) for a in ours.arrays]
        self.upstream = [torch.from_numpy(g) for g in ours.upstream]

    def forward(self):
        import torch

        with torch.no_grad():
            return self.case.torch_forward(self.tensors, self.options, self.variant)

    def forward_backward(self):
        import torch

        for t in self.tensors:
            t.grad = None
        outputs = self.case.torch_forward(self.tensors, self.options, self.variant)
        torch.autograd.backward(outputs, self.upstream)
        return outputs, tuple(t.grad for t in self.tensors)
