"""Assertions for the graded tests: each failure is ONE line that tells a student what to look at.

The ``expect_*`` checks and :func:`torch_gradients` run in the judge on the plain
data that came back from the student's process; :func:`our_gradients` runs in the
student's process (it drives the package's autograd).
"""
from __future__ import annotations

import numpy as np

from ..testing import TOLERANCE, first_difference, rel_error
from .wire import type_name


class GradingFailure(AssertionError):
    """A graded check failed; the message is the line the score table shows."""


def describe(**arrays) -> str:
    """``"x (2, 3, 5, 4) float32, grad (2, 3) float32"``: the case a message is about."""
    return ", ".join(f"{name} {tuple(np.shape(a))} {np.asarray(a).dtype}" for name, a in arrays.items())


def expect_values(result, names, function):
    """``result`` unpacked into ``len(names)`` values, or a failure naming what ``function`` should return."""
    expected = f"({', '.join(names)})"
    if not isinstance(result, (tuple, list)):
        raise GradingFailure(f"{function} returned a {type_name(result)}, expected a tuple {expected}")
    if len(result) != len(names):
        raise GradingFailure(f"{function} returned {len(result)} values, expected {len(names)}: {expected}")
    return tuple(result)


def expect_array(actual, expected, name, case="", *, tol=None):
    """Check type, shape, dtype, finiteness, then values of ``actual`` against ``expected`` (PyTorch's).

    The value message comes from :func:`minitorch_attn.testing.first_difference`:
    ``"dx differs at [0, 3, 2, 1]: 0.41 vs 0.37; max rel error 0.1 (tolerance 1e-10), yours vs PyTorch"``.
    """
    where = f"{case}: " if case else ""
    expected = np.asarray(expected)
    if actual is None:
        raise GradingFailure(f"{where}{name} is None, expected an array of shape {expected.shape}")
    if not isinstance(actual, np.ndarray):
        raise GradingFailure(f"{where}{name} is a {type_name(actual)}, expected a numpy array "
                             f"of shape {expected.shape}")
    if actual.shape != expected.shape:
        raise GradingFailure(f"{where}{name} has shape {actual.shape}, expected {expected.shape}")
    if actual.dtype != expected.dtype:
        raise GradingFailure(f"{where}{name} has dtype {actual.dtype}, expected {expected.dtype} "
                             "(keep the dtype of the inputs)")
    bad = ~np.isfinite(actual)
    if bad.any():
        position = list(map(int, np.argwhere(bad)[0]))
        raise GradingFailure(f"{where}{name} is {actual[tuple(position)]} at {position} (PyTorch: "
                             f"{expected[tuple(position)]:.6g})")
    tol = TOLERANCE[expected.dtype] if tol is None else tol
    if rel_error(actual, expected) > tol:
        raise GradingFailure(f"{where}{name} {first_difference(actual, expected, tol)}, yours vs PyTorch")


def expect_none(actual, name, case="", reason=""):
    if actual is not None:
        where = f"{case}: " if case else ""
        raise GradingFailure(f"{where}{name} should be None{reason}, got {type_name(actual)}")


def torch_gradients(function, arrays, upstream):
    """``(output, [d/d array ...])`` of ``sum(function(*arrays) * upstream)`` by torch.autograd, as ndarrays."""
    import torch

    leaves = [torch.tensor(np.asarray(a), requires_grad=True) for a in arrays]
    out = function(*leaves)
    grads = torch.autograd.grad(out, leaves, torch.as_tensor(np.asarray(upstream)))
    return out.detach().numpy(), [g.numpy() for g in grads]


def our_gradients(function, arrays, upstream, case="", name="the output"):
    """``(output, [d/d array ...])`` of ``sum(function(*arrays) * upstream)`` by minitorch_attn's autograd.

    The output is checked to be a Tensor of ``upstream``'s shape first, so a wrong
    shape is reported as such rather than as an error inside ``backward``.
    """
    from ..tensor import Tensor

    where = f"{case}: " if case else ""
    leaves = [Tensor(np.array(a), requires_grad=True) for a in arrays]
    out = function(*leaves)
    upstream = np.asarray(upstream)
    if not isinstance(out, Tensor):
        raise GradingFailure(f"{where}{name} is a {type(out).__name__}, expected a Tensor of shape {upstream.shape}")
    if out.shape != upstream.shape:
        raise GradingFailure(f"{where}{name} has shape {out.shape}, expected {upstream.shape}")
    out.backward(upstream)
    return out.numpy(), [leaf.grad for leaf in leaves]
