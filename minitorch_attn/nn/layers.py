"""Standard layers (PyTorch's names, arguments and default initialisation), built on ``minitorch_attn.ops``."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def check_input(module, x, ndims, channels=None):
    """``x`` as a Tensor, checked before any work: its ndim, its channel count (dim 1) and its dtype.

    The messages name both numbers (expected and received), e.g. a CBAM built for 64 channels fed 32.
    """
    name = type(module).__name__
    if isinstance(x, np.ndarray):
        x = Tensor(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: input must be a Tensor or ndarray, got {type(x).__name__}")
    if x.ndim not in ndims:
        wanted = " or ".join(f"{n}-d" for n in ndims)
        raise ValueError(f"{name}: expected a {wanted} input, got a {x.ndim}-d input of shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels (dim 1), got {x.shape[1]} (input shape {x.shape})")
    if x.dtype != module.dtype:
        raise TypeError(f"{name}: input dtype is {x.dtype} but the module's parameters are {module.dtype}; "
                        f"convert one of them (module.double() / module.float())")
    return x


def check_positive_int(value, name, owner):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x W^T + b`` (see :class:`minitorch_attn.ops.Linear`); W (out, in), b (out,)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features", "Linear")
        self.out_features = check_positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(init.default_uniform((out_features, in_features), in_features))
        self.bias = Parameter(init.default_uniform((out_features,), in_features)) if bias else None

    def forward(self, x):
        x = check_input(self, x, (2,), self.in_features)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-d cross-correlation (see :class:`minitorch_attn.ops.Conv2d`); W (C_out, C_in/groups, kH, kW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = check_positive_int(out_channels, "out_channels", "Conv2d")
        self.groups = check_positive_int(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels={in_channels} and out_channels={out_channels} must both be "
                             f"divisible by groups={groups}")
        self.kernel_size = _pair(kernel_size)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight = Parameter(init.default_uniform((out_channels, in_channels // groups) + self.kernel_size, fan_in))
        self.bias = Parameter(init.default_uniform((out_channels,), fan_in)) if bias else None

    def forward(self, x):
        x = check_input(self, x, (4,), self.in_channels)
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        extras = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"]
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1)):
            if getattr(self, name) != default:
                extras.append(f"{name}={getattr(self, name)}")
        if self.bias is None:
            extras.append("bias=False")
        return ", ".join(extras)


def _pair(value):
    return (value, value) if isinstance(value, (int, np.integer)) else tuple(value)


class _BatchNorm(Module):
    """Batch norm (see :class:`minitorch_attn.ops.BatchNorm`): batch statistics in train mode, running ones in eval.

    ``weight`` (γ) starts at 1, ``bias`` (β) at 0, ``running_mean`` at 0, ``running_var`` at 1 (PyTorch's defaults).
    """

    input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features", type(self).__name__)
        if not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps}")
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))

    def forward(self, x):
        x = check_input(self, x, self.input_ndims, self.num_features)
        return ops.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                              training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L): statistics per channel."""

    input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): statistics per channel over N, H and W."""

    input_ndims = (4,)


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x):
        return ops.flatten(x)


class Identity(Module):
    def forward(self, x):
        return x
