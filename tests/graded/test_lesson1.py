"""Lesson 1: backward of global average and max pooling over H×W."""
import numpy as np
import pytest

from minitorch_attn.grading.checks import describe, expect_array, torch_gradients

# Odd sizes, a batch of one, a 1×1 plane, H != W (catches H and W swapped).
SHAPES = [(2, 3, 5, 4), (1, 1, 1, 1), (3, 5, 7, 3), (1, 4, 1, 6)]
DTYPES = [np.float64, np.float32]


def cases(seed, integer_valued=False):
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for dtype in DTYPES:
            # Integer values from a small range give many tied maxima.
            x = rng.integers(-2, 3, shape) if integer_valued else rng.standard_normal(shape) * 3
            yield x.astype(dtype), rng.standard_normal(shape[:2]).astype(dtype)


# -- run in the student's process ----------------------------------------------
def avg_pool_backward(grad, shape):
    from minitorch_attn.backends import kernels

    return kernels("numpy").global_avg_pool_backward(grad, shape)


def avg_pooled_twice_gradient(x, grad, case):
    # x feeds two poolings: the engine adds their gradients, so the kernel must return a writable array.
    from minitorch_attn import ops
    from minitorch_attn.grading.checks import our_gradients

    return our_gradients(lambda t: ops.add(ops.global_avg_pool(t), ops.global_avg_pool(t)), [x], grad, case)


def max_pool_backward(x, grad):
    from minitorch_attn.backends import kernels

    _, index = kernels("numpy").global_max_pool_forward(x)
    return kernels("numpy").global_max_pool_backward(grad, index, x.shape)


def max_pool_gradient(x, grad, case):
    from minitorch_attn import ops
    from minitorch_attn.grading.checks import our_gradients

    return our_gradients(ops.global_max_pool, [x], grad, case)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("1.1", points=2)
def test_global_avg_pool_backward_matches_torch(student):
    for x, grad in cases(11):
        dx = student(avg_pool_backward, grad, x.shape)
        _, (expected,) = torch_gradients(lambda t: t.mean(dim=(2, 3)), [x], grad)
        expect_array(dx, expected, "dx", describe(x=x))


@pytest.mark.exercise("1.1", points=1)
def test_global_avg_pool_gradient_through_autograd(student):
    for x, grad in cases(12):
        _, (dx,) = student(avg_pooled_twice_gradient, x, grad, describe(x=x))
        _, (expected,) = torch_gradients(lambda t: 2 * t.mean(dim=(2, 3)), [x], grad)
        expect_array(dx, expected, "x.grad", describe(x=x))


def _torch_global_max(t):
    # Index-based max: the whole gradient goes to the first maximum, as in max_pool2d.
    return t.flatten(2).max(dim=2).values


@pytest.mark.exercise("1.2", points=1)
def test_global_max_pool_backward_matches_torch(student):
    for x, grad in cases(13):
        dx = student(max_pool_backward, x, grad)
        _, (expected,) = torch_gradients(_torch_global_max, [x], grad)
        expect_array(dx, expected, "dx", describe(x=x))


@pytest.mark.exercise("1.2", points=2)
def test_global_max_pool_ties_go_to_the_first_maximum(student):
    for x, grad in cases(14, integer_valued=True):
        _, (dx,) = student(max_pool_gradient, x, grad, describe(x=x))
        _, (expected,) = torch_gradients(_torch_global_max, [x], grad)
        expect_array(dx, expected, "x.grad (tied maxima)", describe(x=x))
