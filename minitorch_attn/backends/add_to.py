"""The ``add_to`` argument of the backward kernels that can add their gradient into one collected
already (autograd's ``Context.accumulate_into``), checked alike on every backend."""
from __future__ import annotations

import numpy as np


def check_add_to(kernel, add_to, shape, dtype):
    """``add_to`` when it is None or a writeable C-contiguous ndarray of ``shape`` and ``dtype``."""
    if add_to is None:
        return None
    if not isinstance(add_to, np.ndarray):
        raise TypeError(f"{kernel}: add_to must be an ndarray or None, got {type(add_to).__name__}")
    if add_to.shape != tuple(shape) or add_to.dtype != np.dtype(dtype):
        raise ValueError(f"{kernel}: add_to must be the {np.dtype(dtype)} gradient of shape {tuple(shape)} "
                         f"to add into, got {add_to.dtype} of shape {add_to.shape}")
    if not (add_to.flags.c_contiguous and add_to.flags.writeable):
        raise ValueError(f"{kernel}: add_to must be a writeable C-contiguous array (it is written in place)")
    return add_to


def added(add_to, grad):
    """``grad`` added into ``add_to`` (checked by :func:`check_add_to` before the kernel's work) in place and
    ``add_to`` returned; ``grad`` itself when ``add_to`` is None."""
    if add_to is None:
        return grad
    np.add(add_to, grad, out=add_to)
    return add_to
