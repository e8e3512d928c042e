"""The Numba CPU backend against the NumPy reference, kernel by kernel.

Inputs come from a seeded NumPy generator whose seed, shapes and options are
drawn by hypothesis: odd sizes, N=1, float32 and float64, integer-valued inputs
(ties in every max), conv stride/padding/dilation/groups, large magnitudes.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_attn.backends import KERNEL_NAMES
from minitorch_attn.backends import numba as nb
from minitorch_attn.backends import numpy_backend as ref
from minitorch_attn.backends.numba import lanes as lanes_module
from minitorch_attn.backends.numba import simd
from minitorch_attn.backends.numba.lanes import PIXEL_BLOCK
from minitorch_attn.backends.numba import conv as conv_kernels
from minitorch_attn.backends.numba.winograd import winograd_conv3x3
from minitorch_attn.testing import assert_close

ROOT = Path(__file__).resolve().parents[1]
DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
SMALL = settings(max_examples=12, deadline=None)


def values(rng, shape, dtype, ties=False, scale=1.0):
    """Normal values, or small integers when ``ties`` (every max then has equal candidates)."""
    data = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape) * scale
    return np.asarray(data, dtype)


def assert_same(name, actual, expected):
    """Float outputs within the dtype's tolerance (and of the same dtype); index outputs exactly equal."""
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    assert len(actual) == len(expected), name
    for i, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None, f"{name}[{i}]: expected None"
            continue
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{name}[{i}]: shape {a.shape}, expected {e.shape}"
        if e.dtype.kind in "iu":
            assert np.array_equal(a, e), f"{name}[{i}]: indices differ at {np.argwhere(a != e)[:3].tolist()}"
        else:
            assert a.dtype == e.dtype, f"{name}[{i}]: dtype {a.dtype}, expected {e.dtype}"
            assert_close(a, e, name=f"{name}[{i}]")


def check(name, *args):
    assert_same(name, getattr(nb, name)(*args), getattr(ref, name)(*args))


def kernel_cases(rng, dtype, shape=(2, 5, 4, 3), ties=False):
    """``[(kernel name, args)]`` covering every kernel once on the given (N, C, H, W)."""
    N, C, H, W = shape
    x = values(rng, shape, dtype, ties)
    pooled_grad = values(rng, (N, C), dtype)
    pixel_grad = values(rng, (N, 1, H, W), dtype)
    _, _, plane_index = ref.global_avg_max_pool_forward(x)
    _, channel_index = ref.channel_max_forward(x)
    gate = np.asarray(rng.random((N, C)), dtype)
    gated_pool, gated_index = ref.gated_channel_pool_forward(x, gate)
    features = values(rng, (N, 7), dtype)
    weight = values(rng, (3, 7), dtype)
    bias = values(rng, 3, dtype)
    conv_weight = values(rng, (C, 1, 3, 3), dtype)  # depthwise: the direct path
    conv_args = ((2, 1), (1, 2), (1, 2), C)
    conv_out = ref.conv2d_forward(x, conv_weight, None, *conv_args)
    x3 = x.reshape(N, C, H * W)
    per_channel = np.asarray(rng.random(C) + 0.5, dtype)
    _, xhat, inv_std, _, _ = ref.batch_norm_train_forward(x3, per_channel, per_channel, 1e-5)
    logits = values(rng, (N, 6), dtype)
    labels = rng.integers(0, 6, N)
    _, probs = ref.softmax_cross_entropy_forward(logits, labels)
    return [
        ("global_avg_pool_forward", (x,)),
        ("global_avg_pool_backward", (pooled_grad, shape)),
        ("global_max_pool_forward", (x,)),
        ("global_max_pool_backward", (pooled_grad, plane_index, shape)),
        ("global_lp_pool_forward", (x,)),
        ("global_lp_pool_backward", (pooled_grad, x, ref.global_lp_pool_forward(x))),
        ("global_lse_pool_forward", (x,)),
        ("global_lse_pool_backward", (pooled_grad, x, ref.global_lse_pool_forward(x))),
        ("channel_mean_forward", (x,)),
        ("channel_mean_backward", (pixel_grad, shape)),
        ("channel_max_forward", (x,)),
        ("channel_max_backward", (pixel_grad, channel_index, shape)),
        ("linear_forward", (features, weight, bias)),
        ("linear_backward", (values(rng, (N, 3), dtype), features, weight, True)),
        ("relu_forward", (x,)),
        ("relu_backward", (values(rng, shape, dtype), ref.relu_forward(x))),
        ("sigmoid_forward", (x,)),
        ("sigmoid_backward", (values(rng, shape, dtype), ref.sigmoid_forward(x))),
        ("mul_forward", (x, pixel_grad)),
        ("mul_backward", (values(rng, shape, dtype), x, pixel_grad)),
        ("add_forward", (x, pooled_grad[:, :, None, None])),
        ("sum_to_shape", (x, (C, 1, 1))),
        ("conv2d_forward", (x, conv_weight, bias[:1].repeat(C), *conv_args)),
        ("conv2d_backward", (values(rng, conv_out.shape, dtype), x, conv_weight, *conv_args, True)),
        ("batch_norm_train_forward", (x3, per_channel, per_channel, 1e-5)),
        ("batch_norm_eval_forward", (x3, per_channel, per_channel, per_channel, per_channel, 1e-5)),
        ("batch_norm_backward", (values(rng, x3.shape, dtype), xhat, inv_std, per_channel, True)),
        ("softmax_cross_entropy_forward", (logits, labels)),
        ("softmax_cross_entropy_backward", (np.asarray(0.7, dtype), probs, labels)),
        ("global_avg_max_pool_forward", (x,)),
        ("global_avg_max_pool_backward", (pooled_grad, pooled_grad * 2, plane_index, shape)),
        ("gated_channel_pool_forward", (x, gate)),
        ("gated_channel_pool_backward", (values(rng, gated_pool.shape, dtype), x, gate, gated_index)),
        ("channel_spatial_gate_forward", (x, gate, pixel_grad)),
        ("channel_spatial_gate_backward", (values(rng, shape, dtype), x, gate, pixel_grad)),
        ("residual_gate_forward", (x, pooled_grad, pixel_grad)),
        ("residual_gate_backward", (values(rng, shape, dtype), x, pooled_grad, pixel_grad)),
    ]


def test_every_kernel_is_defined_and_covered():
    missing = [name for name in KERNEL_NAMES if not callable(getattr(nb, name, None))]
    assert not missing, f"numba backend lacks {missing}"
    covered = {name for name, _ in kernel_cases(np.random.default_rng(0), np.float64)}
    assert covered == set(KERNEL_NAMES)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_kernel_matches_numpy_on_a_small_case(dtype):
    for name, args in kernel_cases(np.random.default_rng(1), dtype):
        check(name, *args)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9))


@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=shapes, ties=st.booleans())
def test_global_pools(seed, dtype, shape, ties):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype, ties)
    grad, grad_max = values(rng, shape[:2], dtype), values(rng, shape[:2], dtype)
    for name in ("global_avg_pool", "global_max_pool", "global_lp_pool", "global_lse_pool"):
        check(f"{name}_forward", x)
    _, index = ref.global_max_pool_forward(x)
    check("global_avg_pool_backward", grad, shape)
    check("global_max_pool_backward", grad, index, shape)
    for name in ("global_lp_pool", "global_lse_pool"):
        check(f"{name}_backward", grad, x, getattr(ref, f"{name}_forward")(x))
    check("global_avg_max_pool_forward", x)
    check("global_avg_max_pool_backward", grad, grad_max, index, shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lane_reductions_across_the_vector_chunks(dtype):
    """The vector loops of ``lanes`` at every length up to five vectors and one (chunks of two
    vectors, a lone vector, a scalar tail): sums against float64, and the first maximum wherever it
    lies: in a chunk, in the lone vector, in the tail, tied with a later element, or a NaN."""
    width = simd.lanes(dtype)
    for n in range(1, 5 * width + 2):
        row = np.arange(n, dtype=dtype) % 7 - 3
        other = np.linspace(-1, 1, n).astype(dtype)
        rtol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(lanes_module._lane_sum(row), row.astype(np.float64).sum(), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(lanes_module._lane_dot(row, other), row.astype(np.float64) @ other,
                                   rtol=rtol, atol=rtol)
        np.testing.assert_allclose(lanes_module._lane_sum_and_dot(row, other),
                                   (row.astype(np.float64).sum(), row.astype(np.float64) @ other), rtol=rtol, atol=rtol)
        centre = dtype(0.25)
        np.testing.assert_allclose(lanes_module._lane_centered_squares(row, centre),
                                   ((row.astype(np.float64) - 0.25) ** 2).sum(), rtol=rtol, atol=rtol)
        for where in range(n):
            peaked = row.copy()
            peaked[where] = 10
            peaked[where + 1::2 * width] = 10  # later ties, in this chunk or later ones, must not win
            total, peak, index = lanes_module._sum_and_first_max(peaked)
            assert (peak, index) == (10, where), (n, where)
            np.testing.assert_allclose(total, peaked.astype(np.float64).sum(), rtol=rtol, atol=rtol)
            nan_row = peaked.copy()
            nan_row[where] = np.nan
            _, peak, index = lanes_module._sum_and_first_max(nan_row)
            assert np.isnan(peak) and index == where, (n, where)
        flat = np.full(n, -np.inf, dtype)
        assert lanes_module._sum_and_first_max(flat)[1:] == (-np.inf, 0)
        both = flat.copy()
        both[n // 2] = np.inf  # the sum is inf - inf = NaN without a NaN in the row
        _, peak, index = lanes_module._sum_and_first_max(both)
        assert (peak, index) == ((np.inf, n // 2) if n > 1 else (np.inf, 0))


def test_vector_loads_refuse_a_strided_row():
    """The vector loads do raw pointer arithmetic: a strided view must be refused when it is compiled."""
    if numba.config.DISABLE_JIT:
        pytest.skip("plain Python slices the row itself")
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous"):
        lanes_module._lane_sum(np.arange(64.0)[::2])


def test_tiles_fill_half_the_vector_registers():
    """A tile is two AVX-512 vectors or one AVX2 vector: the micro-kernels' 8 tiles of sums then take 16 of
    AVX-512's 32 registers or 8 of AVX2's 16 (16 AVX2 vectors of sums spilled and ran at half speed)."""
    assert simd.TILE_BYTES == (128 if simd.VECTOR_BYTES == 64 else simd.VECTOR_BYTES)

    @numba.njit
    def tile_sum_and_width(row):
        return simd.vector_sum(simd.tile_load(row, 1)), simd.tile_width(row)

    for dtype in (np.float32, np.float64):
        width = simd.lanes(dtype, simd.TILE_BYTES)
        row = np.arange(width + 1, dtype=dtype)
        assert tile_sum_and_width(row) == (row[1:].sum(), width)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_micro_kernels_same_bits_however_the_positions_are_split(dtype):
    """The forward kernel over 7 output rows (a block of four, three lone ones) and the weight-gradient kernel
    over 5 taps (a quad, a lone tap) against float64 sums; and the same bits whether the positions come in one
    run or in two (tasks and KERNEL_RUN split them differently for different thread counts)."""
    from minitorch_attn.backends.numba.microkernels import KERNEL_RUN, _group_outputs, _group_weight_grads
    rng = np.random.default_rng(11)
    rows, taps, length = 7, 5, 3 * KERNEL_RUN + 64
    offsets = rng.integers(0, 90, taps).astype(np.int64)
    planes = values(rng, (offsets.max() + length + 64,), dtype)
    flat_weight, start = values(rng, (rows, taps), dtype), values(rng, (rows,), dtype)
    reads = np.stack([planes[o:o + length] for o in offsets]).astype(np.float64)
    whole, split = np.empty((rows, length), dtype), np.empty((rows, length), dtype)
    _group_outputs(whole, 0, rows, 0, length, flat_weight, offsets, planes, start)
    _group_outputs(split, 0, rows, 0, 64, flat_weight, offsets, planes, start)
    _group_outputs(split, 0, rows, 64, length, flat_weight, offsets, planes, start)
    np.testing.assert_array_equal(whole, split)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(whole, start[:, None] + flat_weight.astype(np.float64) @ reads, rtol=rtol, atol=rtol)
    grad = values(rng, (rows, length), dtype)
    dweight = np.empty((rows, taps), dtype)
    for t in range(0, taps, 4):
        _group_weight_grads(grad, 0, 0, rows, planes, offsets, t, 0, length, dweight)
    np.testing.assert_allclose(dweight, grad.astype(np.float64) @ reads.T, rtol=rtol, atol=rtol * length)


@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=shapes, ties=st.booleans())
def test_channel_pools_and_gate(seed, dtype, shape, ties):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype, ties)
    # Integer gates keep the gated values integer too, so ties survive the product.
    gate = values(rng, shape[:2], dtype, ties) if ties else np.asarray(rng.random(shape[:2]), dtype)
    pixel_grad = values(rng, (shape[0], 1, *shape[2:]), dtype)
    check("channel_mean_forward", x)
    check("channel_max_forward", x)
    check("channel_mean_backward", pixel_grad, shape)
    check("channel_max_backward", pixel_grad, ref.channel_max_forward(x)[1], shape)
    check("gated_channel_pool_forward", x, gate)
    pooled, index = ref.gated_channel_pool_forward(x, gate)
    check("gated_channel_pool_backward", values(rng, pooled.shape, dtype), x, gate, index)
    check("channel_spatial_gate_forward", x, gate, pixel_grad)
    check("channel_spatial_gate_backward", values(rng, shape, dtype), x, gate, pixel_grad)


@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=shapes, scale=st.sampled_from([1.0, 30.0, 1e3]))
def test_residual_gate_and_activations_with_large_magnitudes(seed, dtype, shape, scale):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype)
    channel_logit = values(rng, shape[:2], dtype, scale=scale)
    spatial_logit = values(rng, (shape[0], 1, *shape[2:]), dtype, scale=scale)
    check("residual_gate_forward", x, channel_logit, spatial_logit)
    check("residual_gate_backward", values(rng, shape, dtype), x, channel_logit, spatial_logit)
    z = values(rng, shape, dtype, scale=scale)
    check("sigmoid_forward", z)
    check("sigmoid_backward", x, ref.sigmoid_forward(z))
    check("relu_forward", z)
    check("relu_backward", x, ref.relu_forward(z))
    check("global_lse_pool_forward", z)
    check("global_lse_pool_backward", values(rng, shape[:2], dtype), z, ref.global_lse_pool_forward(z))
    logits = values(rng, (shape[0], shape[1] + 1), dtype, scale=scale)
    labels = rng.integers(0, logits.shape[1], shape[0])
    check("softmax_cross_entropy_forward", logits, labels)
    check("softmax_cross_entropy_backward", np.asarray(1.3, dtype),
          ref.softmax_cross_entropy_forward(logits, labels)[1], labels)


@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=shapes, pattern=st.lists(st.booleans(), min_size=4, max_size=4),
       drop_leading=st.integers(0, 2))
def test_broadcasting_arithmetic(seed, dtype, shape, pattern, drop_leading):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype)
    small_shape = tuple(1 if squeeze else n for n, squeeze in zip(shape, pattern))[drop_leading:]
    small = values(rng, small_shape, dtype)
    check("mul_forward", x, small)
    check("mul_forward", small, x)
    grad = values(rng, shape, dtype)
    for needs in ((True, True), (True, False), (False, True)):
        check("mul_backward", grad, x, small, *needs)
        check("mul_backward", grad, small, x, *needs)
    check("add_forward", x, small)
    check("sum_to_shape", x, small_shape)


@SMALL
@given(seed=SEEDS, dtype=DTYPES, batch=st.integers(1, 4), sizes=st.tuples(st.integers(1, 9), st.integers(1, 5)),
       has_bias=st.booleans())
def test_linear(seed, dtype, batch, sizes, has_bias):
    rng = np.random.default_rng(seed)
    x = values(rng, (batch, sizes[0]), dtype)
    weight = values(rng, sizes[::-1], dtype)
    bias = values(rng, sizes[1], dtype) if has_bias else None
    check("linear_forward", x, weight, bias)
    check("linear_backward", values(rng, (batch, sizes[1]), dtype), x, weight, has_bias)


conv_settings = st.fixed_dictionaries({
    "groups": st.sampled_from([1, 2, 3]),
    "in_per_group": st.integers(1, 3),
    # below and above GEMM_MIN_OUT_CHANNELS: with stride > 1, both the direct and the im2col path
    "out_per_group": st.sampled_from([1, 2, 8, 9]),
    "kernel": st.tuples(st.integers(1, 4), st.integers(1, 3)),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 2)),
    "padding": st.tuples(st.integers(0, 3), st.integers(0, 2)),
    "dilation": st.tuples(st.integers(1, 3), st.integers(1, 2)),
})


@SMALL
@given(seed=SEEDS, dtype=DTYPES, batch=st.integers(1, 2), size=st.tuples(st.integers(1, 9), st.integers(1, 8)),
       conv=conv_settings, has_bias=st.booleans())
def test_conv2d(seed, dtype, batch, size, conv, has_bias):
    rng = np.random.default_rng(seed)
    G = conv["groups"]
    KH, KW = conv["kernel"]
    stride, padding, dilation = conv["stride"], conv["padding"], conv["dilation"]
    out_h = ref.conv_output_size(size[0], KH, stride[0], padding[0], dilation[0])
    out_w = ref.conv_output_size(size[1], KW, stride[1], padding[1], dilation[1])
    if out_h < 1 or out_w < 1:
        # An empty output is bad input: a clear error before any work.
        with pytest.raises(ValueError, match="empty"):
            nb.conv2d_forward(np.zeros((batch, G, *size), dtype), np.zeros((G, 1, KH, KW), dtype), None,
                              stride, padding, dilation, G)
        return
    x = values(rng, (batch, G * conv["in_per_group"], *size), dtype)
    weight = values(rng, (G * conv["out_per_group"], conv["in_per_group"], KH, KW), dtype)
    bias = values(rng, weight.shape[0], dtype) if has_bias else None
    check("conv2d_forward", x, weight, bias, stride, padding, dilation, G)
    grad = values(rng, (batch, weight.shape[0], out_h, out_w), dtype)
    check("conv2d_backward", grad, x, weight, stride, padding, dilation, G, has_bias)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_cbam_and_bam_shapes(dtype):
    """CBAM's 2→1 7×7 conv (direct) and BAM's 1×1 and dilated 3×3 convs with C/r channels (GEMM)."""
    rng = np.random.default_rng(3)
    pooled = values(rng, (2, 2, 11, 9), dtype)
    check("conv2d_forward", pooled, values(rng, (1, 2, 7, 7), dtype), None, (1, 1), (3, 3), (1, 1), 1)
    check("conv2d_backward", values(rng, (2, 1, 11, 9), dtype), pooled, values(rng, (1, 2, 7, 7), dtype),
          (1, 1), (3, 3), (1, 1), 1, False)
    features = values(rng, (2, 32, 11, 9), dtype)
    squeeze = values(rng, (8, 32, 1, 1), dtype)
    dilated = values(rng, (8, 8, 3, 3), dtype)
    hidden = ref.conv2d_forward(features, squeeze, None, (1, 1), (0, 0), (1, 1), 1)
    for args in [(features, squeeze, (1, 1), (0, 0), (1, 1), 1), (hidden, dilated, (1, 1), (4, 4), (4, 4), 1)]:
        x, w, *settings_ = args
        bias = values(rng, w.shape[0], dtype)
        check("conv2d_forward", x, w, bias, *settings_)
        check("conv2d_backward", values(rng, (2, 8, 11, 9), dtype), x, w, *settings_, True)


@pytest.mark.parametrize("x_shape, weight_shape, stride, padding, dilation, groups", [
    ((2, 2, 2, 2), (2, 1, 2, 3), (2, 2), (2, 2), (2, 2), 2),
    ((2, 2, 1, 10), (2, 2, 1, 7), (1, 2), (2, 2), (1, 2), 1),
    ((1, 1, 3, 9), (8, 1, 3, 7), (3, 2), (3, 3), (2, 2), 1),  # the same on the im2col path
])
def test_conv2d_taps_that_see_only_padding(x_shape, weight_shape, stride, padding, dilation, groups):
    """Strided taps whose every output column reads padding: their column range is empty."""
    rng = np.random.default_rng(11)
    x, weight = values(rng, x_shape, np.float64), values(rng, weight_shape, np.float64)
    out = ref.conv2d_forward(x, weight, None, stride, padding, dilation, groups)
    check("conv2d_forward", x, weight, None, stride, padding, dilation, groups)
    check("conv2d_backward", values(rng, out.shape, np.float64), x, weight, stride, padding, dilation, groups, False)


@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 9)),
       training=st.booleans())
def test_batch_norm(seed, dtype, shape, training):
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype, scale=3.0) + dtype(1)
    weight, bias = values(rng, shape[1], dtype), values(rng, shape[1], dtype)
    running_mean, running_var = values(rng, shape[1], dtype), np.asarray(rng.random(shape[1]) + 0.1, dtype)
    check("batch_norm_train_forward", x, weight, bias, 1e-5)
    check("batch_norm_eval_forward", x, running_mean, running_var, weight, bias, 1e-5)
    if training:
        _, xhat, inv_std, _, _ = ref.batch_norm_train_forward(x, weight, bias, 1e-5)
    else:
        _, xhat, inv_std = ref.batch_norm_eval_forward(x, running_mean, running_var, weight, bias, 1e-5)
    check("batch_norm_backward", values(rng, shape, dtype), xhat, inv_std, weight, training)


# --------------------------------------------------------------------------
# Fused kernels equal the composition of the backend's own unfused kernels
# --------------------------------------------------------------------------
@SMALL
@given(seed=SEEDS, dtype=DTYPES, shape=shapes, ties=st.booleans())
def test_fused_kernels_equal_unfused_composition(seed, dtype, shape, ties):
    rng = np.random.default_rng(seed)
    N, C, H, W = shape
    x = values(rng, shape, dtype, ties)
    grad_avg, grad_max = values(rng, (N, C), dtype), values(rng, (N, C), dtype)

    avg, peak, index = nb.global_avg_max_pool_forward(x)
    assert_same("avg+max forward", (avg, peak, index),
                (nb.global_avg_pool_forward(x), *nb.global_max_pool_forward(x)))
    assert_same("avg+max backward", nb.global_avg_max_pool_backward(grad_avg, grad_max, index, shape),
                nb.add_forward(nb.global_avg_pool_backward(grad_avg, shape),
                               nb.global_max_pool_backward(grad_max, index, shape)))

    gate = np.asarray(rng.random((N, C)), dtype)
    pooled, channel_index = nb.gated_channel_pool_forward(x, gate)
    y = nb.mul_forward(x, gate[:, :, None, None])
    unfused_peak, unfused_index = nb.channel_max_forward(y)
    assert_same("gated pool forward", (pooled, channel_index),
                (np.concatenate([nb.channel_mean_forward(y), unfused_peak], axis=1), unfused_index))
    grad_pooled = values(rng, pooled.shape, dtype)
    dy = nb.add_forward(nb.channel_mean_backward(grad_pooled[:, :1], shape),
                        nb.channel_max_backward(grad_pooled[:, 1:], channel_index, shape))
    assert_same("gated pool backward", nb.gated_channel_pool_backward(grad_pooled, x, gate, channel_index),
                (nb.mul_forward(dy, gate[:, :, None, None]), nb.sum_to_shape(nb.mul_forward(dy, x), (N, C, 1, 1))[:, :, 0, 0]))

    spatial_gate, grad = np.asarray(rng.random((N, 1, H, W)), dtype), values(rng, shape, dtype)
    assert_same("channel-spatial gate forward", nb.channel_spatial_gate_forward(x, gate, spatial_gate),
                nb.mul_forward(y, spatial_gate))
    dgated = nb.mul_forward(grad, spatial_gate)
    assert_same("channel-spatial gate backward", nb.channel_spatial_gate_backward(grad, x, gate, spatial_gate),
                (nb.mul_forward(dgated, gate[:, :, None, None]),
                 nb.sum_to_shape(nb.mul_forward(dgated, x), (N, C, 1, 1))[:, :, 0, 0],
                 nb.sum_to_shape(nb.mul_forward(grad, y), (N, 1, H, W))))

    channel_logit, spatial_logit = values(rng, (N, C), dtype), values(rng, (N, 1, H, W), dtype)
    sigma = nb.sigmoid_forward(nb.add_forward(channel_logit[:, :, None, None], spatial_logit))
    assert_same("residual gate forward", nb.residual_gate_forward(x, channel_logit, spatial_logit),
                nb.add_forward(x, nb.mul_forward(x, sigma)))
    grad = values(rng, shape, dtype)
    dlogit = nb.sigmoid_backward(nb.mul_forward(grad, x), sigma)
    assert_same("residual gate backward", nb.residual_gate_backward(grad, x, channel_logit, spatial_logit),
                (nb.add_forward(grad, nb.mul_forward(grad, sigma)),
                 nb.sum_to_shape(dlogit, (N, C, 1, 1))[:, :, 0, 0], nb.sum_to_shape(dlogit, (N, 1, H, W))))


# --------------------------------------------------------------------------
# Determinism, plain-Python mode, the exercise, bad input
# --------------------------------------------------------------------------
def test_bit_identical_for_one_and_two_threads():
    rng = np.random.default_rng(7)
    # 37×29 = 1073 pixels: more than one PIXEL_BLOCK, so the channel kernels split a sample.
    shape = (3, 12, 37, 29)
    assert shape[2] * shape[3] > PIXEL_BLOCK
    cases = [case for case in kernel_cases(rng, np.float32, shape)
             if case[0] in ("global_avg_max_pool_forward", "gated_channel_pool_forward",
                            "gated_channel_pool_backward", "channel_spatial_gate_backward",
                            "residual_gate_backward", "conv2d_backward",
                            "batch_norm_train_forward", "batch_norm_backward", "linear_backward", "sum_to_shape", "mul_backward")]
    cases.append(("conv2d_backward", (values(rng, (3, 1, 19, 23), np.float32), values(rng, (3, 2, 19, 23), np.float32),
                                      values(rng, (1, 2, 7, 7), np.float32), (1, 1), (3, 3), (1, 1), 1, True)))
    # 6 samples of 16×40×40: more than one chunk of the wide conv loop and one block of its weight gradient
    wide_x, wide_w = values(rng, (6, 16, 40, 40), np.float32), values(rng, (16, 16, 3, 3), np.float32)
    assert 6 * 42 * 42 > conv_kernels.WIDE_CHUNK_BYTES // (16 * 4) > conv_kernels.WEIGHT_GRAD_BLOCK
    cases.append(("conv2d_forward", (wide_x, wide_w, None, (1, 1), (1, 1), (1, 1), 1)))
    cases.append(("conv2d_backward", (values(rng, (6, 16, 40, 40), np.float32), wide_x, wide_w, (1, 1), (1, 1),
                                      (1, 1), 1, True)))
    # and 6 outputs per group (a four and two lone rows), with the weight gradient over many tasks
    grouped_w = values(rng, (12, 8, 3, 3), np.float32)
    cases.append(("conv2d_backward", (values(rng, (6, 12, 40, 40), np.float32), wide_x, grouped_w, (1, 1),
                                      (1, 1), (1, 1), 2, False)))
    # a 1×1 conv on x as it is: several tasks per sample, two weight-gradient blocks and a ragged end
    pointwise_x, pointwise_w = values(rng, (3, 16, 50, 51), np.float32), values(rng, (8, 16, 1, 1), np.float32)
    cases.append(("conv2d_backward", (values(rng, (3, 8, 50, 51), np.float32), pointwise_x, pointwise_w, (1, 1),
                                      (0, 0), (1, 1), 1, True)))
    cases.append(("conv2d_forward", (pointwise_x, pointwise_w, None, (1, 1), (0, 0), (1, 1), 1)))
    # Winograd's 3×3 (forward and input gradient): tiles in several tasks, chunked by the thread count
    winograd_x, winograd_w = values(rng, (6, 32, 17, 15), np.float32), values(rng, (32, 32, 3, 3), np.float32)
    cases.append(("conv2d_forward", (winograd_x, winograd_w, None, (1, 1), (1, 1), (1, 1), 1)))
    cases.append(("conv2d_backward", (values(rng, (6, 32, 17, 15), np.float32), winograd_x, winograd_w, (1, 1),
                                      (1, 1), (1, 1), 1, False)))
    # small planes channels-last (pixels.py): several tasks of pixels, weight-gradient blocks and taps
    pixel_x, pixel_w = values(rng, (20, 16, 4, 4), np.float32), values(rng, (32, 16, 3, 3), np.float32)
    assert conv_kernels._ConvGeometry("test", pixel_x, pixel_w, 1, 1, 1, 1).pixels
    cases.append(("conv2d_forward", (pixel_x, pixel_w, None, (1, 1), (1, 1), (1, 1), 1)))
    cases.append(("conv2d_backward", (values(rng, (20, 32, 4, 4), np.float32), pixel_x, pixel_w, (1, 1), (1, 1),
                                      (1, 1), 1, False)))
    previous = numba.get_num_threads()
    results = {}
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results[threads] = [getattr(nb, name)(*args) for name, args in cases]
    finally:
        numba.set_num_threads(previous)
    one, two = results.values()
    for (name, _), a, b in zip(cases, one, two):
        for part_a, part_b in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            if part_a is not None:
                assert np.array_equal(part_a, part_b), f"{name} differs between 1 and 2 threads"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_kernel_same_bits_whether_the_taps_come_in_one_pass_or_two(dtype):
    """The channels-last forward kernel takes a conv's taps in passes (pixels.py keeps each pass's weights in
    L1): two passes give the bits of one, and both the float64 sums."""
    from minitorch_attn.backends.numba.microkernels import _four_pixels
    from minitorch_attn.backends.numba.pixels import weight_panels
    rng = np.random.default_rng(12)
    C, CO, taps = 8, 4 * simd.lanes(dtype, simd.TILE_BYTES), 3
    bases, offsets = np.array([0, 8, 24, 40], np.int64), np.array([0, 16, 56], np.int64)
    x, rows, start = values(rng, (offsets[-1] + bases[-1] + C,), dtype), values(rng, (taps * C, CO), dtype), \
        values(rng, (CO,), dtype)
    panels = weight_panels(rows, dtype)
    one, two = np.empty((4, CO), dtype), np.empty((4, CO), dtype)
    for co in range(0, CO, CO // 2):
        _four_pixels(one, 0, co, x, bases, offsets, C, panels, 0, taps, start)
        _four_pixels(two, 0, co, x, bases, offsets, C, panels, 0, 1, start)
        _four_pixels(two, 0, co, x, bases, offsets, C, panels, 1, taps, start)
    np.testing.assert_array_equal(one, two)
    reads = np.array([[x[b + o + ci] for o in offsets for ci in range(C)] for b in bases], np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(one, start + reads @ rows.astype(np.float64), rtol=rtol, atol=rtol)


def test_the_numba_cache_is_dropped_when_any_source_changes(tmp_path):
    """A kernel's cache is keyed to its own file: a change to a function it calls from another file must
    still reach it, so any change to the package's sources drops the whole cache."""
    from minitorch_attn.backends.numba.cache import drop_stale_cache

    (tmp_path / "kernels.py").write_text("x = 1\n")
    (tmp_path / "lanes.py").write_text("y = 1\n")
    cached = tmp_path / "__pycache__" / "kernels.loop-10.py311.nbi"
    assert drop_stale_cache(tmp_path)  # no stamp yet
    cached.write_bytes(b"machine code")
    assert not drop_stale_cache(tmp_path) and cached.exists()  # same sources: kept
    (tmp_path / "lanes.py").write_text("y = 2\n")
    assert drop_stale_cache(tmp_path) and not cached.exists()  # another file changed: dropped
    assert not drop_stale_cache(tmp_path)


def _run_python(code, **env):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                            text=True, timeout=240, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_kernels_run_as_plain_python_with_jit_disabled():
    out = _run_python("""
        import sys
        import numba, numpy as np
        assert numba.config.DISABLE_JIT
        sys.path.insert(0, "tests")
        from test_backend_numba import kernel_cases, check
        for dtype in (np.float64, np.float32):
            for name, args in kernel_cases(np.random.default_rng(5), dtype, (2, 3, 3, 4), ties=True):
                check(name, *args)
            x, weight = np.ones((1, 32, 3, 4), dtype), np.ones((32, 32, 3, 3), dtype)  # Winograd's 3×3
            check("conv2d_forward", x, weight, None, (1, 1), (1, 1), (1, 1), 1)
            check("conv2d_backward", x, x, weight, (1, 1), (1, 1), (1, 1), 1, False)
        print("plain python ok")
    """, NUMBA_DISABLE_JIT="1")
    assert "plain python ok" in out


# BEGIN INSTRUCTOR ONLY
# (about the solution regions, which the student edition does not have)
def test_exercise_region_replaced_still_imports(tmp_path):
    """The student edition replaces the 9.1 region by a raise: the module must import, the kernel must raise."""
    source = (ROOT / "minitorch_attn/backends/numba/pooling.py").read_text()
    region = re.compile(r"^( *)# BEGIN SOLUTION\n.*?# END SOLUTION\n", re.S | re.M)
    assert len(region.findall(source)) == 1
    student = tmp_path / "numba_student.py"
    student.write_text(region.sub(lambda m: f'{m.group(1)}raise NotImplementedError("Exercise 9.1")\n', source))
    out = _run_python(f"""
        import importlib.util, numpy as np
        import minitorch_attn.backends.numba  # the package the student module imports from (its pooling has 9.1)
        from minitorch_attn.exercise import REGISTRY
        del REGISTRY["9.1"]  # the student module registers it again
        spec = importlib.util.spec_from_file_location("minitorch_attn.backends.numba.pooling_student", {str(student)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert REGISTRY["9.1"].function.__name__ == "channel_mean_forward"
        module.global_avg_pool_forward(np.ones((1, 2, 3, 3)))
        try:
            module.channel_mean_forward(np.ones((1, 2, 3, 3)))
        except NotImplementedError:
            print("raised")
    """)
    assert "raised" in out
# END INSTRUCTOR ONLY


def test_bad_input_is_rejected_before_any_work():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        nb.global_avg_pool_forward(np.zeros((2, 3, 4, 4), np.int64))
    with pytest.raises(ValueError, match="x must be 4-D"):
        nb.channel_max_forward(np.zeros((3, 4)))
    # BEGIN INSTRUCTOR ONLY
    # (an exercise's twin: the student edition runs the student's NumPy exercise 1.2 here, without this check)
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 16\)"):
        nb.global_max_pool_backward(np.zeros((2, 3)), np.full((2, 3), 16), x.shape)
    # END INSTRUCTOR ONLY
    with pytest.raises(ValueError, match="groups=2"):
        nb.conv2d_forward(x, np.zeros((4, 3, 1, 1)), None, 1, 0, 1, 2)
    with pytest.raises(ValueError, match="gate must have shape"):
        nb.gated_channel_pool_forward(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="spatial_gate must have shape"):
        nb.channel_spatial_gate_forward(x, np.zeros(x.shape[:2]), np.zeros((2, 2) + x.shape[2:]))
    with pytest.raises(ValueError, match="labels values"):
        nb.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="cannot be summed"):
        nb.sum_to_shape(x, (3, 2, 1))
    with pytest.raises(ValueError, match="grad must have the broadcast shape"):
        nb.mul_backward(np.zeros((2, 3)), x, np.zeros((3, 1, 1)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [
    # (C, CO, groups, kernel, stride, padding, dilation): one per branch of conv.py
    (4, 8, 1, (1, 1), (2, 2), (0, 0), (1, 1)),   # subsampling 1×1: stride-1 conv of every 2nd pixel
    (4, 16, 1, (3, 3), (2, 1), (1, 1), (1, 1)),  # strided rows only: a stride-1 conv over two row phases
    (3, 5, 1, (2, 3), (1, 1), (3, 2), (2, 1)),   # padding beyond the kernel's reach: the adjoint's zero border
    (6, 15, 3, (3, 3), (1, 1), (1, 1), (1, 1)),  # 5 outputs per group: four rows, then a lone row
    (2, 1, 1, (7, 7), (1, 1), (3, 3), (1, 1)),   # CBAM's 2→1 7×7
    (4, 64, 2, (3, 3), (1, 1), (2, 1), (2, 1)),  # 32 outputs per group, dilated, taps not a multiple of 4
    (5, 5, 5, (3, 3), (1, 1), (1, 1), (1, 1)),   # depthwise: one output per group
    (32, 32, 1, (3, 3), (1, 1), (1, 1), (1, 1)), # 3×3 "same", 32 channels: Winograd F(2×2, 3×3)
    (8, 16, 1, (3, 3), (1, 1), (2, 1), (2, 1)),  # small planes channels-last (pixels.py), dx as a pixel conv too
])
def test_conv2d_every_path(dtype, case):
    C, CO, G, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(5)
    x = values(rng, (3, C, 9, 7), dtype)
    weight = values(rng, (CO, C // G, *kernel), dtype)
    bias = values(rng, CO, dtype)
    check("conv2d_forward", x, weight, bias, stride, padding, dilation, G)
    out = ref.conv2d_forward(x, weight, bias, stride, padding, dilation, G)
    check("conv2d_backward", values(rng, out.shape, dtype), x, weight, stride, padding, dilation, G, True)


# BEGIN INSTRUCTOR ONLY
# (the Numba backend's own conv backward: the student edition runs the student's NumPy exercise 3.3 in its
# place, which neither keeps the forward's planes nor skips dx, and needs to do neither)
@pytest.mark.parametrize("case", [
    (4, 15, 1, (3, 3), (2, 1), (1, 1), (1, 1)),  # strided: x in row phases
    (6, 15, 3, (3, 3), (1, 1), (1, 1), (1, 1)),  # grouped "same"
    (4, 16, 1, (3, 3), (2, 1), (1, 1), (1, 1)),  # small planes: x packed channels-last
])
def test_conv2d_backward_reuses_the_forwards_stacked_planes(case):
    """The forward leaves x's stacked (or packed) planes in the workspace and the backward takes them (once):
    the same bits as a backward that stacks x itself. A workspace filled for another geometry is not used."""
    C, CO, G, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(6)
    x, weight = values(rng, (3, C, 9, 7), np.float32), values(rng, (CO, C // G, *kernel), np.float32)
    options = (stride, padding, dilation, G)
    workspace = {}
    out = nb.conv2d_forward(x, weight, None, *options, workspace=workspace)
    assert set(workspace) == {"input_planes"}
    grad = values(rng, out.shape, np.float32)
    stacked = nb.conv2d_backward(grad, x, weight, *options, False)
    other = {}
    nb.conv2d_forward(x[:, :, :8], weight, None, *options, workspace=other)
    calls = []
    geometry = conv_kernels._ConvGeometry
    real = {name: getattr(geometry, name) for name in ("input_planes", "pixel_conv")}
    try:
        for name, method in real.items():
            setattr(geometry, name, lambda self, method=method: calls.append(1) or method(self))
        kept = nb.conv2d_backward(grad, x, weight, *options, False, workspace=workspace)
        assert not calls and not workspace
        nb.conv2d_backward(grad, x, weight, *options, False, workspace=other)
        assert calls == [1]
    finally:
        for name, method in real.items():
            setattr(geometry, name, method)
    for a, b in zip(kept[:2], stacked[:2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", [
    (3, 16, (3, 3), (1, 1), (1, 1)),  # direct "same"
    (4, 8, (3, 3), (2, 2), (1, 1)),  # strided: phases
    (32, 32, (3, 3), (1, 1), (1, 1)),  # Winograd
    (6, 10, (1, 1), (2, 2), (0, 0)),  # pointwise, strided
    (8, 16, (3, 3), (1, 1), (1, 1)),  # small planes, channels-last
])
def test_conv2d_backward_skips_dx_when_the_op_says_x_needs_none(case):
    """The op writes ``"input_grad": False`` into the workspace for an x without gradient (a network's
    images): the backward then returns None for dx and the same bits for dW and db."""
    C, CO, kernel, stride, padding = case
    rng = np.random.default_rng(8)
    x, weight = values(rng, (3, C, 7, 8), np.float32), values(rng, (CO, C, *kernel), np.float32)
    options = (stride, padding, (1, 1), 1)
    workspace = {}
    out = nb.conv2d_forward(x, weight, None, *options, workspace=workspace)
    grad = values(rng, out.shape, np.float32)
    full = nb.conv2d_backward(grad, x, weight, *options, True)
    workspace["input_grad"] = False
    dx, dweight, dbias = nb.conv2d_backward(grad, x, weight, *options, True, workspace=workspace)
    assert dx is None
    np.testing.assert_array_equal(dweight, full[1])
    np.testing.assert_array_equal(dbias, full[2])
# END INSTRUCTOR ONLY


def test_conv2d_op_leaves_images_without_gradient_and_weights_right():
    """Through autograd: a conv on images that need no gradient still gives PyTorch's weight gradient."""
    torch = pytest.importorskip("torch")
    from minitorch_attn import backend, ops
    from minitorch_attn.tensor import Tensor
    rng = np.random.default_rng(9)
    x, weight = values(rng, (2, 3, 8, 8), np.float64), values(rng, (4, 3, 3, 3), np.float64)
    with backend("numba"):
        images, w = Tensor(x), Tensor(weight, requires_grad=True)
        ops.conv2d(images, w, padding=1).sum().backward()
    expected = torch.tensor(weight, requires_grad=True)
    torch.nn.functional.conv2d(torch.tensor(x), expected, padding=1).sum().backward()
    assert images.grad is None
    np.testing.assert_allclose(w.grad, expected.grad.numpy(), rtol=1e-10)


def test_conv2d_small_planes_go_channels_last():
    """The cases above that should take the pixel path do, in both dtypes, and so do the backbone's last
    stages; its 32×32 planes and a channel count the micro-kernel's tiles do not divide stay on the wide rows."""
    def pixels(x_shape, w_shape, stride=1, padding=1, dilation=1, dtype=np.float32):
        return conv_kernels._ConvGeometry("test", np.zeros(x_shape, dtype), np.zeros(w_shape, dtype), stride,
                                          padding, dilation, 1).pixels
    for dtype in (np.float64, np.float32):
        assert pixels((3, 8, 9, 7), (16, 8, 3, 3), 1, (2, 1), (2, 1), dtype)
        assert pixels((3, 4, 9, 7), (16, 4, 3, 3), (2, 1), dtype=dtype)
    assert pixels((64, 128, 4, 4), (128, 128, 3, 3)) and pixels((64, 64, 8, 8), (128, 64, 3, 3), 2)
    assert not pixels((64, 16, 32, 32), (16, 16, 3, 3)) and not pixels((3, 4, 9, 7), (15, 4, 3, 3), (2, 1))


def test_conv2d_every_path_reaches_winograd():
    """The 32-channel case above takes the Winograd path in both dtypes (else it would test the direct one)."""
    for dtype in (np.float64, np.float32):
        x, weight = np.zeros((3, 32, 9, 7), dtype), np.zeros((32, 32, 3, 3), dtype)
        assert conv_kernels._ConvGeometry("test", x, weight, 1, 1, 1, 1).winograd
        assert not conv_kernels._ConvGeometry("test", x[:, :16], weight[:, :16], 1, 1, 1, 1).winograd


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, CO", [((2, 5, 7, 6), 3), ((1, 4, 1, 1), 5), ((3, 33, 9, 7), 35), ((2, 6, 2, 9), 4)])
def test_winograd_conv3x3_matches_the_direct_sum(dtype, shape, CO):
    """F(2×2, 3×3) on any channel counts (four rows and lone ones), odd sizes (ragged last tiles), a single
    pixel, and a bias, against the NumPy reference's direct sum; and as the input gradient (adjoint)."""
    rng = np.random.default_rng(11)
    x, weight, bias = values(rng, shape, dtype), values(rng, (CO, shape[1], 3, 3), dtype), values(rng, CO, dtype)
    arguments = (1, 1), (1, 1), (1, 1), 1
    assert_same("winograd_conv3x3", winograd_conv3x3(x, weight, bias), ref.conv2d_forward(x, weight, bias, *arguments))
    grad = values(rng, (shape[0], CO, *shape[2:]), dtype)
    dx, _, _ = ref.conv2d_backward(grad, x, weight, *arguments, False)
    assert_same("winograd_conv3x3 adjoint", winograd_conv3x3(grad, weight, np.zeros(shape[1], dtype), adjoint=True), dx)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("CO, groups, stride", [(8, 2, 1), (5, 1, 1), (6, 3, 2)])
def test_conv2d_pointwise_positions_past_the_vectors(dtype, CO, groups, stride):
    """1×1 convs on x as it is: 50×51 pixels are two weight-gradient blocks and a ragged end that is no
    whole number of vectors (read through zero-padded copies, so nothing is read past x)."""
    rng = np.random.default_rng(8)
    x = values(rng, (2, 12, 50, 51), dtype)
    assert 50 * 51 > conv_kernels.WEIGHT_GRAD_BLOCK and 50 * 51 % conv_kernels.POSITION_QUANTUM
    weight, bias = values(rng, (CO, 12 // groups, 1, 1), dtype), values(rng, CO, dtype)
    arguments = (stride, stride), (0, 0), (1, 1), groups
    check("conv2d_forward", x, weight, bias, *arguments)
    out = ref.conv2d_forward(x, weight, bias, *arguments)
    check("conv2d_backward", values(rng, out.shape, dtype), x, weight, *arguments, True)
