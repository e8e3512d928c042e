"""``Module`` and ``Parameter`` with PyTorch's habits: named parameters, buffers, state dicts, train/eval."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..tensor import FLOAT_DTYPES, Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (``requires_grad`` is always on)."""

    def __init__(self, array):
        super().__init__(np.array(array), requires_grad=True)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def to_numpy(value) -> np.ndarray:
    """An ndarray from an ndarray, a Tensor or a torch tensor (torch is not imported here)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach"):  # a torch.Tensor, possibly with grad or on another device
        return value.detach().cpu().numpy()
    return np.asarray(value)


class StateDictError(KeyError):
    """A state dict that does not fit a module; the message lists every problem key."""

    def __str__(self):  # KeyError quotes its message; print it as written
        return self.args[0]


def state_dict_problems(missing, unexpected, misshaped, owner):
    """The one error message for every state-dict mismatch (also used by :mod:`minitorch_attn.interop`)."""
    lines = [f"{owner}: the state dict does not fit"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if misshaped:
        lines.append(f"  mis-shaped keys ({len(misshaped)}): " + ", ".join(
            f"{key} (expected {tuple(want)}, got {tuple(got)})" for key, want, got in misshaped))
    return StateDictError("\n".join(lines))


class Module:
    """Base class of every layer and model.

    Attributes that are :class:`Parameter` s or Modules are registered on assignment, as in PyTorch;
    buffers (ndarrays that are state but not trained, e.g. BatchNorm's running statistics) are
    registered with :meth:`register_buffer`. ``module(x)`` calls ``forward(x)`` and then any forward hooks.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "training", True)

    # --- registration -----------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning {name!r}")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = None if value is None else np.asarray(value)
            return
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        self.__dict__.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for registry in ("_parameters", "_modules", "_buffers"):
            table = self.__dict__.get(registry)
            if table is not None and name in table:
                return table[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name, array):
        self._buffers[name] = None if array is None else np.array(array)

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after every forward; returns a handle with ``remove()``.

        A hook that returns something other than None replaces the output, as in PyTorch.
        """
        self._forward_hooks.append(hook)
        return _HookHandle(self._forward_hooks, hook)

    # --- traversal ----------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return (module for _, module in self.named_children())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        return (param for _, param in self.named_parameters())

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self):
        return (buffer for _, buffer in self.named_buffers())

    # --- state ------------------------------------------------------------
    def _state_entries(self):
        """``{key: (owner, attribute, kind)}`` in PyTorch's order: each module's parameters, its buffers, then children."""
        entries = OrderedDict()
        for module_name, module in self.named_modules():
            for kind, table in (("parameter", module._parameters), ("buffer", module._buffers)):
                for name, value in table.items():
                    if value is not None:
                        entries[f"{module_name}.{name}" if module_name else name] = (module, name, kind)
        return entries

    def state_dict(self):
        """Copies of every parameter and buffer, keyed by dotted name (PyTorch's layout)."""
        return OrderedDict(
            (key, np.array(getattr(owner, name).data if kind == "parameter" else getattr(owner, name)))
            for key, (owner, name, kind) in self._state_entries().items()
        )

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in place (keeping this module's dtype).

        Mis-shaped keys are always an error; with ``strict`` (the default) missing and unexpected keys are
        too. The error lists every problem key. Returns ``(missing, unexpected)``.
        """
        entries = self._state_entries()
        values = {key: to_numpy(value) for key, value in state_dict.items()}
        missing = [key for key in entries if key not in values]
        unexpected = [key for key in values if key not in entries]
        misshaped = []
        for key, (owner, name, kind) in entries.items():
            current = getattr(owner, name)
            if key in values and values[key].shape != current.shape:
                misshaped.append((key, current.shape, values[key].shape))
        if misshaped or (strict and (missing or unexpected)):
            raise state_dict_problems(missing if strict else [], unexpected if strict else [], misshaped,
                                      f"{type(self).__name__}.load_state_dict")
        for key, (owner, name, kind) in entries.items():
            if key in values:
                target = getattr(owner, name)
                target = target.data if kind == "parameter" else target
                target[...] = values[key]
        return missing, unexpected

    # --- modes and dtypes -------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for param in self.parameters():
            param.grad = None

    def to(self, dtype):
        """Convert every parameter and buffer to float32 or float64, in place (parameters keep their identity)."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: dtype must be float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                param.data = param.data.astype(dtype)
                param.grad = None
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = buffer.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    @property
    def dtype(self):
        """The dtype of the parameters (float32 for a module without any)."""
        first = next(self.parameters(), None)
        return np.dtype(np.float32) if first is None else first.dtype

    # --- calling ------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args):
        output = self.forward(*args)
        for hook in list(self._forward_hooks):
            replaced = hook(self, args, output)
            output = output if replaced is None else replaced
        return output

    # --- printing -----------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        children = [f"({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + "\n  " + "\n  ".join(children) + "\n)"


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class _ModuleSequence(Module):
    """Children named "0", "1", ... as in PyTorch, reachable by index, length and iteration."""

    def __init__(self, modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"{type(self).__name__}: item {index} must be a Module, got {type(module).__name__}")
            self._modules[str(index)] = module

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_ModuleSequence):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters are registered; it has no forward."""

    def __init__(self, modules=()):
        super().__init__(modules)
