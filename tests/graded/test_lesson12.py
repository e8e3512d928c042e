"""Lesson 12: the receptive field of a stack of convolutions (12.1), BAM's d in pixels."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn.grading.checks import GradingFailure


def measured_receptive_field(layers):
    """Input pixels (along one axis) that reach one output pixel, measured with torch: all-ones kernels, no
    padding, the gradient of a middle output pixel with respect to the input is non-zero exactly there."""
    length = 1 + sum(d * (k - 1) for k, _, d in layers) * int(np.prod([s for _, s, _ in layers] or [1])) * 3 + 64
    x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
    h = x
    for k, s, d in layers:
        h = F.conv1d(h, torch.ones(1, 1, k, dtype=torch.float64), stride=s, dilation=d)
    h[0, 0, h.shape[-1] // 2].backward()
    reached = np.flatnonzero(x.grad[0, 0].numpy())
    return int(reached[-1] - reached[0] + 1)


def bam_branch(d):
    return [(1, 1, 1), (3, 1, d), (3, 1, d), (1, 1, 1)]


def stacks():
    # BAM's spatial branch for the paper's d grid, CBAM's 7×7 gate, the ResNet-10 stem and stages (strided
    # 3×3 convs), even kernels, strides and dilations mixed, and random stacks.
    yield from (bam_branch(d) for d in (1, 2, 4, 6))
    yield [(7, 1, 1)]
    yield [(3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1)]
    yield [(3, 2, 2), (5, 1, 1), (3, 3, 2), (2, 1, 3)]
    yield [(2, 2, 1), (2, 2, 1), (2, 2, 1)]
    rng = np.random.default_rng(121)
    for _ in range(12):
        depth = int(rng.integers(1, 6))
        yield [(int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))) for _ in range(depth)]


# -- run in the student's process ----------------------------------------------
def receptive_field(layers):
    from minitorch_attn.ops.conv import receptive_field

    return receptive_field(layers)


def check(actual, expected, layers):
    if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (int, np.integer)):
        raise GradingFailure(f"layers {layers}: receptive_field returned a {type(actual).__name__}, expected an int")
    if actual != expected:
        raise GradingFailure(f"layers (kernel, stride, dilation) {layers}: receptive field {actual}, measured "
                             f"{expected} with PyTorch")


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("12.1", points=1)
def test_receptive_field_of_bam_spatial_branch(student):
    for d in (1, 2, 4, 6):
        layers = bam_branch(d)
        check(student(receptive_field, layers), measured_receptive_field(layers), layers)


@pytest.mark.exercise("12.1", points=2)
def test_receptive_field_with_strides_and_dilations(student):
    for layers in stacks():
        check(student(receptive_field, layers), measured_receptive_field(layers), layers)


@pytest.mark.exercise("12.1", points=1)
def test_receptive_field_of_no_layers_and_of_1x1_convs(student):
    for layers in ([], [(1, 1, 1)], [(1, 2, 1), (1, 2, 3)]):
        check(student(receptive_field, layers), 1, layers)
