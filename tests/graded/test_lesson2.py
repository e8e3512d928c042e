"""Lesson 2: the shared MLP, backward of a linear layer (2.1) and CBAM's channel-attention logit (2.2)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn.grading.checks import describe, expect_array, expect_none, expect_values, torch_gradients

DTYPES = [np.float64, np.float32]


def linear_cases(seed):
    rng = np.random.default_rng(seed)
    # (N, in, out): non-square weights (a transposed W cannot pass), a batch of one.
    for n, inputs, outputs in [(4, 6, 3), (1, 5, 2), (7, 3, 8)]:
        for dtype in DTYPES:
            yield tuple(rng.standard_normal(s).astype(dtype)
                        for s in [(n, inputs), (outputs, inputs), (outputs,), (n, outputs)])


# -- run in the student's process ----------------------------------------------
def linear_backward(grad, x, weight, has_bias):
    from minitorch_attn.backends import kernels

    return kernels("numpy").linear_backward(grad, x, weight, has_bias)


def channel_logit_gradients(arrays, grad, case):
    from minitorch_attn.grading.checks import our_gradients
    from minitorch_attn.nn.cbam import channel_attention_logit

    return our_gradients(lambda w0, b0, w1, b1, *d: channel_attention_logit(d, w0, b0, w1, b1), arrays, grad, case)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("2.1", points=3)
def test_linear_backward_matches_torch(student):
    for x, weight, bias, grad in linear_cases(21):
        result = student(linear_backward, grad, x, weight, True)
        dx, dweight, dbias = expect_values(result, ("dx", "dweight", "dbias"), "linear_backward")
        _, expected = torch_gradients(F.linear, [x, weight, bias], grad)
        case = describe(x=x, weight=weight)
        for name, actual, wanted in zip(("dx", "dweight", "dbias"), (dx, dweight, dbias), expected):
            expect_array(actual, wanted, name, case)


@pytest.mark.exercise("2.1", points=1)
def test_linear_backward_without_bias(student):
    for x, weight, _, grad in linear_cases(22):
        result = student(linear_backward, grad, x, weight, False)
        dx, dweight, dbias = expect_values(result, ("dx", "dweight", "dbias"), "linear_backward")
        case = describe(x=x, weight=weight) + ", has_bias=False"
        expect_none(dbias, "dbias", case, " when the layer has no bias")
        _, (expected_dx, expected_dweight) = torch_gradients(F.linear, [x, weight], grad)
        expect_array(dx, expected_dx, "dx", case)
        expect_array(dweight, expected_dweight, "dweight", case)


def channel_logit_cases(seed):
    rng = np.random.default_rng(seed)
    # (N, C, hidden C // r, number of descriptors): C not divisible by r, a batch of one, SE (one descriptor).
    for n, channels, hidden, count in [(3, 5, 2, 2), (1, 8, 2, 1), (2, 6, 3, 3)]:
        for dtype in DTYPES:
            shapes = [(hidden, channels), (hidden,), (channels, hidden), (channels,)] + [(n, channels)] * count
            arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
            yield arrays, rng.standard_normal((n, channels)).astype(dtype)


def torch_channel_logit(w0, b0, w1, b1, *descriptors):
    return sum(F.linear(torch.relu(F.linear(d, w0, b0)), w1, b1) for d in descriptors)


@pytest.mark.exercise("2.2", points=3)
def test_channel_attention_logit_matches_torch(student):
    for arrays, grad in channel_logit_cases(23):
        case = describe(descriptor=arrays[4], w0=arrays[0]) + f", {len(arrays) - 4} descriptor(s)"
        out, grads = student(channel_logit_gradients, arrays, grad, case)
        expected_out, expected_grads = torch_gradients(torch_channel_logit, arrays, grad)
        expect_array(out, expected_out, "the logit", case)
        names = ["dW0", "db0", "dW1", "db1"] + [f"d(descriptor {i})" for i in range(len(arrays) - 4)]
        for name, actual, wanted in zip(names, grads, expected_grads):
            expect_array(actual, wanted, name, case)
