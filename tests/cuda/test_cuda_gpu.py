"""Opt-in checks on a real GPU (`make test-gpu`): every kernel at moderate shapes with the
backend's default launch configuration, where blocks are full and grid-stride loops wrap."""
import numpy as np
import pytest

from minitorch_attn.backends import KERNEL_NAMES

from cuda_cases import assert_matches_reference, kernel_args

pytestmark = pytest.mark.gpu

#: (N, C, H, W): a CBAM stage of a small ResNet; C > the 128 threads of a block for the channel pools.
SHAPE = (4, 160, 14, 14)


@pytest.fixture(scope="module")
def gpu_kernels():
    from minitorch_attn.backends import cuda as cuda_backend

    return cuda_backend


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_matches_numpy_at_moderate_shapes(gpu_kernels, name, dtype):
    assert_matches_reference(gpu_kernels, name, kernel_args(name, dtype, shape=SHAPE))


@pytest.mark.parametrize("name", ["global_max_pool_forward", "channel_max_forward",
                                  "global_avg_max_pool_forward", "gated_channel_pool_forward"])
def test_ties_at_moderate_shapes(gpu_kernels, name):
    assert_matches_reference(gpu_kernels, name, kernel_args(name, np.float32, shape=SHAPE, ties=True))


def test_cbam_spatial_conv_at_moderate_shapes(gpu_kernels):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 2, 28, 28)).astype(np.float32)
    weight = rng.standard_normal((1, 2, 7, 7)).astype(np.float32)
    options = ((1, 1), (3, 3), (1, 1), 1)
    assert_matches_reference(gpu_kernels, "conv2d_forward", (x, weight, None, *options))
    grad = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    assert_matches_reference(gpu_kernels, "conv2d_backward", (grad, x, weight, *options, False))


@pytest.mark.parametrize("name", ["global_avg_max_pool_forward", "conv2d_backward", "batch_norm_backward",
                                  "residual_gate_backward"])
def test_bit_identical_on_repeat(gpu_kernels, name):
    args = kernel_args(name, np.float32, shape=SHAPE)
    first, second = getattr(gpu_kernels, name)(*args), getattr(gpu_kernels, name)(*args)
    for a, b in zip(first, second):
        assert a is None and b is None or a.tobytes() == b.tobytes()
