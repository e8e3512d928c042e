"""The one dispatch point between ops and kernels.

Every op asks :func:`kernels` for the current backend and calls its kernels by
name (``kernels().conv2d_forward(...)``). A backend is a module in this package
that defines every name in :data:`KERNEL_NAMES` (a test checks it) and, where it
needs hardware or extra packages, an ``availability()`` function that returns
``None`` when usable or a sentence saying what is missing and how to get it.

Kernels take and return host ``numpy.ndarray`` s of the input dtype: a backend
that computes elsewhere (CUDA) moves data itself, so ops and modules never know.
"""
from __future__ import annotations

import contextlib
import importlib
import threading
import time

BACKEND_MODULES = {
    "numpy": "minitorch_attn.backends.numpy_backend",
    "numba": "minitorch_attn.backends.numba",
    "cuda": "minitorch_attn.backends.cuda",
}

#: Kernels every backend provides. The reference docstrings are in numpy_backend.
KERNEL_NAMES = (
    # global pooling over H×W: (N,C,H,W) -> (N,C)
    "global_avg_pool_forward", "global_avg_pool_backward",
    "global_max_pool_forward", "global_max_pool_backward",
    "global_lp_pool_forward", "global_lp_pool_backward",
    "global_lse_pool_forward", "global_lse_pool_backward",
    # pooling over C: (N,C,H,W) -> (N,1,H,W)
    "channel_mean_forward", "channel_mean_backward",
    "channel_max_forward", "channel_max_backward",
    # dense layers and activations
    "linear_forward", "linear_backward",
    "relu_forward", "relu_backward",
    "sigmoid_forward", "sigmoid_backward",
    # broadcasting arithmetic
    "mul_forward", "mul_backward", "add_forward", "sum_to_shape",
    # convolution
    "conv2d_forward", "conv2d_backward",
    # batch norm on (N,C,L)
    "batch_norm_train_forward", "batch_norm_eval_forward", "batch_norm_backward",
    # loss
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    # fused attention kernels (the numpy backend composes the unfused kernels)
    "global_avg_max_pool_forward", "global_avg_max_pool_backward",
    "gated_channel_pool_forward", "gated_channel_pool_backward",
    "channel_spatial_gate_forward", "channel_spatial_gate_backward",
    "residual_gate_forward", "residual_gate_backward",
)

#: Backward kernels that also take ``add_to``: None, or the gradient of their (first) input collected so
#: far, an array they add their own gradient into and return (see ``autograd.Context.accumulate_into``).
ADD_TO_KERNELS = ("global_avg_max_pool_backward", "gated_channel_pool_backward")

_state = threading.local()
_loaded = {}


class BackendUnavailable(RuntimeError):
    """The backend exists but cannot run on this machine (the message says why and what to do)."""


def _load(name: str):
    if name not in BACKEND_MODULES:
        raise ValueError(f"backend: unknown name {name!r}; expected one of {sorted(BACKEND_MODULES)}")
    if name not in _loaded:
        module = importlib.import_module(BACKEND_MODULES[name])
        problem = module.availability() if hasattr(module, "availability") else None
        if problem:
            raise BackendUnavailable(f"backend {name!r} is not available: {problem}")
        _loaded[name] = module
    return _loaded[name]


def is_available(name: str) -> bool:
    try:
        _load(name)
    except (BackendUnavailable, ImportError):
        return False
    return True


def available_backends():
    return [name for name in BACKEND_MODULES if is_available(name)]


def current_backend() -> str:
    return getattr(_state, "name", "numpy")


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy", "numba" or "cuda") the backend of every op that follows."""
    _load(name)
    _state.name = name


@contextlib.contextmanager
def backend(name: str):
    """``with backend("numba"): ...`` runs the block on that backend, then restores the previous one."""
    previous = current_backend()
    set_backend(name)
    try:
        yield
    finally:
        _state.name = previous


def kernels(name: str | None = None):
    """The kernel module of ``name`` (default: the current backend); timed inside :func:`timing_kernels`."""
    module = _load(name or current_backend())
    record = getattr(_state, "record", None)
    return module if record is None else _TimedKernels(module, record)


class _TimedKernels:
    """A backend's kernels, each call reported as ``record(kernel name, seconds)``."""

    def __init__(self, module, record):
        self._module, self._record = module, record

    def __getattr__(self, name):
        kernel = getattr(self._module, name)
        if name not in KERNEL_NAMES:
            return kernel

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return kernel(*args, **kwargs)
            finally:
                self._record(name, time.perf_counter() - started)
        return timed


@contextlib.contextmanager
def timing_kernels(record):
    """``with timing_kernels(record): ...``: every kernel that an op fetches from :func:`kernels` in the
    block (this thread only) reports each call as ``record(kernel name, seconds)``; the profile of
    ``python -m minitorch_attn.bench --profile`` is built this way."""
    previous = getattr(_state, "record", None)
    _state.record = record
    try:
        yield
    finally:
        _state.record = previous
