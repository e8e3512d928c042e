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

Adding two F-sized gradients is a pass over memory of its own (reading both,
writing the sum), and in CBAM's backward it cost as much as a kernel. So a
backward may add its contribution straight into the gradient already collected
(``ctx.accumulate_into``), under one rule that keeps this safe: the engine only
offers an array that nothing else can see, one it made itself or one a backward
returned that shares no memory with anything that backward was given.
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

    ``accumulate_into`` (set by the engine just before ``backward``): per tensor input, ``None`` or
    the gradient collected for that input so far, an array the engine owns. A backward may add its
    contribution into that array in place and return the array itself (the engine then adds
    nothing); a backward that ignores it is just as correct.
    """

    def __init__(self, kernels, needs_input_grad):
        self.kernels = kernels
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()
        self.accumulate_into = (None,) * len(needs_input_grad)

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


def _shares_memory(array, others):
    return any(isinstance(o, np.ndarray) and np.may_share_memory(array, o) for o in others)


def _owned_results(node, given, results):
    """Which of a backward's results the engine may later overwrite: those that share no memory with
    what the backward was given (its gradients, its saved arrays) nor with each other. Identity-like
    backwards (add, reshape, concat) pass a received gradient on, or a view of it; those stay read-only."""
    seen = tuple(given) + tuple(node.ctx.saved_tensors)
    return [g is not None and not _shares_memory(g, seen + results[:i] + results[i + 1:])
            for i, g in enumerate(results)]


def run_backward(root, grad):
    """Propagate ``grad`` (d loss / d root) to every leaf that requires grad."""
    if root._node is None:
        root._accumulate(grad)
        return
    # A gradient collected so far is a [array, owned] pair: owned arrays may be added into in place.
    pending = {id(root._node): [None] * len(root._node.output_meta)}
    pending[id(root._node)][root._output_index] = [grad, False]
    leaf_grads = {}  # id(leaf) -> (leaf, [its gradient, owned], add), added to .grad once at the end
    for node in _topological_nodes(root._node):
        slots = pending.pop(id(node), None)
        if slots is None:
            continue
        grads = [np.zeros(shape, dtype) if slot is None else slot[0]
                 for slot, (shape, dtype) in zip(slots, node.output_meta)]
        collected = [_collected(tensor, pending, leaf_grads) for tensor in node.inputs]
        node.ctx.accumulate_into = tuple(
            slot[0] if slot is not None and slot[1] and node.inputs.count(tensor) == 1 else None
            for tensor, slot in zip(node.inputs, collected))
        input_grads = node.function.backward(node.ctx, *grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"{node.function.__name__}.backward returned {len(input_grads)} gradients "
                f"for {len(node.inputs)} tensor inputs"
            )
        input_grads = tuple(None if g is None else np.asarray(g) for g in input_grads)
        owned = _owned_results(node, grads, input_grads)
        # Gradients of a tensor used twice are added on the backend that computed them (for F-sized
        # gradients a NumPy add was a single-threaded pass; the sums are the same IEEE additions).
        add = node.ctx.kernels.add_forward
        for tensor, g, is_owned, into in zip(node.inputs, input_grads, owned, node.ctx.accumulate_into):
            if g is None or not tensor.requires_grad:
                continue
            if g.shape != tensor.shape:
                raise RuntimeError(
                    f"{node.function.__name__}.backward returned a gradient of shape {g.shape} "
                    f"for an input of shape {tensor.shape}"
                )
            slot = _collected(tensor, pending, leaf_grads, create=add)
            if slot[0] is None or g is into:  # the first contribution, or already added in place
                slot[:] = [g, is_owned]
            else:
                slot[:] = [add(slot[0], g), True]
    for tensor, (total, owned), add in leaf_grads.values():
        tensor._accumulate(total, owned=owned, add=add)


def _collected(tensor, pending, leaf_grads, create=None):
    """The [gradient, owned] pair collected for ``tensor`` so far; ``None`` if there is none, unless
    ``create`` (the backend's add, kept for a leaf's ``.grad``) asks for an empty pair to fill."""
    if tensor._node is None:
        if create:
            return leaf_grads.setdefault(id(tensor), (tensor, [None, False], create))[1]
        entry = leaf_grads.get(id(tensor))
        return None if entry is None else entry[1]
    slots = pending.setdefault(id(tensor._node), [None] * len(tensor._node.output_meta)) if create \
        else pending.get(id(tensor._node))
    if slots is None:
        return None
    i = tensor._output_index
    if slots[i] is None and create:
        slots[i] = [None, False]
    return slots[i]
