"""Every CUDA kernel against the NumPy reference on tiny shapes (run under the simulator:
`NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/cuda`, or on a GPU)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitorch_attn.backends import ADD_TO_KERNELS, KERNEL_NAMES
from minitorch_attn.backends import numpy_backend as reference
from minitorch_attn.backends.cuda import device

from cuda_cases import assert_matches_reference, kernel_args

pytestmark = pytest.mark.cudasim

DTYPES = [np.float32, np.float64]
#: Kernels whose result depends on which of several equal maxima wins.
TIE_SENSITIVE = [
    "global_max_pool_forward", "global_max_pool_backward", "channel_max_forward", "channel_max_backward",
    "global_avg_max_pool_forward", "global_avg_max_pool_backward",
    "gated_channel_pool_forward", "gated_channel_pool_backward",
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernel_matches_numpy(cuda_kernels, name, dtype):
    assert_matches_reference(cuda_kernels, name, kernel_args(name, dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", TIE_SENSITIVE)
def test_ties_pick_the_first_maximum(cuda_kernels, name, dtype):
    # integer values in [-2, 2]: almost every max is tied; indices must equal np.argmax's
    assert_matches_reference(cuda_kernels, name, kernel_args(name, dtype, shape=(2, 5, 3, 4), ties=True))


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_batch_of_one_and_odd_sizes(cuda_kernels, name):
    assert_matches_reference(cuda_kernels, name, kernel_args(name, np.float64, shape=(1, 7, 3, 5), seed=1))


CONV_SETTINGS = {
    # (C, C_out, kernel, stride, padding, dilation, groups, bias)
    "bam-1x1": (4, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
    "bam-dilated-3x3": (4, 4, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),
    "cbam-spatial-7x7": (2, 1, (7, 7), (1, 1), (3, 3), (1, 1), 1, False),
    "grouped-strided-rect": (4, 6, (3, 2), (2, 1), (1, 2), (1, 2), 2, True),
    "depthwise-stride2": (4, 4, (3, 3), (2, 2), (1, 1), (1, 1), 4, False),
    "stride-beyond-kernel": (2, 2, (2, 2), (3, 3), (0, 1), (1, 1), 1, True),  # some pixels feed no output
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("setting", CONV_SETTINGS.values(), ids=CONV_SETTINGS.keys())
def test_conv2d_settings(cuda_kernels, setting, dtype):
    C, C_out, (KH, KW), stride, padding, dilation, groups, has_bias = setting
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, C, 7, 6)).astype(dtype)
    weight = rng.standard_normal((C_out, C // groups, KH, KW)).astype(dtype)
    bias = rng.standard_normal(C_out).astype(dtype) if has_bias else None
    options = (stride, padding, dilation, groups)
    assert_matches_reference(cuda_kernels, "conv2d_forward", (x, weight, bias, *options))
    grad = rng.standard_normal(reference.conv2d_forward(x, weight, bias, *options).shape).astype(dtype)
    assert_matches_reference(cuda_kernels, "conv2d_backward", (grad, x, weight, *options, has_bias))


@pytest.mark.parametrize("name", ADD_TO_KERNELS)
def test_adding_into_a_collected_gradient_equals_a_separate_sum(cuda_kernels, name):
    args = kernel_args(name, np.float32)
    plain = getattr(cuda_kernels, name)(*args)
    plain = plain[0] if isinstance(plain, tuple) else plain
    collected = np.random.default_rng(3).standard_normal(plain.shape).astype(np.float32)
    before = collected.copy()
    result = getattr(cuda_kernels, name)(*args, add_to=collected)
    assert (result[0] if isinstance(result, tuple) else result) is collected
    np.testing.assert_array_equal(collected, before + plain)
    with pytest.raises(ValueError, match=f"{name}: add_to must be the float32 gradient of shape"):
        getattr(cuda_kernels, name)(*args, add_to=np.zeros(plain.shape[:-1], np.float32))


@pytest.mark.parametrize("threads", [1, 2, 32])
@pytest.mark.parametrize("name", ["global_avg_max_pool_forward", "gated_channel_pool_forward",
                                  "channel_spatial_gate_backward", "batch_norm_backward", "conv2d_backward",
                                  "residual_gate_backward"])
def test_any_block_size_gives_the_same_answer(cuda_kernels, name, threads):
    device.threads_per_block = threads  # (the fixture restores it)
    assert_matches_reference(cuda_kernels, name, kernel_args(name, np.float64))


@pytest.mark.parametrize("name", ["relu_forward", "conv2d_forward", "residual_gate_forward", "channel_spatial_gate_forward",
                                  "channel_max_backward", "softmax_cross_entropy_backward"])
def test_grid_stride_loops_cover_more_elements_than_threads(cuda_kernels, monkeypatch, name):
    # 2 blocks of 4 threads for about a hundred elements: each thread takes many turns
    device.threads_per_block = 4
    monkeypatch.setattr(device, "MAX_BLOCKS", 2)
    assert_matches_reference(cuda_kernels, name, kernel_args(name, np.float64))


@pytest.mark.parametrize("name", ["global_avg_max_pool_forward", "conv2d_backward", "batch_norm_backward",
                                  "gated_channel_pool_backward", "softmax_cross_entropy_forward"])
def test_same_inputs_give_bit_identical_outputs(cuda_kernels, name):
    args = kernel_args(name, np.float32)
    first, second = getattr(cuda_kernels, name)(*args), getattr(cuda_kernels, name)(*args)
    for a, b in zip(first, second):
        assert a is None and b is None or a.tobytes() == b.tobytes()


@pytest.mark.parametrize("target", [(3, 1, 1), (1, 4, 1), (5,), (), (2, 3, 4, 5)])
def test_sum_to_shape_undoes_any_broadcast(cuda_kernels, target):
    grad = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    assert_matches_reference(cuda_kernels, "sum_to_shape", (grad, target))


@pytest.mark.parametrize("shapes", [((2, 3, 4), (4,)), ((1, 3, 1), (2, 1, 5)), ((), (2, 2)), ((3,), ())])
@pytest.mark.parametrize("name", ["mul_forward", "add_forward"])
def test_broadcasting_arithmetic(cuda_kernels, name, shapes):
    rng = np.random.default_rng(4)
    a, b = (np.asarray(rng.standard_normal(s)) for s in shapes)
    assert_matches_reference(cuda_kernels, name, (a, b))


@pytest.mark.parametrize("name", ["global_lse_pool_forward", "softmax_cross_entropy_forward", "sigmoid_forward"])
def test_large_magnitudes_do_not_overflow(cuda_kernels, name):
    args = kernel_args(name, np.float32)
    scaled = (args[0] * 1000,) + args[1:]
    assert_matches_reference(cuda_kernels, name, scaled)


def test_non_contiguous_inputs(cuda_kernels):
    x = np.random.default_rng(5).standard_normal((5, 4, 3, 2)).transpose(3, 2, 1, 0)  # (2, 3, 4, 5) view
    for name in ["global_avg_max_pool_forward", "channel_max_forward", "relu_forward"]:
        assert_matches_reference(cuda_kernels, name, (x,))


def test_threads_per_block_must_be_a_power_of_two(cuda_kernels):
    device.threads_per_block = 24  # (the fixture restores it)
    with pytest.raises(ValueError, match="threads_per_block must be a power of two"):
        cuda_kernels.relu_forward(np.ones(3))


def test_ops_run_on_the_cuda_backend():
    """ops pick the CUDA kernels up through set_backend, forward and backward, unchanged."""
    from minitorch_attn import ops
    from minitorch_attn.backends import backend
    from minitorch_attn.tensor import Tensor

    rng = np.random.default_rng(6)
    x, weight = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 3, 3))
    results = {}
    for name in ["numpy", "cuda"]:
        with backend(name):
            tx, tw = Tensor(x.copy(), requires_grad=True), Tensor(weight.copy(), requires_grad=True)
            avg, peak = ops.global_avg_max_pool(ops.conv2d(tx, tw, padding=1))
            out = ops.add(avg, peak)
            out.backward(np.ones(out.shape))
            results[name] = (out.data, tx.grad, tw.grad)
    for ours, expected in zip(results["cuda"], results["numpy"]):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_conv2d_random_geometry(data):
    from minitorch_attn.backends import cuda as cuda_backend

    groups = data.draw(st.sampled_from([1, 2]), "groups")
    C, C_out = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    KH, KW = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    padding = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    H = data.draw(st.integers(max(1, dilation[0] * (KH - 1) + 1 - 2 * padding[0]), 6))
    W = data.draw(st.integers(max(1, dilation[1] * (KW - 1) + 1 - 2 * padding[1]), 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((data.draw(st.integers(1, 2)), C, H, W))
    weight = rng.standard_normal((C_out, C // groups, KH, KW))
    bias = rng.standard_normal(C_out)
    options = (stride, padding, dilation, groups)
    saved, device.threads_per_block = device.threads_per_block, 8
    try:
        assert_matches_reference(cuda_backend, "conv2d_forward", (x, weight, bias, *options))
        grad = rng.standard_normal(reference.conv2d_forward(x, weight, bias, *options).shape)
        assert_matches_reference(cuda_backend, "conv2d_backward", (grad, x, weight, *options, True))
    finally:
        device.threads_per_block = saved


@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 5), st.integers(1, 5)),
       ties=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_kernels_random_shapes(shape, ties, seed):
    from minitorch_attn.backends import cuda as cuda_backend

    saved, device.threads_per_block = device.threads_per_block, 8
    try:
        for name in ["global_avg_max_pool_forward", "gated_channel_pool_forward", "gated_channel_pool_backward",
                     "channel_spatial_gate_backward", "residual_gate_backward"]:
            assert_matches_reference(cuda_backend, name, kernel_args(name, np.float64, shape, ties, seed))
    finally:
        device.threads_per_block = saved
