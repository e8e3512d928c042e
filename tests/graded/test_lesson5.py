"""Lesson 5: batch norm backward in train mode, through the batch mean and variance (5.1)."""
import numpy as np
import pytest
import torch.nn.functional as F

from minitorch_attn.grading.checks import describe, expect_array, expect_values, torch_gradients

EPS = 1e-5


def batch_norm_cases(seed):
    rng = np.random.default_rng(seed)
    # (N, C, L, scale, offset): odd sizes, a batch of one (statistics over L), L = 1 (BatchNorm1d), and
    # large magnitudes where a careless formula loses digits.
    for n, c, length, scale, offset, dtype in [
        (4, 3, 5, 1, 0, np.float64), (1, 2, 7, 2, 1, np.float64), (6, 4, 1, 1, -3, np.float64),
        (3, 2, 4, 1e3, 1e4, np.float64), (4, 3, 5, 1, 0.5, np.float32), (5, 2, 1, 3, 0, np.float32),
    ]:
        x = (rng.standard_normal((n, c, length)) * scale + offset).astype(dtype)
        weight = (1 + rng.standard_normal(c) / 3).astype(dtype)
        bias = rng.standard_normal(c).astype(dtype)
        yield x, weight, bias, rng.standard_normal((n, c, length)).astype(dtype)


def torch_batch_norm(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=EPS)


# -- run in the student's process ----------------------------------------------
def batch_norm_backward(x, weight, bias, grad):
    from minitorch_attn.backends import kernels

    _, xhat, inv_std, _, _ = kernels("numpy").batch_norm_train_forward(x, weight, bias, EPS)
    return kernels("numpy").batch_norm_backward(grad, xhat, inv_std, weight, True)


def batch_norm_gradients(x, weight, bias, grad, case):
    from minitorch_attn import ops
    from minitorch_attn.grading.checks import our_gradients

    running = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
    return our_gradients(lambda t, w, b: ops.batch_norm(t, *running, w, b, training=True, eps=EPS),
                         [x, weight, bias], grad, case)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("5.1", points=3)
def test_batch_norm_backward_matches_torch(student):
    for x, weight, bias, grad in batch_norm_cases(51):
        result = student(batch_norm_backward, x, weight, bias, grad)
        dx, dweight, dbias = expect_values(result, ("dx", "dweight", "dbias"), "batch_norm_backward")
        _, expected = torch_gradients(torch_batch_norm, [x, weight, bias], grad)
        case = describe(x=x)
        for name, actual, wanted in zip(("dx", "dweight", "dbias"), (dx, dweight, dbias), expected):
            expect_array(actual, wanted, name, case)


@pytest.mark.exercise("5.1", points=1)
def test_batch_norm_gradient_through_autograd_on_images(student):
    rng = np.random.default_rng(52)
    for shape, dtype in [((3, 4, 5, 3), np.float64), ((2, 3, 4, 4), np.float32)]:
        x = rng.standard_normal(shape).astype(dtype)
        weight, bias = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
        grad = rng.standard_normal(shape).astype(dtype)
        case = describe(x=x) + ", through ops.batch_norm"
        _, grads = student(batch_norm_gradients, x, weight, bias, grad, case)
        _, expected = torch_gradients(torch_batch_norm, [x, weight, bias], grad)
        for name, actual, wanted in zip(("x.grad", "weight.grad", "bias.grad"), grads, expected):
            expect_array(actual, wanted, name, case)
