"""Lesson 13: a convolution's multiply-accumulates per image (13.1), against PyTorch's FLOP counter."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from minitorch_attn.grading.checks import GradingFailure

# (input shape, weight shape, conv options): depthwise with stride, dilated, CBAM's spatial conv, groups with a
# 1×3 kernel, unequal strides and paddings (a non-square output), a 1×1 image, a batch of three.
CASES = [
    ((1, 64, 8, 8), (64, 1, 3, 3), dict(stride=2, padding=1, groups=64)),
    ((2, 16, 9, 7), (32, 16, 3, 3), dict(padding=2, dilation=2)),
    ((1, 2, 32, 32), (1, 2, 7, 7), dict(padding=3)),
    ((3, 12, 6, 10), (9, 4, 1, 3), dict(groups=3)),
    ((2, 5, 11, 13), (7, 5, 5, 2), dict(stride=(2, 3), padding=(1, 0))),
    ((1, 3, 1, 1), (4, 3, 1, 1), dict()),
]


def torch_count(x_shape, w_shape, options):
    """(MACs per image, output shape): PyTorch's FLOPs / 2 on meta tensors (nothing is computed)."""
    x, w = torch.empty(x_shape, device="meta"), torch.empty(w_shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = F.conv2d(x, w, **options)
    return counter.get_total_flops() // 2 // x_shape[0], tuple(out.shape)


def expect_count(actual, expected, what):
    if isinstance(actual, bool) or not isinstance(actual, (int, np.integer)):
        raise GradingFailure(f"{what}: returned {actual!r} ({type(actual).__name__}), expected the int {expected:,}")
    if actual != expected:
        raise GradingFailure(f"{what}: {int(actual):,} MACs, PyTorch counts {expected:,}")


# -- run in the student's process ----------------------------------------------
def macs_of(w_shape, out_shape):
    from minitorch_attn.models.report import conv_macs

    return conv_macs(np.zeros(w_shape, np.float32), out_shape)


def macs_counted_by_hooks(x_shape, w_shape, options):
    from minitorch_attn import Tensor, nn
    from minitorch_attn.autograd import no_grad
    from minitorch_attn.models.report import counting_macs

    groups = options.get("groups", 1)
    conv = nn.Conv2d(x_shape[1], w_shape[0], w_shape[2:], bias=False, **options)
    assert conv.weight.shape == w_shape and groups == x_shape[1] // w_shape[1]
    with no_grad(), counting_macs(conv) as counter:
        conv(Tensor(np.zeros(x_shape, np.float32)))
    return counter[0]


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("13.1", points=2)
def test_conv_macs_matches_torch_flop_counter(student):
    for x_shape, w_shape, options in CASES:
        expected, out_shape = torch_count(x_shape, w_shape, options)
        expect_count(student(macs_of, w_shape, out_shape), expected,
                     f"conv_macs(weight {w_shape}, output_shape {out_shape})")


@pytest.mark.exercise("13.1", points=1)
def test_model_report_hooks_count_a_batch(student):
    for x_shape, w_shape, options in CASES:
        expected, _ = torch_count(x_shape, w_shape, options)
        expect_count(student(macs_counted_by_hooks, x_shape, w_shape, options), expected * x_shape[0],
                     f"counting_macs of a Conv2d {w_shape} {options} on a batch {x_shape} (summed over the batch)")
