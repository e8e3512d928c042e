"""minitorch_attn: CBAM and BAM hybrid attention built from scratch, checked against PyTorch.

As with ``torch.nn`` after ``import torch``, ``minitorch_attn.nn``, ``.ops`` and ``.models`` work after
``import minitorch_attn``; they are imported on first use, so the bare import stays light.
"""
import importlib

from .autograd import Function, no_grad, is_grad_enabled
from .backends import (
    BackendUnavailable,
    available_backends,
    backend,
    current_backend,
    set_backend,
)
from .grading import grade
from .tensor import Tensor

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("nn", "ops", "models")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = [
    "Tensor", "Function", "no_grad", "is_grad_enabled",
    "set_backend", "backend", "current_backend", "available_backends", "BackendUnavailable",
    "grade", "nn", "ops", "models",
]
