"""2-d convolution: CBAM's 7×7 spatial conv, BAM's 1×1 and dilated 3×3 convs, depthwise convs."""
from __future__ import annotations

import numbers

from ..autograd import Function
from ..exercise import exercise
from ._checks import as_tensor, check_ndim, check_same_dtype, pair


class Conv2d(Function):
    r"""Cross-correlation, as every deep-learning library computes it:

    .. math:: y[n,o,p,q] = b[o] + \sum_{c \in g(o)} \sum_{i,j} W[o,c,i,j]\,
              x_{pad}[n,\; c,\; p s_h + i d_h,\; q s_w + j d_w]

    x (N, C, H, W), W (C_out, C/groups, kH, kW), b (C_out,) -> (N, C_out, H_out, W_out) with
    :math:`H_{out} = \lfloor (H + 2p_h - d_h(k_H - 1) - 1) / s_h \rfloor + 1`. The channels c are those of
    output channel o's group. Backward: dx scatters g through every tap back to the pixel it read;
    dW correlates g with the input; db sums g.

    ``ctx.workspace`` travels from the forward kernel to the backward one: a backend may leave there what
    its backward would otherwise recompute (the Numba backend: the input's stacked planes). The op adds
    ``"input_grad": False`` when x needs no gradient (a network's images), and a backend may then return
    None for dx (the Numba one does: it skips a whole conv).
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, *, stride, padding, dilation, groups):
        ctx.options = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        ctx.workspace = {}
        return ctx.kernels.conv2d_forward(x, weight, bias, stride, padding, dilation, groups,
                                          workspace=ctx.workspace)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        ctx.workspace["input_grad"] = ctx.needs_input_grad[0]
        dx, dweight, dbias = ctx.kernels.conv2d_backward(grad, x, weight, *ctx.options, ctx.has_bias,
                                                         workspace=ctx.workspace)
        return (dx, dweight, dbias) if ctx.has_bias else (dx, dweight)


def same_padding(kernel_size, dilation):
    """Padding that keeps H×W at stride 1: d(k-1)/2 per side, which needs d(k-1) even."""
    padding = []
    for k, d in zip(kernel_size, dilation):
        if d * (k - 1) % 2:
            raise ValueError(
                f"conv2d: padding='same' needs an odd kernel size (or an even dilation), got kernel_size "
                f"{tuple(kernel_size)} with dilation {tuple(dilation)}"
            )
        padding.append(d * (k - 1) // 2)
    return tuple(padding)


@exercise("12.1", "receptive field of a stack of convolutions: layers (kernel_size, stride, dilation) from input "
                  "to output -> how many input pixels (along one axis) one output pixel sees (lesson 12)")
def receptive_field(layers):
    r"""The receptive field of a stack of convolutions along one axis: the width, in input pixels from the first
    to the last, of the window one output pixel depends on (with dilation it has holes).

    ``layers``: ``[(kernel_size, stride, dilation), ...]`` from the input to the output (padding does not
    matter). Layer l reads :math:`k_l` taps :math:`d_l` of its input pixels apart, and neighbouring pixels of
    its input lie :math:`j_l = s_1 s_2 \cdots s_{l-1}` input pixels apart, so it widens the window by
    :math:`d_l (k_l - 1)\, j_l`:

    .. math:: R = 1 + \sum_{l} d_l\,(k_l - 1) \prod_{i<l} s_i

    BAM's spatial branch (1×1, two 3×3 with dilation d, 1×1; stride 1) spans 4d + 1 pixels; no layers, 1.
    """
    layers = [tuple(layer) for layer in layers]
    for index, layer in enumerate(layers):
        if len(layer) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in layer):
            raise ValueError(f"receptive_field: layer {index} must be (kernel_size, stride, dilation), three ints "
                             f">= 1, got {layer!r}")
    # BEGIN SOLUTION
    size, jump = 1, 1
    for kernel_size, stride, dilation in layers:
        size += dilation * (kernel_size - 1) * jump
        jump *= stride
    return int(size)
    # END SOLUTION


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Checked entry point of :class:`Conv2d` (``padding`` may be ``"same"`` at stride 1)."""
    x, weight = as_tensor(x, "x"), as_tensor(weight, "weight")
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_ndim(weight, 4, "weight", "(C_out, C_in/groups, kH, kW)")
    stride, dilation = pair(stride, "stride", 1), pair(dilation, "dilation", 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"conv2d: groups must be an int >= 1, got {groups!r}")
    c_out, c_group, kh, kw = weight.shape
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
        padding = same_padding((kh, kw), dilation)
    elif isinstance(padding, str):
        raise ValueError(f"conv2d: padding must be an int, a pair of ints or 'same', got {padding!r}")
    else:
        padding = pair(padding, "padding", 0)
    if c_out % groups:
        raise ValueError(f"conv2d: C_out={c_out} (weight.shape[0]) is not divisible by groups={groups}")
    if x.shape[1] != c_group * groups:
        raise ValueError(
            f"conv2d: x has {x.shape[1]} channels but weight expects C_in = {c_group} × groups {groups} "
            f"= {c_group * groups} (weight shape {weight.shape})"
        )
    for axis, size, k, p, d in (("height", x.shape[2], kh, padding[0], dilation[0]),
                                ("width", x.shape[3], kw, padding[1], dilation[1])):
        span = d * (k - 1) + 1
        if span > size + 2 * p:
            raise ValueError(
                f"conv2d: kernel {axis} {k} with dilation {d} spans {span} pixels, more than the padded input "
                f"{axis} {size} + 2×{p} = {size + 2 * p}"
            )
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if bias is None:
        check_same_dtype((x, weight), ("x", "weight"))
        return Conv2d.apply(x, weight, **options)
    bias = as_tensor(bias, "bias")
    if bias.shape != (c_out,):
        raise ValueError(f"conv2d: bias must have shape ({c_out},), got {bias.shape}")
    check_same_dtype((x, weight, bias), ("x", "weight", "bias"))
    return Conv2d.apply(x, weight, bias, **options)
