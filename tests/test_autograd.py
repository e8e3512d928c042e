"""The tape (accumulation, multi-output nodes, no_grad, ctx.kernels) and the backend seam."""
import importlib
import sys
import threading
import types

import numpy as np
import pytest
import torch

from minitorch_attn import Function, Tensor, backend, backends, current_backend, is_grad_enabled, no_grad, ops, set_backend
from minitorch_attn.parity import CASES, Draw, own_copies, upstream_gradients
from minitorch_attn.testing import assert_close


def leaves(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays], [torch.tensor(a, requires_grad=True) for a in arrays]


class TestGradientAccumulation:
    def test_tensor_used_twice(self, dtype, backend_name, rng):
        """y = x · σ(x): x reaches y directly and through the gate (CBAM's F in the gate and the product)."""
        xa = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
        upstream = rng.standard_normal(xa.shape).astype(dtype)
        (x,), (tx,) = leaves(xa)
        with backend(backend_name):
            y = x * ops.sigmoid(x)
            y.backward(upstream)
        (tx * torch.sigmoid(tx)).backward(torch.from_numpy(upstream))
        assert_close(x.grad, tx.grad.numpy())

    def test_cbam_channel_gate_graph(self, dtype, backend_name, rng):
        """F -> (avg, max) -> shared MLP (used twice) -> σ(sum) -> F ⊗ gate: every path adds into dF."""
        n, c, hidden = 2, 6, 3
        fa = rng.standard_normal((n, c, 3, 4)).astype(dtype)
        w1a, w2a = rng.standard_normal((hidden, c)).astype(dtype), rng.standard_normal((c, hidden)).astype(dtype)
        upstream = rng.standard_normal(fa.shape).astype(dtype)
        (f, w1, w2), (tf, tw1, tw2) = leaves(fa, w1a, w2a)

        def mlp(v, linear, relu, a, b):
            return linear(relu(linear(v, a)), b)

        with backend(backend_name):
            avg, peak = ops.global_avg_max_pool(f)
            gate = ops.sigmoid(mlp(avg, ops.linear, ops.relu, w1, w2) + mlp(peak, ops.linear, ops.relu, w1, w2))
            out = f * ops.reshape(gate, (n, c, 1, 1))
            out.backward(upstream)
        tavg, tpeak = tf.mean(dim=(2, 3)), torch.amax(tf, dim=(2, 3))
        F = torch.nn.functional
        tgate = torch.sigmoid(mlp(tavg, F.linear, torch.relu, tw1, tw2) + mlp(tpeak, F.linear, torch.relu, tw1, tw2))
        tout = tf * tgate.reshape(n, c, 1, 1)
        tout.backward(torch.from_numpy(upstream))
        assert_close(out.numpy(), tout.detach().numpy(), name="forward")
        for ours, theirs, name in ((f, tf, "dF"), (w1, tw1, "dW1"), (w2, tw2, "dW2")):
            assert_close(ours.grad, theirs.grad.numpy(), name=name)

    def test_two_backward_passes_add_up(self, rng):
        xa = rng.standard_normal((3, 4))
        g1, g2 = rng.standard_normal((3, 4)), rng.standard_normal(3)
        (x,), (tx,) = leaves(xa)
        ops.sigmoid(x).backward(g1)
        ops.linear(x, Tensor(np.ones((1, 4)))).reshape(3).backward(g2)
        torch.sigmoid(tx).backward(torch.from_numpy(g1))
        torch.nn.functional.linear(tx, torch.ones(1, 4, dtype=torch.float64)).reshape(3).backward(torch.from_numpy(g2))
        assert_close(x.grad, tx.grad.numpy())

    def test_shared_node_runs_backward_once(self, rng):
        calls = []

        class Double(Function):
            @staticmethod
            def forward(ctx, x):
                return 2 * x

            @staticmethod
            def backward(ctx, grad):
                calls.append(grad.copy())
                return 2 * grad

        x = Tensor(rng.standard_normal(3), requires_grad=True)
        a = Double.apply(x)
        (a * a + a).backward(np.ones(3))
        # d/da (a² + a) = 2a + 1, gathered from both uses before Double's backward runs.
        assert len(calls) == 1
        assert_close(calls[0], 2 * a.numpy() + 1)
        assert_close(x.grad, 2 * (2 * a.numpy() + 1))

    def test_long_chain_does_not_recurse(self):
        x = Tensor(np.ones(2), requires_grad=True)
        y = x
        for _ in range(3000):
            y = y + 1.0
        y.backward(np.array([1.0, 2.0]))
        assert_close(x.grad, np.array([1.0, 2.0]))


class TestAddingIntoCollectedGradients:
    """``ctx.accumulate_into``: a backward may add into the gradient collected so far, only where that is safe."""

    def test_cbam_input_gets_its_pooled_gradient_added_in_place(self, backend_name, monkeypatch, rng):
        """F feeds the fused gate and the descriptor pool: the pool's backward adds into the gate's dF,
        and no F-sized sum is left for the engine; dF still matches PyTorch."""
        from minitorch_attn.interop import to_torch
        from minitorch_attn.nn import CBAM

        xa = rng.standard_normal((2, 8, 5, 6))
        upstream = rng.standard_normal(xa.shape)
        module = CBAM(8, reduction_ratio=4).to(np.float64)
        kernels = backends.kernels(backend_name)
        offered, sums = [], []
        pool_backward, add = kernels.global_avg_max_pool_backward, kernels.add_forward

        def recording_pool_backward(*args, add_to=None):
            offered.append(add_to)
            return pool_backward(*args, add_to=add_to)

        monkeypatch.setattr(kernels, "global_avg_max_pool_backward", recording_pool_backward)
        monkeypatch.setattr(kernels, "add_forward", lambda a, b: sums.append(np.shape(a)) or add(a, b))
        with backend(backend_name):
            x = Tensor(xa, requires_grad=True)
            module(x).backward(upstream)
        assert len(offered) == 1 and offered[0] is not None and offered[0].shape == xa.shape
        assert xa.shape not in sums
        tx = torch.tensor(xa, requires_grad=True)
        to_torch(module)(tx).backward(torch.from_numpy(upstream))
        assert_close(x.grad, tx.grad.numpy())

    def test_a_passed_on_gradient_is_never_written_into(self, backend_name, rng):
        """x + c passes the caller's gradient on unchanged (and so does reshape): the pool's backward
        must get a fresh array for x, and the caller's gradient must come back untouched."""
        xa = rng.standard_normal((2, 3, 4, 5))
        upstream = rng.standard_normal(xa.shape)
        kept = upstream.copy()
        with backend(backend_name):
            x = Tensor(xa, requires_grad=True)
            avg, peak = ops.global_avg_max_pool(x)
            gate = ops.reshape(ops.sigmoid(avg + peak), (2, 3, 1, 1))
            out = ops.add(ops.reshape(ops.reshape(x, (2, 60)), xa.shape), gate)
            out.backward(upstream)
        tx = torch.tensor(xa, requires_grad=True)
        (tx + torch.sigmoid(tx.mean(dim=(2, 3)) + tx.amax(dim=(2, 3))).reshape(2, 3, 1, 1)).backward(
            torch.from_numpy(upstream))
        np.testing.assert_array_equal(upstream, kept)
        assert_close(x.grad, tx.grad.numpy())

    def test_only_fresh_results_are_the_engines(self, rng):
        from minitorch_attn.autograd import Context, Node, _owned_results

        given, saved, fresh = rng.standard_normal((2, 3)), rng.standard_normal(4), rng.standard_normal((2, 3))
        ctx = Context(None, (True,) * 5)
        ctx.save_for_backward(saved, 3)
        node = Node(Function, ctx, (), ())
        results = (fresh, given, given[:1], saved.reshape(2, 2), None)
        assert _owned_results(node, (given,), results) == [True, False, False, False, False]
        twice = rng.standard_normal(3)
        assert _owned_results(node, (given,), (twice, twice)) == [False, False]


class TestMultiOutputFunctions:
    """A node with several outputs where only some reach the loss: the others count as zero gradient."""

    @pytest.mark.parametrize("used", ["avg", "max", "both"])
    def test_global_avg_max_pool(self, used, dtype, backend_name, rng):
        xa = rng.integers(-2, 3, size=(2, 3, 3, 3)).astype(dtype)  # ties too
        g = rng.standard_normal((2, 3)).astype(dtype)
        (x,), (tx,) = leaves(xa)
        with backend(backend_name):
            avg, peak = ops.global_avg_max_pool(x)
            root = {"avg": avg, "max": peak, "both": avg * peak}[used]
            root.backward(g)
        tavg = tx.mean(dim=(2, 3))
        tpeak = torch.nn.functional.max_pool2d(tx, (3, 3)).flatten(1)
        {"avg": tavg, "max": tpeak, "both": tavg * tpeak}[used].backward(torch.from_numpy(g))
        assert_close(x.grad, tx.grad.numpy())

    @pytest.mark.parametrize("used", ["out", "pooled", "both"])
    def test_cbam_gates_sharing_their_inputs(self, used, dtype, backend_name, rng):
        """x and M_c feed both the gated channel pool and F'' (as in cbam_attention): whichever outputs
        reach the loss, their gradients add up in x and M_c."""
        xa, gatea = rng.standard_normal((2, 3, 4, 4)).astype(dtype), rng.standard_normal((2, 3)).astype(dtype)
        spatiala = rng.standard_normal((2, 1, 4, 4)).astype(dtype)
        (x, gate, spatial), (tx, tgate, tspatial) = leaves(xa, gatea, spatiala)
        with backend(backend_name):
            pooled = ops.gated_channel_pool(x, gate)
            out = ops.channel_spatial_gate(x, gate, spatial)
            root = {"out": out, "pooled": pooled, "both": out * ops.sigmoid(ops.channel_mean(pooled))}[used]
            upstream = rng.standard_normal(root.shape).astype(dtype)
            root.backward(upstream)
        ty = tx * tgate[:, :, None, None]
        tpooled = torch.cat([ty.mean(1, keepdim=True), ty.max(1, keepdim=True).values], 1)
        tout = ty * tspatial
        troot = {"out": tout, "pooled": tpooled, "both": tout * torch.sigmoid(tpooled.mean(1, keepdim=True))}[used]
        troot.backward(torch.from_numpy(upstream))
        assert_close(x.grad, tx.grad.numpy(), name="dx")
        assert_close(gate.grad, tgate.grad.numpy(), name="dgate")

    def test_unused_output_gradient_is_a_zero_array_of_the_output_dtype(self):
        seen = []

        class Split(Function):
            @staticmethod
            def forward(ctx, x):
                return x[:2].astype(np.float32), x[2:] * 3

            @staticmethod
            def backward(ctx, grad_first, grad_second):
                seen.append((grad_first, grad_second))
                return np.concatenate([grad_first.astype(np.float64), 3 * grad_second])

        x = Tensor(np.arange(5.0), requires_grad=True)
        first, second = Split.apply(x)
        second.backward(np.array([1.0, 2.0, 3.0]))
        grad_first, _ = seen[0]
        assert grad_first.dtype == np.float32 and grad_first.shape == (2,) and not grad_first.any()
        assert_close(x.grad, np.array([0, 0, 3.0, 6.0, 9.0]))


class TestRequiresGrad:
    def test_no_grad_records_nothing(self, rng):
        x = Tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
        with no_grad():
            assert not is_grad_enabled()
            y = ops.global_avg_pool(x * 2.0)
        assert is_grad_enabled()
        assert not y.requires_grad and y.is_leaf
        with pytest.raises(RuntimeError, match="does not require grad"):
            y.backward(np.ones((2, 3)))
        assert x.grad is None

    def test_no_grad_restores_after_an_error_and_nests(self):
        with pytest.raises(ZeroDivisionError):
            with no_grad():
                1 / 0
        assert is_grad_enabled()
        with no_grad():
            with no_grad():
                pass
            assert not is_grad_enabled()
        assert is_grad_enabled()

    def test_no_grad_is_per_thread(self):
        seen = []
        with no_grad():
            worker = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
            worker.start()
            worker.join()
        assert seen == [True]

    def test_constants_get_no_gradient(self, rng):
        x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
        w = Tensor(rng.standard_normal((4, 3)))  # a constant
        out = ops.linear(x, w)
        assert out.requires_grad
        out.backward(rng.standard_normal((2, 4)))
        assert x.grad is not None and w.grad is None

    def test_ops_on_constants_build_no_graph(self, rng):
        out = ops.sigmoid(Tensor(rng.standard_normal(3)))
        assert not out.requires_grad and out.is_leaf

    def test_backward_skips_gradients_nobody_needs(self, rng):
        needs = []

        class Probe(Function):
            @staticmethod
            def forward(ctx, a, b):
                needs.append(ctx.needs_input_grad)
                return a + b

            @staticmethod
            def backward(ctx, grad):
                return grad, (grad if ctx.needs_input_grad[1] else None)

        a = Tensor(rng.standard_normal(2), requires_grad=True)
        Probe.apply(a, Tensor(np.ones(2))).backward(np.ones(2))
        assert needs == [(True, False)]

    @pytest.mark.parametrize("returned, message", [
        (lambda grad: (grad, grad), "returned 2 gradients for 1 tensor inputs"),
        (lambda grad: grad[:1], r"returned a gradient of shape \(1,\) for an input of shape \(3,\)"),
    ])
    def test_malformed_backward_is_reported(self, returned, message):
        class Bad(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, grad):
                return returned(grad)

        y = Bad.apply(Tensor(np.ones(3), requires_grad=True))
        with pytest.raises(RuntimeError, match=rf"Bad\.backward {message}"):
            y.backward(np.ones(3))


# --------------------------------------------------------------------------
# Backend seam
# --------------------------------------------------------------------------
def _recording_backend(monkeypatch, name):
    """A backend that runs the NumPy kernels and records their names: where does each call go?"""
    reference = backends.kernels("numpy")
    module = types.ModuleType(f"recording_backend_{name}")
    module.calls = []
    for kernel in backends.KERNEL_NAMES:
        def call(*args, _kernel=kernel, **kwargs):
            module.calls.append(_kernel)
            return getattr(reference, _kernel)(*args, **kwargs)
        setattr(module, kernel, call)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(backends.BACKEND_MODULES, name, module.__name__)
    monkeypatch.setattr(backends, "_loaded", dict(backends._loaded))
    return module


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_backward_uses_the_backend_that_ran_the_forward(case, monkeypatch):
    first, second = _recording_backend(monkeypatch, "first"), _recording_backend(monkeypatch, "second")
    sample = case.make(Draw.seeded(11, np.float64))
    with backend("first"):
        outputs = case.ours(*(Tensor(a, requires_grad=True) for a in sample.inputs.values()),
                            **own_copies(sample.options))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    forward_calls, first.calls[:] = list(first.calls), []
    with backend("second"):
        for out, grad in zip(outputs, upstream_gradients([o.shape for o in outputs], np.float64, 0)):
            out.backward(grad)
    assert second.calls == []
    assert bool(first.calls) == bool(forward_calls)


class TestBackendSelection:
    def test_default_is_numpy(self):
        assert current_backend() == "numpy"
        assert backends.kernels() is backends.kernels("numpy")

    def test_context_manager_restores_even_after_an_error(self, monkeypatch):
        _recording_backend(monkeypatch, "other")
        with pytest.raises(KeyError):
            with backend("other"):
                assert current_backend() == "other"
                with backend("numpy"):
                    assert current_backend() == "numpy"
                assert current_backend() == "other"
                raise KeyError("boom")
        assert current_backend() == "numpy"

    def test_set_backend(self, monkeypatch):
        recorder = _recording_backend(monkeypatch, "other")
        try:
            set_backend("other")
            ops.relu(Tensor(np.ones(2)))
            assert recorder.calls == ["relu_forward"]
        finally:
            set_backend("numpy")

    @pytest.mark.parametrize("call", [set_backend, backends.kernels, backends.is_available,
                                      lambda name: backend(name).__enter__()])
    def test_unknown_name_lists_the_valid_ones(self, call):
        with pytest.raises(ValueError, match=r"(?s)'numbaa'.*'cuda'.*'numba'.*'numpy'"):
            call("numbaa")
        assert current_backend() == "numpy"

    def test_backend_choice_is_per_thread(self, monkeypatch):
        _recording_backend(monkeypatch, "other")
        seen = []
        with backend("other"):
            worker = threading.Thread(target=lambda: seen.append(current_backend()))
            worker.start()
            worker.join()
        assert seen == ["numpy"]

    def test_available_backends(self):
        names = backends.available_backends()
        assert names[0] == "numpy" and set(names) <= set(backends.BACKEND_MODULES)


@pytest.mark.parametrize("name", sorted(backends.BACKEND_MODULES))
def test_every_backend_module_defines_every_kernel(name):
    """Checked wherever the module imports (a missing GPU must not hide a missing kernel)."""
    path = backends.BACKEND_MODULES[name]
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as error:
        if error.name != path:
            raise
        pytest.skip(f"{path} does not exist yet")
    missing = [k for k in backends.KERNEL_NAMES if not callable(getattr(module, k, None))]
    assert not missing, f"{name} backend lacks {missing}"
    problem = module.availability() if hasattr(module, "availability") else None
    assert problem is None or (isinstance(problem, str) and problem), problem
    assert backends.is_available(name) == (problem is None)
