"""A small tape autograd in the style of ``torch.autograd.Function`` and MiniTorch.

An op is a :class:`Function` with two static methods written by hand:

* ``forward(ctx, *arrays, **options)`` gets plain ndarrays and returns an ndarray
  (or a tuple of them for ops with several outputs);
* ``backward(ctx, *grad_outputs)`` gets one gradient per output and returns one
  gradient per *tensor* input (``None`` where an input needs none).

``Function.apply`` records a :class:`Node` linking the outputs to their inputs.
``Tensor.backward`` walks those nodes in reverse topological order and *adds*
gradients, so a tensor used twice (CBAM uses ``F`` in the gate and in the
product) receives the sum of both contributions.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import backends

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (inference, parameter updates)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


class Context:
    """What ``forward`` leaves for ``backward``.

    ``kernels`` is the backend that ran the forward pass: the backward pass uses
    the same one even if the global backend changed in between.
    """

    def __init__(self, kernels, needs_input_grad):
        self.kernels = kernels
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Node:
    """One application of a Function: the tape entry."""

    __slots__ = ("function", "ctx", "inputs", "output_meta")

    def __init__(self, function, ctx, inputs, output_meta):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs  # the Tensor arguments, in order
        self.output_meta = output_meta  # (shape, dtype) per output


class Function:
    """Base class of every differentiable op (see the module docstring)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from .tensor import Tensor

        tensor_args = tuple(a for a in args if isinstance(a, Tensor))
        needs = tuple(t.requires_grad for t in tensor_args)
        record = is_grad_enabled() and any(needs)
        ctx = Context(backends.kernels(), needs)
        raw = cls.forward(ctx, *(a.data if isinstance(a, Tensor) else a for a in args), **kwargs)
        single = not isinstance(raw, tuple)
        outputs = (raw,) if single else raw
        wrapped = tuple(Tensor(np.asarray(o), requires_grad=record) for o in outputs)
        if record:
            node = Node(cls, ctx, tensor_args, tuple((o.shape, o.dtype) for o in wrapped))
            for index, out in enumerate(wrapped):
                out._node, out._output_index = node, index
        return wrapped[0] if single else wrapped


def _topological_nodes(root_node):
    order, seen = [], set()
    stack = [(root_node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t._node is not None and id(t._node) not in seen:
                stack.append((t._node, False))
    return order[::-1]  # outputs first


def run_backward(root, grad):
    """Propagate ``grad`` (d loss / d root) to every leaf that requires grad."""
    if root._node is None:
        root._accumulate(grad)
        return
    pending = {id(root._node): [None] * len(root._node.output_meta)}
    pending[id(root._node)][root._output_index] = grad
    leaf_grads = {}  # id(leaf) -> (leaf, its contributions in order, add), added once at the end
    for node in _topological_nodes(root._node):
        grads = pending.pop(id(node), None)
        if grads is None:
            continue
        grads = [g if g is not None else np.zeros(shape, dtype) for g, (shape, dtype) in zip(grads, node.output_meta)]
        input_grads = node.function.backward(node.ctx, *grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.function.__name__}.backward returned {len(input_grads)} gradients "
                f"for {len(node.inputs)} tensor inputs"
            )
        # Gradients of a tensor used twice are added on the backend that computed them (for F-sized
        # gradients a NumPy add was a single-threaded pass; the sums are the same IEEE additions).
        add = node.ctx.kernels.add_forward
        for tensor, g in zip(node.inputs, input_grads):
            if g is None or not tensor.requires_grad:
                continue
            g = np.asarray(g)
            if g.shape != tensor.shape:
                raise RuntimeError(
                    f"{node.function.__name__}.backward returned a gradient of shape {g.shape} "
                    f"for an input of shape {tensor.shape}"
                )
            if tensor._node is None:
                leaf_grads.setdefault(id(tensor), (tensor, [], add))[1].append(g)
            else:
                slots = pending.setdefault(id(tensor._node), [None] * len(tensor._node.output_meta))
                i = tensor._output_index
                slots[i] = g if slots[i] is None else add(slots[i], g)
    for tensor, grads, add in leaf_grads.values():
        tensor._accumulate(*grads, add=add)
