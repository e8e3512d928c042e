"""Hand-picked awkward cases the random shapes rarely hit: exact tie positions, huge magnitudes,
degenerate statistics, several batch-norm steps, the papers' convolution settings."""
import warnings

import numpy as np
import pytest
import torch

from minitorch_attn import Tensor, backend, ops
from minitorch_attn.parity import CASES_BY_NAME, Sample, compare
from minitorch_attn.testing import TOLERANCE, assert_close


def assert_matches_torch(case_name, sample, backend_name, dtype=None):
    dtype = dtype or next(iter(sample.inputs.values())).dtype
    errors = compare(CASES_BY_NAME[case_name], sample, backend_name, grad_seed=3)
    assert max(errors.values()) <= TOLERANCE[np.dtype(dtype)], f"{case_name}: {errors}"


def grad_of(op, x, backend_name, seed=0):
    """d(sum(op(x) * g))/dx for a random g, on ``backend_name``."""
    leaf = Tensor(x, requires_grad=True)
    with backend(backend_name):
        out = op(leaf)
        out.backward(np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype) + 2)
    return leaf.grad


class TestFirstMaximumGetsTheGradient:
    """PyTorch's max_pool2d and torch.max(dim) give the whole gradient to the first maximum (C order)."""

    def test_global_max_pool(self, dtype, backend_name):
        x = np.array([[[[1, 3, 0], [3, 2, 3]], [[5, 5, 5], [5, 5, 5]]]], dtype)
        grad = grad_of(ops.global_max_pool, x, backend_name)
        assert np.argwhere(grad[0, 0]).tolist() == [[0, 1]]
        assert np.argwhere(grad[0, 1]).tolist() == [[0, 0]]
        assert_matches_torch("global_max_pool", Sample({"x": x}), backend_name)

    def test_channel_max(self, dtype, backend_name):
        x = np.array([[[[1.0, -2.0]], [[4.0, -2.0]], [[4.0, -7.0]]]], dtype)  # (1, 3, 1, 2)
        grad = grad_of(ops.channel_max, x, backend_name)
        assert np.argwhere(grad[0, :, 0, 0]).ravel().tolist() == [1]
        assert np.argwhere(grad[0, :, 0, 1]).ravel().tolist() == [0]
        assert_matches_torch("channel_max", Sample({"x": x}), backend_name)

    def test_fused_pools_share_the_rule(self, dtype, backend_name):
        x = np.full((2, 3, 3, 4), 2.0, dtype)  # every plane and every channel column tied
        gate = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 0.0]], dtype)  # a zero gate ties F' at 0 as well
        assert_matches_torch("global_avg_max_pool", Sample({"x": x}), backend_name)
        assert_matches_torch("gated_channel_pool", Sample({"x": x, "gate": gate}), backend_name)


class TestLargeMagnitudes:
    @pytest.fixture(autouse=True)
    def numpy_warnings_are_errors(self):
        with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
            warnings.simplefilter("error", RuntimeWarning)
            yield

    def test_sigmoid_saturates_without_overflow(self, dtype, backend_name):
        x = np.array([[-1000.0, -100.0, -89.0, -20.0, 0.0, 20.0, 89.0, 100.0, 1000.0]], dtype)
        with backend(backend_name):
            out = ops.sigmoid(Tensor(x)).numpy()
        assert np.isfinite(out).all() and out[0, 0] == 0 and out[0, -1] == 1
        assert_matches_torch("sigmoid", Sample({"x": x}), backend_name)

    @pytest.mark.parametrize("offset", [1e4, -1e4])
    def test_lse_pool_far_from_zero(self, dtype, backend_name, offset, rng):
        x = (offset + rng.standard_normal((2, 3, 4, 5))).astype(dtype)
        assert_matches_torch("global_lse_pool", Sample({"x": x}), backend_name)

    def test_cross_entropy_with_huge_logits(self, dtype, backend_name, rng):
        logits = (1e4 * rng.standard_normal((4, 5))).astype(dtype)
        sample = Sample({"logits": logits}, {"labels": np.array([0, 4, 2, 2])})
        assert_matches_torch("cross_entropy", sample, backend_name)

    def test_residual_gate_with_saturated_logits(self, dtype, backend_name, rng):
        sample = Sample({"x": rng.standard_normal((2, 3, 2, 2)).astype(dtype),
                         "channel_logit": (500 * rng.standard_normal((2, 3))).astype(dtype),
                         "spatial_logit": (500 * rng.standard_normal((2, 1, 2, 2))).astype(dtype)})
        assert_matches_torch("residual_gate", sample, backend_name)


class TestDegenerateStatistics:
    def test_lp_pool_of_a_zero_plane_has_gradient_zero(self, dtype, backend_name, rng):
        # PyTorch's lp_pool2d gives NaN here; 0 is the subgradient of the norm at 0 that keeps training alive.
        x = rng.standard_normal((1, 2, 3, 3)).astype(dtype)
        x[0, 1] = 0
        grad = grad_of(ops.global_lp_pool, x, backend_name)
        assert np.isfinite(grad).all() and not grad[0, 1].any() and grad[0, 0].all()

    def test_batch_norm_of_a_constant_channel(self, dtype, backend_name, rng):
        x = rng.standard_normal((3, 2, 2, 2)).astype(dtype)
        x[:, 1] = 7.0  # zero batch variance: only eps keeps 1/sqrt(var + eps) finite
        sample = Sample({"x": x, "weight": rng.standard_normal(2).astype(dtype),
                         "bias": rng.standard_normal(2).astype(dtype)},
                        {"running_mean": np.zeros(2, dtype), "running_var": np.ones(2, dtype),
                         "training": True, "momentum": 0.1, "eps": 1e-5})
        assert_matches_torch("batch_norm (train)", sample, backend_name)

    def test_batch_norm_of_two_values_per_channel(self, dtype, backend_name, rng):
        sample = Sample({"x": rng.standard_normal((2, 3)).astype(dtype), "weight": rng.standard_normal(3).astype(dtype),
                         "bias": rng.standard_normal(3).astype(dtype)},
                        {"running_mean": np.zeros(3, dtype), "running_var": np.ones(3, dtype),
                         "training": True, "momentum": 0.01, "eps": 1e-3})
        assert_matches_torch("batch_norm (train)", sample, backend_name)


@pytest.mark.parametrize("momentum, eps", [(0.1, 1e-5), (0.01, 1e-3)])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5)], ids=["1d", "2d"])
def test_batch_norm_running_statistics_over_several_steps(shape, momentum, eps, dtype, backend_name, rng):
    """Three training steps then eval, against torch.nn.BatchNorm1d/2d with the same parameters."""
    channels = shape[1]
    module = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(channels, eps=eps, momentum=momentum)
    module = module.to(torch.float64 if dtype == np.float64 else torch.float32)
    weight, bias = rng.standard_normal((2, channels)).astype(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))
    running_mean, running_var = np.zeros(channels, dtype), np.ones(channels, dtype)

    def ours(x, training):
        with backend(backend_name):
            return ops.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias),
                                  training, momentum, eps).numpy()

    for step in range(3):
        x = (3 * rng.standard_normal(shape) + step).astype(dtype)
        assert_close(ours(x, True), module.train()(torch.from_numpy(x)).detach().numpy(), name=f"train step {step}")
        assert_close(running_mean, module.running_mean.numpy(), name=f"running_mean after step {step}")
        assert_close(running_var, module.running_var.numpy(), name=f"running_var after step {step}")
    x = rng.standard_normal(shape).astype(dtype)
    assert_close(ours(x, False), module.eval()(torch.from_numpy(x)).detach().numpy(), name="eval output")
    assert_close(running_mean, module.running_mean.numpy(), name="running_mean unchanged by eval")


@pytest.mark.parametrize("name, weight_shape, options", [
    ("CBAM spatial 7x7", (1, 2, 7, 7), dict(stride=(1, 1), padding="same", dilation=(1, 1), groups=1)),
    ("BAM dilated 3x3, d=4", (4, 4, 3, 3), dict(stride=(1, 1), padding=(4, 4), dilation=(4, 4), groups=1)),
    ("depthwise 3x3 stride 2", (8, 1, 3, 3), dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=4)),
    ("1x1 reduction", (2, 4, 1, 1), dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)),
])
def test_conv2d_settings_of_the_papers(name, weight_shape, options, dtype, backend_name, rng):
    channels = weight_shape[1] * options["groups"]
    sample = Sample({"x": rng.standard_normal((2, channels, 9, 11)).astype(dtype),
                     "weight": rng.standard_normal(weight_shape).astype(dtype),
                     "bias": rng.standard_normal(weight_shape[0]).astype(dtype)}, options)
    assert_matches_torch("conv2d", sample, backend_name)


@pytest.mark.parametrize("x_shape, weight_shape, options", [
    ((2, 2, 2, 2), (2, 1, 2, 3), dict(stride=(2, 2), padding=(2, 2), dilation=(2, 2), groups=2)),
    ((2, 2, 1, 10), (2, 2, 1, 7), dict(stride=(1, 2), padding=(2, 2), dilation=(1, 2), groups=1)),
], ids=["stride2-dilation2-groups2", "stride(1,2)-kernel1x7"])
def test_conv2d_taps_that_see_only_padding(x_shape, weight_shape, options, dtype, backend_name, rng):
    """Strided kernels whose edge taps read padding only, for every output column (found by the parity table).

    The column range of such a tap is empty; a slice ``[lo : lo + (len - 1)·stride + 1 : stride]`` built from it
    has a negative stop when len = 0, which wraps around instead of selecting nothing.
    """
    sample = Sample({"x": rng.standard_normal(x_shape).astype(dtype),
                     "weight": rng.standard_normal(weight_shape).astype(dtype)}, options)
    assert_matches_torch("conv2d", sample, backend_name)
