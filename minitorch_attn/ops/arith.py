"""Broadcasting arithmetic and shape ops."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ._checks import as_tensor, check_ndim, check_same_dtype


def _operands(a, b):
    """Two tensors of one dtype; a Python number becomes a constant of the other operand's dtype."""
    if not isinstance(a, (Tensor, np.ndarray)):
        a, b = b, a
        swapped = True
    else:
        swapped = False
    a = as_tensor(a, "a")
    b = Tensor(np.asarray(b, dtype=a.dtype)) if isinstance(b, (int, float)) else as_tensor(b, "b")
    check_same_dtype((a, b), ("a", "b"))
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"a and b must have shapes that broadcast, got a {a.shape} and b {b.shape}") from None
    return (b, a) if swapped else (a, b)


class Mul(Function):
    r"""Element-wise product with broadcasting, e.g. :math:`M_c(F) \otimes F` with (N,C,1,1) × (N,C,H,W).

    Backward: :math:`da = \Sigma_{\text{broadcast axes}}(g \cdot b)` and likewise for b.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.kernels.mul_forward(a, b)

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernels.mul_backward(grad, *ctx.saved_tensors, *ctx.needs_input_grad)


class Add(Function):
    """Element-wise sum with broadcasting; backward sums g over the broadcast axes of each input."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return ctx.kernels.add_forward(a, b)

    @staticmethod
    def backward(ctx, grad):
        return tuple(
            ctx.kernels.sum_to_shape(grad, shape) if needed else None
            for shape, needed in zip(ctx.shapes, ctx.needs_input_grad)
        )


class Concat(Function):
    """Concatenation along channels: [(N,C_1,...), (N,C_2,...)] -> (N, C_1 + C_2, ...); backward splits g."""

    @staticmethod
    def forward(ctx, *parts):
        ctx.bounds = np.cumsum([p.shape[1] for p in parts])[:-1]
        return np.concatenate(parts, axis=1)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.bounds, axis=1))


class Reshape(Function):
    """A new shape for the same elements (row-major); backward reshapes g back."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Sum(Function):
    r""":math:`\sum_i x_i` (a 0-d tensor); backward broadcasts g to x's shape."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return np.asarray(x.sum(), x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return np.broadcast_to(grad, ctx.shape).copy()


def mul(a, b):
    return Mul.apply(*_operands(a, b))


def add(a, b):
    return Add.apply(*_operands(a, b))


def concat(tensors):
    tensors = [as_tensor(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    if not tensors:
        raise ValueError("concat: tensors must not be empty")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim or t.shape[:1] + t.shape[2:] != first.shape[:1] + first.shape[2:]:
            raise ValueError(
                f"concat: tensors[{i}] has shape {t.shape}; all tensors must match {first.shape} except in dim 1"
            )
    check_same_dtype(tensors, [f"tensors[{i}]" for i in range(len(tensors))])
    return Concat.apply(*tensors)


def reshape(x, shape):
    x = as_tensor(x, "x")
    return Reshape.apply(x, _resolve_shape(x.shape, tuple(int(s) for s in shape)))


def _resolve_shape(old, new):
    """``new`` with its one allowed -1 filled in; an error if the element counts cannot match."""
    size = int(np.prod(old))
    known = int(np.prod([s for s in new if s != -1]))
    free = [i for i, s in enumerate(new) if s == -1]
    fits = len(free) <= 1 and all(s >= -1 for s in new) and (
        known == size if not free else known > 0 and size % known == 0
    )
    if not fits:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old} into {new}")
    return tuple(size // known if s == -1 else s for s in new)


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    x = as_tensor(x, "x")
    if x.ndim < 1:
        raise ValueError("flatten: x must have a batch dimension")
    return reshape(x, (x.shape[0], -1))


def sum(x):  # noqa: A001 - the op's natural name, as torch.sum
    return Sum.apply(as_tensor(x, "x"))


def mean(x):
    x = as_tensor(x, "x")
    return mul(sum(x), 1.0 / x.size)

