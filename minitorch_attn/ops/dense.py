"""Linear layer and activations."""
from __future__ import annotations

from ..autograd import Function
from ._checks import as_tensor, check_ndim, check_same_dtype


class Linear(Function):
    r"""Fully connected layer: :math:`y = x W^\top + b`; x (N, in), W (out, in), b (out,) -> (N, out).

    Backward: :math:`dx = g W`, :math:`dW = g^\top x`, :math:`db = \sum_n g`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return ctx.kernels.linear_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        dx, dweight, dbias = ctx.kernels.linear_backward(grad, x, weight, ctx.has_bias)
        return (dx, dweight, dbias) if ctx.has_bias else (dx, dweight)


class ReLU(Function):
    r""":math:`\mathrm{ReLU}(x) = \max(x, 0)`; backward passes g where the output is positive (0 at x = 0, as PyTorch)."""

    @staticmethod
    def forward(ctx, x):
        out = ctx.kernels.relu_forward(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.relu_backward(grad, *ctx.saved_tensors)


class Sigmoid(Function):
    r""":math:`\sigma(x) = 1 / (1 + e^{-x})`, computed without overflow for large |x|; :math:`\sigma' = \sigma(1 - \sigma)`."""

    @staticmethod
    def forward(ctx, x):
        out = ctx.kernels.sigmoid_forward(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.sigmoid_backward(grad, *ctx.saved_tensors)


def linear(x, weight, bias=None):
    x, weight = as_tensor(x, "x"), as_tensor(weight, "weight")
    check_ndim(x, 2, "x", "(N, in_features)")
    check_ndim(weight, 2, "weight", "(out_features, in_features)")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"linear: x has {x.shape[1]} features but weight expects in_features={weight.shape[1]} "
            f"(weight shape {weight.shape})"
        )
    if bias is None:
        check_same_dtype((x, weight), ("x", "weight"))
        return Linear.apply(x, weight)
    bias = as_tensor(bias, "bias")
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    check_same_dtype((x, weight, bias), ("x", "weight", "bias"))
    return Linear.apply(x, weight, bias)


def relu(x):
    return ReLU.apply(as_tensor(x, "x"))


def sigmoid(x):
    return Sigmoid.apply(as_tensor(x, "x"))
