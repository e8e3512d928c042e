"""Lesson 7: BAM's output F' = F + F ⊗ σ(fused logits): its backward (7.1) and the fusion options (7.2)."""
import numpy as np
import pytest
import torch

from minitorch_attn.grading.checks import describe, expect_array, expect_values, torch_gradients


def gate_cases(seed, logit_scale=1.0, integer_valued=False):
    rng = np.random.default_rng(seed)
    # Odd sizes, a batch of one, C = 1; logit_scale 30 saturates the sigmoid.
    for n, c, h, w in [(2, 3, 4, 5), (1, 4, 3, 3), (3, 1, 5, 2)]:
        for dtype in (np.float64, np.float32):
            if integer_valued:  # many ties between the channel and the spatial logit
                logits = rng.integers(-1, 2, (n, c)), rng.integers(-1, 2, (n, 1, h, w))
            else:
                logits = rng.standard_normal((n, c)) * logit_scale, rng.standard_normal((n, 1, h, w)) * logit_scale
            yield ([rng.standard_normal((n, c, h, w)).astype(dtype)] + [a.astype(dtype) for a in logits],
                   rng.standard_normal((n, c, h, w)).astype(dtype))


def torch_residual_gate(x, channel_logit, spatial_logit):
    return x + x * torch.sigmoid(channel_logit[:, :, None, None] + spatial_logit)


# -- run in the student's process ----------------------------------------------
def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    from minitorch_attn.backends import kernels

    return kernels("numpy").residual_gate_backward(grad, x, channel_logit, spatial_logit)


def residual_gate_gradients(arrays, grad, case):
    from minitorch_attn import ops
    from minitorch_attn.grading.checks import our_gradients

    return our_gradients(ops.residual_gate, arrays, grad, case)


def fuse_gradients(arrays, grad, fusion, branches, case):
    from minitorch_attn.grading.checks import our_gradients
    from minitorch_attn.nn.bam import bam_fuse

    def ours(x, *logits):
        given = dict(zip(branches, logits))
        return bam_fuse(x, given.get("channel"), given.get("spatial"), fusion)

    return our_gradients(ours, arrays, grad, case)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("7.1", points=2)
def test_residual_gate_backward_matches_torch(student):
    for scale, seed in [(1.0, 71), (30.0, 72)]:
        for arrays, grad in gate_cases(seed, scale):
            result = student(residual_gate_backward, grad, *arrays)
            grads = expect_values(result, ("dx", "dchannel_logit", "dspatial_logit"), "residual_gate_backward")
            _, expected = torch_gradients(torch_residual_gate, arrays, grad)
            case = describe(x=arrays[0]) + f", logits of scale {scale:g}"
            for name, actual, wanted in zip(("dx", "dchannel_logit", "dspatial_logit"), grads, expected):
                expect_array(actual, wanted, name, case)


@pytest.mark.exercise("7.1", points=1)
def test_residual_gate_gradient_through_autograd(student):
    for arrays, grad in gate_cases(73):
        case = describe(x=arrays[0]) + ", through ops.residual_gate"
        _, grads = student(residual_gate_gradients, arrays, grad, case)
        _, expected = torch_gradients(torch_residual_gate, arrays, grad)
        for name, actual, wanted in zip(("x.grad", "channel_logit.grad", "spatial_logit.grad"), grads, expected):
            expect_array(actual, wanted, name, case)


def torch_fuse(fusion, branches):
    def fuse(x, *logits):
        expanded = dict(zip(branches, logits))
        channel = expanded.get("channel")
        channel = None if channel is None else channel[:, :, None, None]
        spatial = expanded.get("spatial")
        if spatial is None or channel is None:
            logit = channel if spatial is None else spatial
        elif fusion == "sum":
            logit = channel + spatial
        elif fusion == "product":
            logit = channel * spatial
        else:
            logit = torch.where(channel >= spatial, channel, spatial)  # ties: the gradient goes to M_c
        return x + x * torch.sigmoid(logit)
    return fuse


def check_fuse(student, seed, fusion, branches=("channel", "spatial"), integer_valued=False):
    for (x, channel_logit, spatial_logit), grad in gate_cases(seed, integer_valued=integer_valued):
        chosen = {"channel": channel_logit, "spatial": spatial_logit}
        arrays = [x] + [chosen[b] for b in branches]
        case = describe(x=x) + f", fusion {fusion!r}, branches {'+'.join(branches)}"
        if integer_valued:
            case += " (tied logits)"
        out, grads = student(fuse_gradients, arrays, grad, fusion, branches, case)
        expected_out, expected = torch_gradients(torch_fuse(fusion, branches), arrays, grad)
        expect_array(out, expected_out, "the output", case)
        names = ["x.grad"] + [f"{b}_logit.grad" for b in branches]
        for name, actual, wanted in zip(names, grads, expected):
            expect_array(actual, wanted, name, case)


@pytest.mark.exercise("7.2", points=1)
def test_bam_fuse_sum(student):
    check_fuse(student, 74, "sum")


@pytest.mark.exercise("7.2", points=1)
def test_bam_fuse_product(student):
    check_fuse(student, 75, "product")


@pytest.mark.exercise("7.2", points=1)
def test_bam_fuse_max_with_ties(student):
    check_fuse(student, 76, "max", integer_valued=True)


@pytest.mark.exercise("7.2", points=1)
def test_bam_fuse_single_branch(student):
    check_fuse(student, 77, "sum", branches=("channel",))
    check_fuse(student, 78, "sum", branches=("spatial",))
