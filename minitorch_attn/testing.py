"""Checking helpers shared by the tests and the notebooks (CS231n's gradient-check discipline)."""
from __future__ import annotations

import numpy as np

#: What "equal" means for each dtype when comparing with PyTorch.
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def rel_error(a, b) -> float:
    """max |a - b| / max(|a|, |b|, 1): a relative error that stays meaningful near zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max(), 1.0)
    return float(np.abs(a - b).max() / scale)


def first_difference(actual, expected, tol) -> str:
    """One line naming the worst element, for assertion messages and the grader."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    where = np.unravel_index(np.abs(actual - expected).argmax(), actual.shape) if actual.size else ()
    return (f"differs at {list(map(int, where))}: {actual[where]:.6g} vs {expected[where]:.6g}; "
            f"max rel error {rel_error(actual, expected):.2g} (tolerance {tol:.0e})")


def assert_close(actual, expected, tol=None, name="value"):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    tol = TOLERANCE.get(np.dtype(expected.dtype), 1e-5) if tol is None else tol
    if actual.shape != expected.shape or rel_error(actual, expected) > tol:
        raise AssertionError(f"{name} {first_difference(actual, expected, tol)}")


def numerical_gradient(f, x, grad_out, h=1e-6):
    """Central differences of ``sum(f(x) * grad_out)`` with respect to ``x`` (float64, changes x in place and restores it)."""
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient: x must be float64 for central differences, got {x.dtype}")
    grad = np.zeros(x.shape, x.dtype)
    # Index x itself (not x.reshape(-1), a copy when x is a non-contiguous view that f would never see).
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        plus = np.sum(np.asarray(f(x)) * grad_out)
        x[index] = saved - h
        minus = np.sum(np.asarray(f(x)) * grad_out)
        x[index] = saved
        grad[index] = (plus - minus) / (2 * h)
    return grad


def compare_with_torch(ours, theirs, inputs, grad_seed=0):
    """Run ``ours`` (minitorch_attn) and ``theirs`` (torch) on the same inputs; return errors.

    ``inputs`` is a list of ndarrays; both callables get them wrapped in their
    own tensor type (with grad). Returns ``{"forward": e, "grad[0]": e, ...}``
    with relative errors, using the same random upstream gradient for both.
    """
    import torch

    from .tensor import Tensor

    ours_in = [Tensor(a.copy(), requires_grad=True) for a in inputs]
    theirs_in = [torch.tensor(a.copy(), requires_grad=True) for a in inputs]
    out = ours(*ours_in)
    ref = theirs(*theirs_in)
    errors = {"forward": rel_error(out.numpy(), ref.detach().numpy())}
    upstream = np.random.default_rng(grad_seed).standard_normal(ref.shape).astype(inputs[0].dtype)
    out.backward(upstream)
    ref.backward(torch.tensor(upstream))
    for i, (a, b) in enumerate(zip(ours_in, theirs_in)):
        errors[f"grad[{i}]"] = rel_error(a.grad, b.grad.numpy())
    return errors
