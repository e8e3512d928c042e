"""``Tensor``: an ndarray plus what autograd needs (``requires_grad``, ``grad``, its node)."""
from __future__ import annotations

import numpy as np

from .autograd import run_backward

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    """A float32/float64 array that can take part in automatic differentiation.

    >>> x = Tensor(np.ones((2, 3)), requires_grad=True)
    >>> x.shape, x.dtype
    ((2, 3), dtype('float64'))
    """

    __array_priority__ = 1000  # so ``ndarray * Tensor`` defers to Tensor.__rmul__

    def __init__(self, array, requires_grad: bool = False):
        if isinstance(array, Tensor):
            array = array.data
        array = np.asarray(array)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"Tensor: array must have dtype float32 or float64, got {array.dtype}; "
                f"convert it first, e.g. np.asarray(a, dtype=np.float64)"
            )
        self.data = array
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self._output_index = 0

    # --- plain properties -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._node is None

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    # --- autograd ---------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad``.

        ``grad`` may be left out only for a one-element tensor (a loss).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph")
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward: grad must be given for a tensor with {self.size} elements "
                    f"(shape {self.shape}); it may be left out only for a one-element tensor"
                )
            grad = np.ones(self.shape, self.dtype)
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad must have shape {self.shape}, got {grad.shape}")
        run_backward(self, grad)

    def _accumulate(self, grad, owned=False, add=np.add):
        """Add ``grad`` to ``.grad`` with ``add`` (a backend's ``add_forward``).

        ``owned``: nothing else refers to ``grad``, so it may become ``.grad`` as it is; otherwise a
        copy is kept (it may be the caller's array or a backward's view of its grad_output).
        """
        if self.grad is not None:
            self.grad = np.asarray(add(self.grad, grad), self.dtype)
        else:
            self.grad = np.asarray(grad, self.dtype) if owned else np.array(grad, dtype=self.dtype)

    def zero_grad(self):
        self.grad = None

    # --- operators (thin sugar over minitorch_attn.ops) -------------------
    def __add__(self, other):
        from . import ops

        return ops.add(self, other)

    __radd__ = __add__

    def __mul__(self, other):
        from . import ops

        return ops.mul(self, other)

    __rmul__ = __mul__

    def __neg__(self):
        from . import ops

        return ops.mul(self, -1.0)

    def __sub__(self, other):
        from . import ops

        # -other, not mul(other, -1): other may be a Python number, which mul cannot take alone.
        return ops.add(self, -other)

    def __rsub__(self, other):
        from . import ops

        return ops.add(ops.mul(self, -1.0), other)

    def reshape(self, *shape):
        from . import ops

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def sum(self):
        from . import ops

        return ops.sum(self)

    def mean(self):
        from . import ops

        return ops.mean(self)
