"""minitorch_attn: CBAM and BAM hybrid attention built from scratch, checked against PyTorch."""
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

__all__ = [
    "Tensor", "Function", "no_grad", "is_grad_enabled",
    "set_backend", "backend", "current_backend", "available_backends", "BackendUnavailable",
    "grade",
]
