"""Backward kernels with ``add_to`` (backends.ADD_TO_KERNELS): adding into a collected gradient gives
exactly what a separate sum gives, in that array, on every backend; a wrong ``add_to`` is refused."""
import numpy as np
import pytest

from minitorch_attn import backends
from minitorch_attn.backends import ADD_TO_KERNELS
from minitorch_attn.backends import numpy_backend as reference


def add_to_case(name, dtype, shape=(2, 5, 3, 7), seed=0, ties=False):
    """``(args, gradient shape)`` of kernel ``name``; with ``ties`` the inputs are small integers."""
    rng = np.random.default_rng(seed)
    N, C, H, W = shape

    def data(*s):
        return (rng.integers(-2, 3, s) if ties else rng.standard_normal(s)).astype(dtype)

    x = data(*shape)
    cases = {
        "global_avg_max_pool_backward": lambda: (data(N, C), data(N, C), reference.global_max_pool_forward(x)[1], shape),
        "gated_channel_pool_backward": lambda: (data(N, 2, H, W), x, data(N, C),
                                                reference.gated_channel_pool_forward(x, data(N, C))[1]),
    }
    return cases[name](), shape


def check_adds_in_place(kernels, name, dtype, **case):
    args, shape = add_to_case(name, dtype, **case)
    collected = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    before = collected.copy()
    plain = getattr(kernels, name)(*args)
    plain = plain[0] if isinstance(plain, tuple) else plain
    result = getattr(kernels, name)(*args, add_to=collected)
    dx = result[0] if isinstance(result, tuple) else result
    assert dx is collected
    # the same IEEE additions as the engine's separate sum, so equal to the last bit
    np.testing.assert_array_equal(dx, before + plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("name", ADD_TO_KERNELS)
def test_adding_into_equals_a_separate_sum(backend_name, name, dtype, ties):
    check_adds_in_place(backends.kernels(backend_name), name, dtype, ties=ties)


@pytest.mark.parametrize("name", ADD_TO_KERNELS)
def test_batch_of_one_and_odd_sizes(backend_name, name):
    check_adds_in_place(backends.kernels(backend_name), name, np.float64, shape=(1, 3, 5, 1))


@pytest.mark.parametrize("name", ADD_TO_KERNELS)
@pytest.mark.parametrize("bad, message", [
    (lambda s, d: np.zeros(s[:-1] + (s[-1] + 1,), d), "add_to must be the float64 gradient of shape"),
    (lambda s, d: np.zeros(s, np.float32), "add_to must be the float64 gradient of shape"),
    (lambda s, d: np.zeros(s[::-1], d).T, "add_to must be a writeable C-contiguous array"),
    (lambda s, d: np.broadcast_to(np.zeros(s[-1:], d), s), "add_to must be a writeable C-contiguous array"),
    (lambda s, d: list(np.zeros(s, d)), "add_to must be an ndarray or None"),
])
def test_a_wrong_add_to_is_refused_before_any_work(backend_name, name, bad, message):
    args, shape = add_to_case(name, np.float64)
    target = bad(shape, np.float64)
    snapshot = np.array(target, copy=True)
    with pytest.raises((TypeError, ValueError), match=f"{name}: {message}"):
        getattr(backends.kernels(backend_name), name)(*args, add_to=target)
    np.testing.assert_array_equal(np.asarray(target), snapshot)
