"""NaN, ±inf and empty inputs: every max-like op against PyTorch, for any backend (shared by
``test_nonfinite.py`` on NumPy/Numba and ``cuda/test_cuda_nonfinite.py`` on CUDA).

PyTorch's rules, which every backend must follow: a max is NaN when a NaN is among its
inputs and its index (where the backward sends the gradient) is the first NaN; logsumexp
of +inf is +inf and of a row of -inf is -inf; softmax cross-entropy of a row holding a
NaN or +inf is NaN in that row. A max over no elements raises, as NumPy's does.
"""
import warnings

import numpy as np
import pytest

from minitorch_attn import ops
from minitorch_attn.backends import backend, kernels
from minitorch_attn.tensor import Tensor

torch = pytest.importorskip("torch")

SHAPE = (2, 5, 3, 4)
#: Where the odd value goes along the reduced axis (positions in a plane, a channel run or a logits row).
POSITIONS = {"first": [0], "middle": [2], "last": [-1], "two": [2, -1]}
ODD_VALUES = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}
#: (position, odd value) pairs: NaN everywhere, the infinities at the two ends.
PLACEMENTS = [(p, "nan") for p in POSITIONS] + [(p, v) for v in ("+inf", "-inf") for p in ("first", "last")]


def _place(x, axis_kind, positions, value):
    """x with ``value`` at ``positions`` along the reduced axis of sample 0 (and plane 1 / pixel (1, 2))."""
    x = x.copy()
    if axis_kind == "plane":  # (N, C, H, W), reduced over H×W
        plane = x[0, 1].reshape(-1)
        plane[positions] = value
        x[0, 1] = plane.reshape(x.shape[2:])
    elif axis_kind == "channels":  # reduced over C
        x[0, [p % x.shape[1] for p in positions], 1, 2] = value
    else:  # logits (N, K)
        x[0, positions] = value
    return x


def _torch_max_plane(t):
    return t.flatten(2).max(dim=2).values


def _torch_max_channels(t):
    return t.max(dim=1, keepdim=True).values


#: name -> (axis kind, ours(x: Tensor, extra) -> outputs, theirs(t, extra) -> outputs).
#: ``extra`` is the gate of the fused CBAM op (a positive (N, C) array), else unused.
OPS = {
    "global_max_pool": ("plane", lambda x, e: ops.global_max_pool(x), lambda t, e: _torch_max_plane(t)),
    "global_avg_max_pool": ("plane", lambda x, e: ops.global_avg_max_pool(x),
                            lambda t, e: (t.mean(dim=(2, 3)), _torch_max_plane(t))),
    "global_lse_pool": ("plane", lambda x, e: ops.global_lse_pool(x),
                        lambda t, e: torch.logsumexp(t.flatten(2), dim=2)),
    "global_avg_pool": ("plane", lambda x, e: ops.global_avg_pool(x), lambda t, e: t.mean(dim=(2, 3))),
    "channel_max": ("channels", lambda x, e: ops.channel_max(x), lambda t, e: _torch_max_channels(t)),
    "channel_mean": ("channels", lambda x, e: ops.channel_mean(x), lambda t, e: t.mean(dim=1, keepdim=True)),
    "gated_channel_pool": (
        "channels", lambda x, e: ops.gated_channel_pool(x, Tensor(e)),
        lambda t, e: (lambda y: torch.cat([y.mean(dim=1, keepdim=True), _torch_max_channels(y)], 1))(
            t * torch.from_numpy(e)[:, :, None, None])),
    "channel_spatial_gate": (
        "channels", lambda x, e: ops.channel_spatial_gate(x, Tensor(e), Tensor(np.full((x.shape[0], 1) + x.shape[2:], 0.5, e.dtype))),
        lambda t, e: t * torch.from_numpy(e)[:, :, None, None] * 0.5),
    "relu": ("plane", lambda x, e: ops.relu(x), lambda t, e: torch.relu(t)),
    "sigmoid": ("plane", lambda x, e: ops.sigmoid(x), lambda t, e: torch.sigmoid(t)),
    "cross_entropy": ("logits", None, None),  # (logits, labels): see run_case
}


def _as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _assert_same(ours, theirs, what):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch {theirs.shape}"
    # NaN where PyTorch has NaN, the same infinities, and finite values within float32's tolerance.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


def run_case(backend_name, op, position, odd, dtype):
    """Forward and backward of ``op`` with ``odd`` at ``position`` on ``backend_name``, against PyTorch."""
    with np.errstate(invalid="ignore", over="ignore"):  # NumPy's warnings on inf - inf, as intended here
        _run_case(backend_name, op, position, odd, dtype)


def _run_case(backend_name, op, position, odd, dtype):
    rng = np.random.default_rng(7)
    axis_kind = OPS[op][0]
    label = f"{op} on {backend_name}, {odd} at {position}"
    if op == "cross_entropy":
        logits = _place(rng.standard_normal((3, 6)).astype(dtype), "logits", POSITIONS[position], ODD_VALUES[odd])
        labels = np.array([1, 4, 0])
        z = Tensor(logits, requires_grad=True)
        with backend(backend_name):
            loss = ops.cross_entropy(z, labels)
            loss.backward()
        t = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels))
        expected.backward()
        _assert_same(loss.numpy(), expected.detach().numpy(), f"{label}: loss")
        _assert_same(z.grad, t.grad.numpy(), f"{label}: d logits")
        return
    x = _place(rng.standard_normal(SHAPE).astype(dtype), axis_kind, POSITIONS[position], ODD_VALUES[odd])
    gate = (rng.random(SHAPE[:2]) + 0.5).astype(dtype)
    ours_fn, theirs_fn = OPS[op][1:]
    xt = Tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    with backend(backend_name):
        outputs = _as_tuple(ours_fn(xt, gate))
        upstream = [rng.standard_normal(o.shape).astype(dtype) for o in outputs]
        loss = None
        for out, g in zip(outputs, upstream):
            term = (out * Tensor(g)).sum()
            loss = term if loss is None else loss + term
        loss.backward()
    expected = _as_tuple(theirs_fn(t, gate))
    sum(((e * torch.from_numpy(g)).sum() for e, g in zip(expected, upstream))).backward()
    for i, (o, e) in enumerate(zip(outputs, expected)):
        _assert_same(o.numpy(), e.detach().numpy(), f"{label}: output {i}")
    _assert_same(xt.grad, t.grad.numpy(), f"{label}: dx")


#: Direct kernel calls whose reduced axis is empty: NumPy's reference raises for a max (then every
#: backend must raise ValueError) and returns NaN for a mean (then every backend must return it).
EMPTY_CASES = {
    "global_avg_pool_forward": lambda d: (np.zeros((2, 3, 0, 4), d),),
    "global_max_pool_forward": lambda d: (np.zeros((2, 3, 0, 4), d),),
    "global_lse_pool_forward": lambda d: (np.zeros((2, 3, 4, 0), d),),
    "global_avg_max_pool_forward": lambda d: (np.zeros((2, 3, 0, 0), d),),
    "channel_mean_forward": lambda d: (np.zeros((2, 0, 3, 4), d),),
    "channel_max_forward": lambda d: (np.zeros((2, 0, 3, 4), d),),
    "gated_channel_pool_forward": lambda d: (np.zeros((2, 0, 3, 4), d), np.zeros((2, 0), d)),
    "softmax_cross_entropy_forward": lambda d: (np.zeros((2, 0), d), np.zeros(2, np.int64)),
}


def run_empty_case(backend_name, name, dtype):
    args = EMPTY_CASES[name](np.dtype(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice"
        try:
            expected = getattr(kernels("numpy"), name)(*args)
        except ValueError:
            with pytest.raises(ValueError, match=name):
                getattr(kernels(backend_name), name)(*args)
            return
        actual = getattr(kernels(backend_name), name)(*args)
    for a, e in zip(_as_tuple(actual), _as_tuple(expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"{name} on {backend_name}")


def run_module_case(backend_name, pool_types):
    """CBAM's channel gate with a NaN first in one plane (the issue's crash on Numba) against its PyTorch twin:
    NaN in the same places (the whole sample: every channel's gate reads the NaN descriptor)."""
    from minitorch_attn.interop import to_torch
    from minitorch_attn.nn import ChannelGate

    x = np.random.default_rng(3).standard_normal((2, 16, 5, 6)).astype(np.float32)
    x[0, 3, 0, 0] = np.nan
    gate = ChannelGate(16, reduction_ratio=4, pool_types=pool_types).to(np.float32)
    twin = to_torch(gate)
    with backend(backend_name):
        ours = gate(Tensor(x)).numpy()
    theirs = twin(torch.from_numpy(x)).detach().numpy()
    assert np.isnan(theirs).sum() == 16 * 5 * 6  # the whole first sample
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
