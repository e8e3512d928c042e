"""What the CUDA tests share: whether CUDA runs in this process, arguments for every kernel in
KERNEL_NAMES (built with the NumPy reference where one kernel needs another's output: a saved index,
xhat, ...), and the comparison against the reference."""
import numba
import numpy as np
from numba import cuda

from minitorch_attn.backends import KERNEL_NAMES
from minitorch_attn.backends import numpy_backend as reference
from minitorch_attn.testing import assert_close

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
#: numba's CUDA works in this process: a GPU, or the simulator
CUDA_RUNS = cuda.is_available()
REAL_GPU = CUDA_RUNS and not SIMULATOR


def sample(rng, shape, dtype, ties):
    """Normal values, or small integers when ``ties`` (many equal maxima)."""
    values = rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)
    return values.astype(dtype)


def kernel_args(name, dtype, shape=(2, 3, 4, 5), ties=False, seed=0):
    """Arguments of kernel ``name`` for an (N, C, H, W) feature map of ``shape``."""
    rng = np.random.default_rng(seed)
    N, C, H, W = shape

    def data(*s):
        return sample(rng, s, dtype, ties)

    x = data(N, C, H, W)
    pooled_grad, pixel_grad = data(N, C), data(N, 1, H, W)
    gate, spatial = data(N, C), data(N, 1, H, W)
    x3 = x.reshape(N, C, H * W)
    bn_weight, bn_bias = data(C), data(C)
    features, outputs = C * W, C + 1
    dense_x, dense_w, dense_b = data(N, features), data(outputs, features), data(outputs)
    labels = rng.integers(0, outputs, N)
    positive_var = (rng.random(C) + 0.5).astype(dtype)
    _, xhat, inv_std, _, _ = reference.batch_norm_train_forward(x3, bn_weight, bn_bias, 1e-5)
    pooled, channel_index = reference.gated_channel_pool_forward(x, gate)
    cases = {
        "global_avg_pool_forward": (x,),
        "global_avg_pool_backward": (pooled_grad, x.shape),
        "global_max_pool_forward": (x,),
        "global_max_pool_backward": (pooled_grad, reference.global_max_pool_forward(x)[1], x.shape),
        "global_lp_pool_forward": (x,),
        "global_lp_pool_backward": (pooled_grad, x, reference.global_lp_pool_forward(x)),
        "global_lse_pool_forward": (x,),
        "global_lse_pool_backward": (pooled_grad, x, reference.global_lse_pool_forward(x)),
        "channel_mean_forward": (x,),
        "channel_mean_backward": (pixel_grad, x.shape),
        "channel_max_forward": (x,),
        "channel_max_backward": (pixel_grad, reference.channel_max_forward(x)[1], x.shape),
        "linear_forward": (dense_x, dense_w, dense_b),
        "linear_backward": (data(N, outputs), dense_x, dense_w, True),
        "relu_forward": (x,),
        "relu_backward": (data(*x.shape), reference.relu_forward(x)),
        "sigmoid_forward": (x * 20,),  # large magnitudes: both branches of the stable sigmoid
        "sigmoid_backward": (data(*x.shape), reference.sigmoid_forward(x)),
        "mul_forward": (x, data(C, 1, 1)),
        "mul_backward": (data(*x.shape), x, data(C, 1, 1)),
        "add_forward": (data(N, C, 1, 1), x),
        "sum_to_shape": (x, (C, 1, W)),
        "conv2d_forward": (x, data(4, C, 3, 3), data(4), (1, 1), (1, 1), (1, 1), 1),
        "conv2d_backward": (data(N, 4, H, W), x, data(4, C, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),
        "batch_norm_train_forward": (x3, bn_weight, bn_bias, 1e-5),
        "batch_norm_eval_forward": (x3, data(C), positive_var, bn_weight, bn_bias, 1e-5),
        "batch_norm_backward": (data(*x3.shape), xhat, inv_std, bn_weight, True),
        "softmax_cross_entropy_forward": (data(N, outputs), labels),
        "softmax_cross_entropy_backward": (np.asarray(0.5, dtype),
                                           reference.softmax_cross_entropy_forward(data(N, outputs), labels)[1],
                                           labels),
        "global_avg_max_pool_forward": (x,),
        "global_avg_max_pool_backward": (pooled_grad, data(N, C), reference.global_max_pool_forward(x)[1], x.shape),
        "gated_channel_pool_forward": (x, gate),
        "gated_channel_pool_backward": (data(*pooled.shape), x, gate, channel_index),
        "channel_spatial_gate_forward": (x, gate, spatial),
        "channel_spatial_gate_backward": (data(*x.shape), x, gate, spatial),
        "residual_gate_forward": (x, gate, spatial),
        "residual_gate_backward": (data(*x.shape), x, gate, spatial),
    }
    assert set(cases) == set(KERNEL_NAMES), "a kernel has no test case"
    return cases[name]


def assert_matches_reference(kernels, name, args):
    """``kernels.name(*args)`` equals the NumPy reference: same structure, shapes, dtypes;
    indices exactly, values within the dtype's tolerance."""
    actual, expected = getattr(kernels, name)(*args), getattr(reference, name)(*args)
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    assert isinstance(actual, tuple) and len(actual) == len(expected), f"{name}: returns {type(actual)}"
    for position, (a, e) in enumerate(zip(actual, expected)):
        label = f"{name}[{position}]"
        if e is None:
            assert a is None, f"{label}: expected None"
            continue
        assert isinstance(a, np.ndarray), f"{label}: a {type(a)}, not a host ndarray"
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{label}: {a.shape} {a.dtype}, expected {e.shape} {e.dtype}"
        if np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(a, e, err_msg=label)
        else:
            assert_close(a, e, name=label)
