"""Tensor: float-only construction, the backward entry point, and the operator sugar (vs PyTorch)."""
import numpy as np
import pytest
import torch

from minitorch_attn import Tensor
from minitorch_attn.testing import assert_close


@pytest.mark.parametrize("array, dtype_name", [
    (np.arange(6).reshape(2, 3), "int64"),
    (np.array([1, 2], np.int32), "int32"),
    (np.array([True, False]), "bool"),
    (np.array([1 + 2j]), "complex128"),
    (np.array([1.0], np.float16), "float16"),
    ([1, 2, 3], "int64"),
    (np.array(["a"]), "<U1"),
])
def test_non_float_arrays_are_rejected(array, dtype_name):
    with pytest.raises(TypeError, match=rf"(?s)float32 or float64.*got {dtype_name}"):
        Tensor(array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_keep_dtype_and_memory(dtype):
    array = np.ones((2, 3), dtype)[:, ::2]  # a non-contiguous view stays a view
    x = Tensor(array)
    assert x.dtype == dtype and x.data is array
    assert (x.shape, x.ndim, x.size, len(x)) == ((2, 2), 2, 4, 2)
    assert Tensor(x).data is array and x.numpy() is array


def test_python_floats_become_float64():
    assert Tensor([[1.0, 2.5]]).dtype == np.float64


def test_detach_and_repr():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = (x * 2.0).detach()
    assert not y.requires_grad and y.is_leaf
    assert "requires_grad=True" in repr(x) and "float64" in repr(x) and "requires_grad" not in repr(y)
    assert Tensor(np.array([[3.25]])).item() == 3.25


class TestBackwardEntryPoint:
    @pytest.mark.parametrize("shape", [(), (1,), (1, 1, 1)])
    def test_grad_may_be_left_out_for_one_element(self, shape, rng):
        x = Tensor(rng.standard_normal(shape), requires_grad=True)
        (x * 3.0).backward()
        assert_close(x.grad, np.full(shape, 3.0))

    def test_grad_must_be_given_for_several_elements(self, rng):
        y = Tensor(rng.standard_normal((2, 3)), requires_grad=True) * 2.0
        with pytest.raises(ValueError, match=r"(?s)grad must be given.*6 elements.*\(2, 3\)"):
            y.backward()

    @pytest.mark.parametrize("grad_shape", [(3, 2), (6,), (1, 3), ()])
    def test_wrong_grad_shape(self, grad_shape, rng):
        y = Tensor(rng.standard_normal((2, 3)), requires_grad=True) * 2.0
        with pytest.raises(ValueError, match=rf"(?s)grad must have shape \(2, 3\).*got {re_shape(grad_shape)}"):
            y.backward(np.ones(grad_shape))

    def test_tensor_without_graph(self):
        with pytest.raises(RuntimeError, match="does not require grad"):
            Tensor(np.ones(3)).backward(np.ones(3))

    def test_grad_is_cast_to_the_tensor_dtype(self, rng):
        x = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
        (x * 2.0).backward(rng.standard_normal(3))  # float64 upstream
        assert x.grad.dtype == np.float32

    def test_a_leaf_can_be_the_root(self, rng):
        x = Tensor(rng.standard_normal(4), requires_grad=True)
        upstream = rng.standard_normal(4)
        x.backward(upstream)
        assert_close(x.grad, upstream)

    def test_leaf_grad_does_not_alias_the_upstream_gradient(self, rng):
        # Reshape's backward returns a view of its grad: the leaf must keep its own copy.
        x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
        upstream = rng.standard_normal(6)
        x.reshape(6).backward(upstream)
        upstream[:] = 0
        assert x.grad.any()

    def test_zero_grad(self, rng):
        x = Tensor(rng.standard_normal(2), requires_grad=True)
        (x * 2.0).backward(np.ones(2))
        x.zero_grad()
        assert x.grad is None


def re_shape(shape):
    return "\\(" + ", ".join(map(str, shape)) + (",\\)" if len(shape) == 1 else "\\)")


OPERATOR_EXPRESSIONS = {
    "x + y": lambda x, y: x + y,
    "x - y": lambda x, y: x - y,
    "x * y": lambda x, y: x * y,
    "-x": lambda x, y: -x,
    "2.5 + x": lambda x, y: 2.5 + x,
    "x - 1.5": lambda x, y: x - 1.5,
    "1.5 - x": lambda x, y: 1.5 - x,
    "3 * x": lambda x, y: 3 * x,
    "x * y - x * 0.5 + y": lambda x, y: x * y - x * 0.5 + y,
}


@pytest.mark.parametrize("expression", OPERATOR_EXPRESSIONS)
def test_operators_match_torch(expression, dtype, rng):
    """Broadcast (N,C,H,W) with (N,C,1,1), as a channel gate does."""
    xa = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    ya = rng.standard_normal((2, 3, 1, 1)).astype(dtype)
    upstream = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    f = OPERATOR_EXPRESSIONS[expression]
    x, y = Tensor(xa, requires_grad=True), Tensor(ya, requires_grad=True)
    tx, ty = torch.tensor(xa, requires_grad=True), torch.tensor(ya, requires_grad=True)
    out, ref = f(x, y), f(tx, ty)
    assert_close(out.numpy(), ref.detach().numpy(), name="forward")
    assert out.dtype == dtype
    out.backward(upstream)
    ref.backward(torch.from_numpy(upstream))
    assert_close(x.grad, tx.grad.numpy(), name="dx")
    if ty.grad is not None:
        assert_close(y.grad, ty.grad.numpy(), name="dy")
    else:
        assert y.grad is None


def test_ndarray_on_the_left_defers_to_tensor(rng):
    a = rng.standard_normal((2, 3))
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    for out in (a * x, a + x):
        assert isinstance(out, Tensor) and out.requires_grad
    (a * x).backward(np.ones((2, 3)))
    assert_close(x.grad, a)


def test_reshape_sum_mean_methods_match_torch(dtype, rng):
    xa = rng.standard_normal((2, 3, 4)).astype(dtype)
    x, tx = Tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
    out = x.reshape(6, 4).sum() * 0.5 + x.reshape((4, -1)).mean() * 3.0
    ref = tx.reshape(6, 4).sum() * 0.5 + tx.reshape((4, -1)).mean() * 3.0
    assert out.shape == () and out.dtype == dtype
    assert_close(out.numpy(), ref.detach().numpy())
    out.backward()
    ref.backward()
    assert_close(x.grad, tx.grad.numpy())


def test_float32_stays_float32_with_python_numbers(rng):
    x = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    out = 1.0 - (x * 2.5 + 1) * -1
    assert out.dtype == np.float32
    out.backward(np.ones(3, np.float32))
    assert x.grad.dtype == np.float32
