"""Lesson 6: BAM's spatial branch, 1×1 reduction, dilated 3×3 convs and the 1×1 conv to one channel (6.1)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn.grading.checks import describe, expect_array, torch_gradients


def branch_case(rng, n, channels, hidden, size, dilated_convs, dtype):
    shapes = ([(hidden, channels, 1, 1), (hidden,)] + [(hidden, hidden, 3, 3), (hidden,)] * dilated_convs
              + [(1, hidden, 1, 1), (1,)])
    x = rng.standard_normal((n, channels) + size).astype(dtype)
    params = [(rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1)).astype(dtype) for s in shapes]
    return x, params, rng.standard_normal((n, 1) + size).astype(dtype)


def torch_branch(dilation, placement, eps):
    """BAM's spatial branch in torch; BatchNorm in train mode with γ = 1, β = 0 (a fresh layer)."""
    def branch(x, *params):
        convs = list(zip(params[::2], params[1::2]))
        h = x
        for index, (weight, bias) in enumerate(convs):
            hidden = index < len(convs) - 1
            spread = dilation if 0 < index < len(convs) - 1 else 1
            h = F.conv2d(h, weight, bias, padding=spread * (weight.shape[-1] // 2), dilation=spread)
            if (placement == "official") == hidden:
                h = F.batch_norm(h, None, None, training=True, eps=eps)
            if hidden:
                h = torch.relu(h)
        return h
    return branch


def branch_gradients(x, params, grad, placement, dilation, case):
    """Run in the student's process: the branch's logit and gradients, with fresh BatchNorm2d layers."""
    from minitorch_attn.grading.checks import our_gradients
    from minitorch_attn.nn.bam import bam_spatial_logit
    from minitorch_attn.nn.layers import BatchNorm2d

    count, hidden = len(params) // 2, params[0].shape[0]

    def norm(features):
        layer = BatchNorm2d(features)
        return layer.double() if x.dtype == np.float64 else layer.float()

    norms = ([norm(hidden) for _ in range(count - 1)] + [None] if placement == "official"
             else [None] * (count - 1) + [norm(1)])

    def ours(x, *params):
        return bam_spatial_logit(x, list(zip(params[::2], params[1::2])), norms, dilation)

    return our_gradients(ours, [x] + list(params), grad, case)


def check_branch(student, seed, placement, cases):
    rng = np.random.default_rng(seed)
    for n, channels, hidden, size, dilated_convs, dilation in cases:
        for dtype in (np.float64, np.float32):
            x, params, grad = branch_case(rng, n, channels, hidden, size, dilated_convs, dtype)
            count = dilated_convs + 2
            case = describe(x=x) + f", {dilated_convs} dilated conv(s), dilation {dilation}, {placement} BN placement"
            out, grads = student(branch_gradients, x, params, grad, placement, dilation, case)
            expected_out, expected = torch_gradients(torch_branch(dilation, placement, 1e-5), [x] + params, grad)
            expect_array(out, expected_out, "the logit", case)
            expect_array(grads[0], expected[0], "x.grad", case)
            names = [f"{kind} of conv {i}" for i in range(count) for kind in ("weight.grad", "bias.grad")]
            # A parameter's gradient sums N·H·W products; before a BatchNorm it is 0 up to rounding,
            # which in float32 is a few 1e-5: a looser tolerance there.
            tol = 1e-4 if dtype == np.float32 else None
            for name, actual, wanted in zip(names, grads[1:], expected[1:]):
                expect_array(actual, wanted, name, case, tol=tol)


@pytest.mark.exercise("6.1", points=3)
def test_bam_spatial_branch_official(student):
    # (N, C, C/r, (H, W), dilated convs, dilation): the official layout (2 convs, dilation 4), odd sizes.
    check_branch(student, 61, "official", [(2, 8, 2, (9, 7), 2, 4), (1, 6, 3, (5, 6), 1, 2)])


@pytest.mark.exercise("6.1", points=2)
def test_bam_spatial_branch_paper_and_no_dilated_conv(student):
    check_branch(student, 62, "paper", [(2, 4, 2, (6, 5), 2, 3), (3, 4, 2, (4, 4), 0, 4)])
