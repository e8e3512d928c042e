"""Parity of every op with PyTorch: one table of (op, PyTorch counterpart, input maker), shared by
the tests (``tests/test_ops_parity.py``) and the command

    python -m minitorch_attn.parity [--backend numpy|numba|cuda|all] [--seed S]

which prints op × dtype -> the largest relative error over the forward output(s), every input
gradient and every running buffer, on fixed-seed random shapes (and, for max-type ops, on
integer-valued inputs full of ties), and exits non-zero if an entry exceeds the tolerance of
:data:`minitorch_attn.testing.TOLERANCE`.

An input maker receives a :class:`Draw`: the tests build it on hypothesis (so shapes shrink to a
minimal failing example), the command on a seeded generator (so the table is reproducible).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import backends, ops
from .tensor import Tensor
from .testing import TOLERANCE, rel_error

DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


class Draw:
    """Shape choices and input values for one sample.

    ``integers(low, high)`` picks an int in [low, high] (hypothesis or a seeded generator);
    values come from ``rng``. With ``ties`` the values are the integers -2..2, so maxima are
    tied; with ``small`` every range shrinks to its two lowest values (numerical gradients).
    """

    def __init__(self, integers, seed, dtype, ties=False, small=False):
        self._integers = integers
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.ties = ties
        self.small = small

    @classmethod
    def seeded(cls, seed, dtype, ties=False, small=False):
        """A draw that depends on ``seed`` (an int or a sequence of ints) alone."""
        choices = np.random.default_rng(np.atleast_1d(seed).tolist() + [0])
        return cls(lambda low, high: choices.integers(low, high + 1), np.atleast_1d(seed).tolist() + [1],
                   dtype, ties, small)

    def int(self, low, high):
        return int(self._integers(low, min(high, low + 1) if self.small else high))

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def values(self, *shape):
        """Random values of ``shape``, sometimes as a non-contiguous view (transposed or strided)."""
        if self.ties:
            array = self.rng.integers(-2, 3, size=shape).astype(self.dtype)
        else:
            array = self.rng.standard_normal(shape).astype(self.dtype)
        layout = self.int(0, 2) if array.ndim else 0
        if layout == 1:
            return np.asfortranarray(array)
        if layout == 2:
            # Every other element of a NaN-filled buffer: a kernel that ignores strides reads NaN.
            buffer = np.full(shape[:-1] + (2 * shape[-1],), np.nan, self.dtype)
            buffer[..., ::2] = array
            return buffer[..., ::2]
        return array

    def positive(self, *shape):
        """Values in [0.5, ~3]: variances."""
        return (np.abs(self.rng.standard_normal(shape)) + 0.5).astype(self.dtype)


@dataclass
class Sample:
    """Differentiable ``inputs`` (name -> array, passed in order) and ``options`` passed to both sides.

    Float ndarrays among the options are buffers (running statistics): each side gets its own
    copy and the copies are compared after the call. Integer ndarrays (labels) are constants.
    """

    inputs: dict
    options: dict = field(default_factory=dict)

    def describe(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.inputs.items())
        rest = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if not isinstance(v, np.ndarray))
        return shapes + (f"; {rest}" if rest else "")


@dataclass(frozen=True)
class OpCase:
    """An op, its PyTorch counterpart (same keyword arguments) and the maker of its inputs."""

    name: str
    ours: Callable
    theirs: Callable
    make: Callable[[Draw], Sample]
    ties: bool = False  # a max-type op: also checked on tied inputs (the gradient must go to the first maximum)


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _torch_option(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.astype(np.int64) if value.dtype.kind in "iu" else value.copy())
    return value


def own_copies(options):
    """``options`` with every ndarray copied: buffers the op updates in place stay the caller's."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in options.items()}


def upstream_gradients(shapes, dtype, seed):
    """One standard-normal upstream gradient per output shape (never ones or zeros: they hide bugs)."""
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(shape), dtype) for shape in shapes]


def backpropagate(outputs, upstream):
    """Send ``upstream[i]`` back from ``outputs[i]`` in a single backward pass."""
    if len(outputs) == 1:
        outputs[0].backward(upstream[0])
        return
    # One scalar through every output: the tape must add the outputs' gradients in one pass.
    total = ops.sum(ops.mul(outputs[0], upstream[0]))
    for out, grad in zip(outputs[1:], upstream[1:]):
        total = ops.add(total, ops.sum(ops.mul(out, grad)))
    total.backward()


def compare(case, sample, backend="numpy", grad_seed=0):
    """Run ``case`` on ``sample`` with ours (on ``backend``) and with PyTorch; return relative errors.

    Keys: ``"forward"`` (worst output), ``"d <input>"`` per input, and one per buffer. Both sides
    get the same random upstream gradient per output. Our inputs keep their memory layout.
    """
    dtype = next(iter(sample.inputs.values())).dtype
    originals = {k: v.copy() for k, v in sample.inputs.items()}
    ours_in = {k: Tensor(v, requires_grad=True) for k, v in sample.inputs.items()}
    theirs_in = {k: torch.tensor(np.ascontiguousarray(v), requires_grad=True) for k, v in sample.inputs.items()}
    ours_options = own_copies(sample.options)
    theirs_options = {k: _torch_option(v) for k, v in sample.options.items()}

    references = _as_tuple(case.theirs(*theirs_in.values(), **theirs_options))
    upstream = upstream_gradients([r.shape for r in references], dtype, grad_seed)
    torch.autograd.backward(references, [torch.from_numpy(u) for u in upstream])
    with backends.backend(backend):
        outputs = _as_tuple(case.ours(*ours_in.values(), **ours_options))
        for i, (out, ref) in enumerate(zip(outputs, references)):
            if out.shape != tuple(ref.shape) or out.dtype != dtype:
                raise AssertionError(f"{case.name}: output {i} is {out.dtype} {out.shape}, "
                                     f"expected {dtype} {tuple(ref.shape)}")
        backpropagate(outputs, upstream)

    for name, array in sample.inputs.items():
        if not np.array_equal(array, originals[name], equal_nan=True):
            raise AssertionError(f"{case.name}: the op changed its input {name!r} in place")
    errors = {"forward": max(rel_error(out.numpy(), ref.detach().numpy()) for out, ref in zip(outputs, references))}
    for name, tensor in ours_in.items():
        if tensor.grad is None:
            errors[f"d {name}"] = math.inf
            continue
        if tensor.grad.dtype != dtype:
            raise AssertionError(f"{case.name}: the gradient of {name!r} is {tensor.grad.dtype} for {dtype} inputs")
        errors[f"d {name}"] = rel_error(tensor.grad, theirs_in[name].grad.numpy())
    for name, value in ours_options.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            errors[name] = rel_error(value, theirs_options[name].numpy())
    return errors


# --------------------------------------------------------------------------
# Input makers
# --------------------------------------------------------------------------
def _nchw_shape(d, max_hw=5):
    return d.int(1, 3), d.int(1, 4), d.int(1, max_hw), d.int(1, max_hw)


def _make_x(d):
    return Sample({"x": d.values(*_nchw_shape(d))})


def _make_any_shape(d):
    shape = d.choice(((d.int(1, 4), d.int(1, 5)), _nchw_shape(d), (d.int(1, 7),)))
    return Sample({"x": d.values(*shape)})


def _make_linear(d):
    n, fan_in, fan_out = d.int(1, 4), d.int(1, 6), d.int(1, 5)
    inputs = {"x": d.values(n, fan_in), "weight": d.values(fan_out, fan_in)}
    if d.choice((True, False)):
        inputs["bias"] = d.values(fan_out)
    return Sample(inputs)


def _make_binary(d):
    """x (N,C,H,W) with a broadcast partner (or a Python number), on either side of the operator."""
    n, c, h, w = shape = _nchw_shape(d)
    partner = d.choice((shape, (n, c, 1, 1), (n, 1, h, w), (c, 1, 1), (1,), None))
    options = {"swap": d.choice((False, True))}
    inputs = {"x": d.values(*shape)}
    if partner is None:
        options["scalar"] = float(d.choice((2.5, -0.75, 3)))
    else:
        inputs["other"] = d.values(*partner)
    return Sample(inputs, options)


def _binary(op):
    def apply(x, other=None, *, scalar=None, swap):
        other = scalar if other is None else other
        return op(other, x) if swap else op(x, other)

    return apply


def _make_concat(d):
    n, h, w = d.int(1, 3), d.int(1, 4), d.int(1, 4)
    spatial = d.choice(((h, w), ()))
    return Sample({name: d.values(n, d.int(1, 4), *spatial) for name in "abc"[: d.int(2, 3)]})


def _make_reshape(d):
    n, c, h, w = _nchw_shape(d)
    target = d.choice(((n, c * h, w), (-1,), (n, -1, 1), (w, h, c, n)))
    return Sample({"x": d.values(n, c, h, w)}, {"shape": target})


def _make_cross_entropy(d):
    n, k = d.int(1, 5), d.int(1, 6)
    return Sample({"logits": 3 * d.values(n, k)}, {"labels": d.rng.integers(0, k, size=n)})


def _make_conv2d(d):
    kernel = (d.choice((1, 3, 7, 2)), d.choice((1, 3, 7, 2)))
    stride = (d.int(1, 2), d.int(1, 2))
    dilation = (d.int(1, 2), d.int(1, 2))
    groups = d.choice((1, 2, 3))
    per_group = d.int(1, 2)  # 1 with groups > 1: depthwise
    c_out = groups * d.int(1, 2)
    same_possible = stride == (1, 1) and all(dk * (k - 1) % 2 == 0 for k, dk in zip(kernel, dilation))
    if same_possible and d.choice((False, True)):
        padding = "same"
        pads = tuple(dk * (k - 1) // 2 for k, dk in zip(kernel, dilation))
    else:
        padding = pads = (d.int(0, 2), d.int(0, 2))
    # Smallest input the kernel fits into, plus a few pixels.
    h, w = (max(1, dk * (k - 1) + 1 - 2 * p) + d.int(0, 3) for k, dk, p in zip(kernel, dilation, pads))
    inputs = {"x": d.values(d.int(1, 2), per_group * groups, h, w), "weight": d.values(c_out, per_group, *kernel)}
    if d.choice((True, False)):
        inputs["bias"] = d.values(c_out)
    return Sample(inputs, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})


def _make_batch_norm(training):
    def make(d):
        n, c = d.int(1, 4), d.int(1, 4)
        shape = [n, c] + list(d.choice(((), (d.int(1, 4), d.int(1, 4)))))
        if training and np.prod(shape) == c:  # one value per channel: no batch variance
            shape[0] = 2
        inputs = {"x": d.values(*shape), "weight": d.values(c), "bias": d.values(c)}
        options = {"running_mean": d.rng.standard_normal(c).astype(d.dtype), "running_var": d.positive(c),
                   "training": training, "momentum": d.choice((0.1, 0.01)), "eps": d.choice((1e-5, 1e-3))}
        return Sample(inputs, options)

    return make


def _make_channel_gate(d):
    n, c, h, w = _nchw_shape(d)
    return Sample({"x": d.values(n, c, h, w), "gate": d.values(n, c)})


def _make_channel_spatial_gate(d):
    n, c, h, w = _nchw_shape(d)
    return Sample({"x": d.values(n, c, h, w), "channel_gate": d.values(n, c), "spatial_gate": d.values(n, 1, h, w)})


def _make_residual_gate(d):
    n, c, h, w = _nchw_shape(d)
    return Sample({"x": d.values(n, c, h, w), "channel_logit": d.values(n, c),
                   "spatial_logit": d.values(n, 1, h, w)})


# --------------------------------------------------------------------------
# PyTorch counterparts that are more than one call
# --------------------------------------------------------------------------
def _torch_global_max(x):
    return F.max_pool2d(x, x.shape[2:]).flatten(1)


def _torch_gated_channel_pool(x, gate):
    y = x * gate[:, :, None, None]
    return torch.cat([y.mean(dim=1, keepdim=True), y.max(dim=1, keepdim=True).values], dim=1)


def _torch_batch_norm(x, weight, bias, **options):
    return F.batch_norm(x, weight=weight, bias=bias, **options)


def _ours_batch_norm(x, weight, bias, *, running_mean, running_var, training, momentum, eps):
    return ops.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


CASES = (
    OpCase("global_avg_pool", ops.global_avg_pool, lambda x: x.mean(dim=(2, 3)), _make_x),
    OpCase("global_max_pool", ops.global_max_pool, _torch_global_max, _make_x, ties=True),
    OpCase("global_lp_pool", ops.global_lp_pool,
           lambda x: F.lp_pool2d(x, 2, x.shape[2:]).flatten(1), _make_x),
    OpCase("global_lse_pool", ops.global_lse_pool, lambda x: torch.logsumexp(x, dim=(2, 3)), _make_x),
    OpCase("channel_mean", ops.channel_mean, lambda x: x.mean(dim=1, keepdim=True), _make_x),
    OpCase("channel_max", ops.channel_max, lambda x: x.max(dim=1, keepdim=True).values, _make_x, ties=True),
    OpCase("linear", ops.linear, F.linear, _make_linear),
    OpCase("relu", ops.relu, torch.relu, _make_any_shape, ties=True),
    OpCase("sigmoid", ops.sigmoid, torch.sigmoid, _make_any_shape),
    OpCase("mul", _binary(ops.mul), _binary(lambda a, b: a * b), _make_binary),
    OpCase("add", _binary(ops.add), _binary(lambda a, b: a + b), _make_binary),
    OpCase("concat", lambda *parts: ops.concat(parts),
           lambda *parts: torch.cat(parts, dim=1), _make_concat),
    OpCase("reshape", ops.reshape, lambda x, shape: x.reshape(shape), _make_reshape),
    OpCase("flatten", ops.flatten, lambda x: x.flatten(1), _make_x),
    OpCase("sum", ops.sum, lambda x: x.sum(), _make_any_shape),
    OpCase("mean", ops.mean, lambda x: x.mean(), _make_any_shape),
    OpCase("cross_entropy", ops.cross_entropy, lambda logits, labels: F.cross_entropy(logits, labels),
           _make_cross_entropy),
    OpCase("conv2d", ops.conv2d, F.conv2d, _make_conv2d),
    OpCase("batch_norm (train)", _ours_batch_norm, _torch_batch_norm, _make_batch_norm(training=True)),
    OpCase("batch_norm (eval)", _ours_batch_norm, _torch_batch_norm, _make_batch_norm(training=False)),
    OpCase("global_avg_max_pool", ops.global_avg_max_pool, lambda x: (x.mean(dim=(2, 3)), _torch_global_max(x)),
           _make_x, ties=True),
    OpCase("gated_channel_pool", ops.gated_channel_pool, _torch_gated_channel_pool, _make_channel_gate,
           ties=True),
    OpCase("channel_spatial_gate", ops.channel_spatial_gate,
           lambda x, channel_gate, spatial_gate: x * channel_gate[:, :, None, None] * spatial_gate,
           _make_channel_spatial_gate),
    OpCase("residual_gate", ops.residual_gate,
           lambda x, channel_logit, spatial_logit: x * (1 + torch.sigmoid(channel_logit[:, :, None, None]
                                                                               + spatial_logit)),
           _make_residual_gate),
)

CASES_BY_NAME = {case.name: case for case in CASES}


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    errors: dict  # dtype -> worst relative error (nan when the op raised)
    problems: list  # exception messages

    def within_tolerance(self):
        return all(err <= TOLERANCE[dtype] for dtype, err in self.errors.items())


def parity_table(backend="numpy", seed=0, samples=3, cases=None):
    """One :class:`Row` per case of ``cases`` (default :data:`CASES`; max-type cases get a tie row too),
    each entry the worst of ``samples`` random shapes."""
    cases = CASES if cases is None else cases
    rows = []
    for index, case in enumerate(cases):
        for ties in (False, True) if case.ties else (False,):
            row = Row(case.name + (" (ties)" if ties else ""), {}, [])
            for dtype_index, dtype in enumerate(DTYPES):
                worst = 0.0
                for s in range(samples):
                    draw = Draw.seeded((seed, index, int(ties), dtype_index, s), dtype, ties=ties)
                    try:
                        errors = compare(case, case.make(draw), backend, grad_seed=seed + s)
                        worst = max(worst, *errors.values())
                    except Exception as error:  # noqa: BLE001 - the table reports every failure, then exits 1
                        worst = math.nan
                        row.problems.append(f"{dtype}: {type(error).__name__}: {error}")
                        break
                row.errors[dtype] = worst
            rows.append(row)
    return rows


def format_table(rows, backend, seed):
    width = max(len(r.label) for r in rows) + 2
    lines = [
        f"Parity with PyTorch {torch.__version__} on backend {backend!r}, seed {seed}: the largest relative",
        "error over the forward output(s), every input gradient and every running buffer",
        "",
        "op".ljust(width) + "".join(f"{str(dtype):>12}" for dtype in DTYPES),
    ]
    for row in rows:
        cells = "".join(f"{row.errors[dtype]:>11.1e}{' ' if row.errors[dtype] <= TOLERANCE[dtype] else '!'}"
                        for dtype in DTYPES)
        lines.append(row.label.ljust(width) + cells)
    lines.append("tolerance".ljust(width) + "".join(f"{TOLERANCE[dtype]:>11.0e} " for dtype in DTYPES))
    failing = [r for r in rows if not r.within_tolerance()]
    for row in failing:
        lines.extend(f"  {row.label}: {problem}" for problem in row.problems)
    entries = len(rows) * len(DTYPES)
    lines.append(f"{len(failing)} of {len(rows)} ops exceed the tolerance (marked !)" if failing
                 else f"all {entries} entries within tolerance")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minitorch_attn.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numpy", choices=sorted(backends.BACKEND_MODULES) + ["all"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3, help="random shapes per entry (default 3)")
    args = parser.parse_args(argv)
    names = list(backends.BACKEND_MODULES) if args.backend == "all" else [args.backend]
    status = 0
    for name in names:
        try:
            backends.kernels(name)
        except (backends.BackendUnavailable, ImportError) as error:
            print(f"backend {name!r} skipped: {error}\n")
            if args.backend != "all":
                status = 2
            continue
        rows = parity_table(name, args.seed, args.samples)
        print(format_table(rows, name, args.seed) + "\n")
        if not all(row.within_tolerance() for row in rows):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
