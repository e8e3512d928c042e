"""Lesson 3: CBAM's spatial attention: channel pooling (3.1, 3.2), the 7×7 conv backward (3.3), the logit (3.4)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn.grading.checks import describe, expect_array, expect_none, expect_values, torch_gradients

DTYPES = [np.float64, np.float32]
SHAPES = [(2, 3, 5, 4), (1, 1, 1, 1), (3, 5, 7, 3), (1, 4, 1, 6)]


def pooling_cases(seed, integer_valued=False):
    rng = np.random.default_rng(seed)
    for n, c, h, w in SHAPES:
        for dtype in DTYPES:
            x = rng.integers(-2, 3, (n, c, h, w)) if integer_valued else rng.standard_normal((n, c, h, w)) * 3
            yield x.astype(dtype), rng.standard_normal((n, 1, h, w)).astype(dtype)


# -- run in the student's process ----------------------------------------------
def channel_mean_backward(grad, shape):
    from minitorch_attn.backends import kernels

    return kernels("numpy").channel_mean_backward(grad, shape)


def channel_max_backward(x, grad):
    from minitorch_attn.backends import kernels

    _, index = kernels("numpy").channel_max_forward(x)
    return kernels("numpy").channel_max_backward(grad, index, x.shape)


def channel_max_gradient(x, grad, case):
    from minitorch_attn import ops
    from minitorch_attn.grading.checks import our_gradients

    return our_gradients(ops.channel_max, [x], grad, case)


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias):
    from minitorch_attn.backends import kernels

    return kernels("numpy").conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias)


def spatial_logit_gradients(compressed, weight, grad, case, bn_affine=None):
    """The logit and its gradients; with ``bn_affine = (γ, β)``, through a BatchNorm2d(1) in train mode."""
    from minitorch_attn.grading.checks import our_gradients
    from minitorch_attn.nn.cbam import spatial_attention_logit
    from minitorch_attn.nn.layers import BatchNorm2d

    bn = None
    if bn_affine is not None:
        bn = BatchNorm2d(1, momentum=0.01)
        bn = bn.double() if compressed.dtype == np.float64 else bn
        bn.weight.data[...], bn.bias.data[...] = bn_affine
    out, grads = our_gradients(lambda c, w: spatial_attention_logit(c, w, bn), [compressed, weight], grad, case)
    return out, grads, (None if bn is None else (bn.weight.data, bn.bias.data, bn.eps))


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("3.1", points=2)
def test_channel_mean_backward_matches_torch(student):
    for x, grad in pooling_cases(31):
        dx = student(channel_mean_backward, grad, x.shape)
        _, (expected,) = torch_gradients(lambda t: t.mean(dim=1, keepdim=True), [x], grad)
        expect_array(dx, expected, "dx", describe(x=x))


def _torch_channel_max(t):
    return t.max(dim=1, keepdim=True).values  # index-based: the first maximal channel gets the gradient


@pytest.mark.exercise("3.2", points=1)
def test_channel_max_backward_matches_torch(student):
    for x, grad in pooling_cases(32):
        dx = student(channel_max_backward, x, grad)
        _, (expected,) = torch_gradients(_torch_channel_max, [x], grad)
        expect_array(dx, expected, "dx", describe(x=x))


@pytest.mark.exercise("3.2", points=2)
def test_channel_max_ties_go_to_the_first_maximal_channel(student):
    for x, grad in pooling_cases(33, integer_valued=True):
        _, (dx,) = student(channel_max_gradient, x, grad, describe(x=x))
        _, (expected,) = torch_gradients(_torch_channel_max, [x], grad)
        expect_array(dx, expected, "x.grad (tied maxima)", describe(x=x))


def check_conv_backward(student, seed, x_shape, weight_shape, bias, stride=1, padding=0, dilation=1, groups=1):
    rng = np.random.default_rng(seed)
    options = dict(stride=(stride,) * 2, padding=(padding,) * 2, dilation=(dilation,) * 2, groups=groups)
    for dtype in DTYPES:
        arrays = [rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(weight_shape).astype(dtype)]
        if bias:
            arrays.append(rng.standard_normal(weight_shape[0]).astype(dtype))
        reference = F.conv2d(*[torch.from_numpy(a) for a in arrays], **options)
        grad = rng.standard_normal(tuple(reference.shape)).astype(dtype)
        _, expected = torch_gradients(lambda *t: F.conv2d(*t, **options), arrays, grad)
        result = student(conv2d_backward, grad, arrays[0], arrays[1], *options.values(), bias)
        dx, dweight, dbias = expect_values(result, ("dx", "dweight", "dbias"), "conv2d_backward")
        case = describe(x=arrays[0], weight=arrays[1]) + (
            f", stride {stride}, padding {padding}, dilation {dilation}, groups {groups}, bias {bias}")
        expect_array(dx, expected[0], "dx", case)
        expect_array(dweight, expected[1], "dweight", case)
        if bias:
            expect_array(dbias, expected[2], "dbias", case)
        else:
            expect_none(dbias, "dbias", case, " when the conv has no bias")


@pytest.mark.exercise("3.3", points=2)
def test_conv2d_backward_cbam_7x7(student):
    # CBAM's spatial conv: [mean; max] (2 channels) -> 1, 7×7, padding 3, no bias; odd H, W != H.
    check_conv_backward(student, 34, (2, 2, 9, 8), (1, 2, 7, 7), bias=False, padding=3)
    check_conv_backward(student, 35, (1, 2, 5, 5), (1, 2, 7, 7), bias=False, padding=3)  # kernel wider than the map


@pytest.mark.exercise("3.3", points=2)
def test_conv2d_backward_dilated(student):
    # BAM's dilated 3×3 convs: padding = dilation keeps H×W.
    check_conv_backward(student, 36, (2, 3, 11, 10), (3, 3, 3, 3), bias=True, padding=2, dilation=2)
    check_conv_backward(student, 37, (1, 2, 9, 7), (2, 2, 3, 3), bias=True, padding=4, dilation=4)


@pytest.mark.exercise("3.3", points=2)
def test_conv2d_backward_stride_groups_and_1x1(student):
    check_conv_backward(student, 38, (1, 4, 7, 6), (6, 2, 3, 3), bias=True, stride=2, padding=1, groups=2)
    check_conv_backward(student, 39, (3, 5, 4, 4), (2, 5, 1, 1), bias=True)  # BAM's 1×1 reduction


def spatial_logit_cases(seed):
    rng = np.random.default_rng(seed)
    # (N, C', H, W, k): the channel pool with 7×7 and 3×3, the learned 1×1 compression (C' = 1).
    for n, channels, h, w, size in [(2, 2, 9, 8, 7), (3, 2, 5, 6, 3), (2, 1, 6, 5, 7)]:
        for dtype in DTYPES:
            yield (rng.standard_normal((n, channels, h, w)).astype(dtype),
                   rng.standard_normal((1, channels, size, size)).astype(dtype),
                   rng.standard_normal((n, 1, h, w)).astype(dtype))


@pytest.mark.exercise("3.4", points=2)
def test_spatial_attention_logit_without_bn(student):
    for compressed, weight, grad in spatial_logit_cases(40):
        case = describe(compressed=compressed, weight=weight)
        out, grads, _ = student(spatial_logit_gradients, compressed, weight, grad, case)
        padding = weight.shape[-1] // 2
        expected_out, expected = torch_gradients(lambda c, w: F.conv2d(c, w, padding=padding),
                                                 [compressed, weight], grad)
        expect_array(out, expected_out, "the logit", case)
        expect_array(grads[0], expected[0], "d(compressed)", case)
        expect_array(grads[1], expected[1], "dweight", case)


@pytest.mark.exercise("3.4", points=1)
def test_spatial_attention_logit_with_bn(student):
    rng = np.random.default_rng(41)
    for compressed, weight, grad in spatial_logit_cases(42):
        scale, shift = rng.standard_normal(2)
        case = describe(compressed=compressed, weight=weight) + ", with BatchNorm2d(1) in train mode"
        out, grads, (bn_weight, bn_bias, eps) = student(spatial_logit_gradients, compressed, weight, grad, case,
                                                        (1 + scale / 4, shift))
        padding = weight.shape[-1] // 2

        def reference(c, w):
            logit = F.conv2d(c, w, padding=padding)
            return F.batch_norm(logit, None, None, torch.from_numpy(bn_weight), torch.from_numpy(bn_bias),
                                training=True, eps=eps)

        expected_out, expected = torch_gradients(reference, [compressed, weight], grad)
        expect_array(out, expected_out, "the logit", case)
        expect_array(grads[0], expected[0], "d(compressed)", case)
        expect_array(grads[1], expected[1], "dweight", case)
