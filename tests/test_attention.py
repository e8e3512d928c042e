"""Attention modules: argument checks, exercise functions in isolation, awkward inputs, random shapes vs twins.

Parity of every option with PyTorch is in test_interop.py (official structure and twins).
"""
import inspect
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minitorch_attn import Tensor, backend, interop, nn, ops
from minitorch_attn.exercise import REGISTRY
from minitorch_attn.nn import bam, cbam
from minitorch_attn.testing import TOLERANCE, assert_close, rel_error


@pytest.mark.parametrize("build, error, message", [
    (lambda: nn.ChannelGate(8, 16), ValueError, "reduction_ratio=16 is larger than gate_channels=8"),
    (lambda: nn.CBAM(4), ValueError, "reduction_ratio=16 is larger than gate_channels=4"),
    (lambda: nn.BAM(15), ValueError, "reduction_ratio=16 is larger than gate_channels=15"),
    (lambda: nn.SE(8, 0), ValueError, "reduction_ratio must be a positive int, got 0"),
    (lambda: nn.ChannelGate(8, 2, ("avg", "median")), ValueError, "pool_types must be a non-empty subset"),
    (lambda: nn.ChannelGate(8, 2, ()), ValueError, "pool_types must be a non-empty subset"),
    (lambda: nn.ChannelGate(8, 2, ("avg", "avg")), ValueError, "without repeats"),
    (lambda: nn.SpatialGate(4), ValueError, "kernel_size must be an odd positive int.*got 4"),
    (lambda: nn.CBAM(8, 2, kernel_size=6), ValueError, "kernel_size must be an odd positive int.*got 6"),
    (lambda: nn.SpatialGate(7, "conv3x3"), ValueError, "compress must be one of"),
    (lambda: nn.SpatialGate(7, "conv1x1"), ValueError, "needs gate_channels"),
    (lambda: nn.CBAM(8, 2, arrangement="serial"), ValueError, "arrangement must be one of.*'serial'"),
    (lambda: nn.BAM(8, 2, fusion="mean"), ValueError, "fusion must be one of.*'mean'"),
    (lambda: nn.BAM(8, 2, branches="none"), ValueError, "branches must be one of.*'none'"),
    (lambda: nn.BAM(8, 2, bn_placement="end"), ValueError, "bn_placement must be one of.*'end'"),
    (lambda: nn.BAM(8, 2, dilation_val=0), ValueError, "dilation_val must be a positive int, got 0"),
    (lambda: nn.BAM(8, 2, dilation_conv_num=-1), ValueError, "dilation_conv_num must be an int >= 0"),
])
def test_constructor_arguments_are_checked(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("module", [nn.ChannelGate(8, 2), nn.SE(8, 2), nn.CBAM(8, 2), nn.BAM(8, 2),
                                    nn.SpatialGate(3, "conv1x1", gate_channels=8), nn.BAMChannelGate(8, 2),
                                    nn.BAMSpatialGate(8, 2)], ids=lambda m: type(m).__name__)
def test_forward_names_expected_and_received_shapes(module):
    with pytest.raises(ValueError, match=r"expected 8 channels \(dim 1\), got 6"):
        module(np.zeros((2, 6, 5, 5), np.float32))
    with pytest.raises(ValueError, match="expected a 4-d input, got a 3-d input of shape"):
        module(np.zeros((8, 5, 5), np.float32))


def test_hidden_size_is_c_floor_r():
    """C not divisible by r: hidden = C // r, as the official code."""
    assert nn.ChannelGate(10, 4).fc0.out_features == 2
    assert nn.BAM(10, 4).spatial_gate.convs[0].out_channels == 2


def test_spatial_gate_with_pooling_accepts_any_channel_count():
    gate = nn.SpatialGate(3).double()
    assert gate(np.ones((2, 5, 4, 4))).shape == (2, 5, 4, 4)
    assert gate(np.ones((2, 9, 4, 4))).shape == (2, 9, 4, 4)


# --------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------
EXERCISES = {"2.2": cbam.channel_attention_logit, "3.4": cbam.spatial_attention_logit,
             "4.1": cbam.cbam_attention, "6.1": bam.bam_spatial_logit, "7.2": bam.bam_fuse}


# BEGIN INSTRUCTOR ONLY
# (about the solution regions, which the student edition does not have)
@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_exercise_is_registered_and_its_body_can_be_replaced(exercise_id):
    """The student edition swaps the marked region for a raise: the function's source must still compile."""
    function = EXERCISES[exercise_id]
    assert REGISTRY[exercise_id].function.__name__ == function.__name__ and function.exercise_id == exercise_id
    source = inspect.getsource(REGISTRY[exercise_id].function)
    assert source.count("# BEGIN SOLUTION") == 1 and source.count("# END SOLUTION") == 1
    student = re.sub(r"( *)# BEGIN SOLUTION.*?# END SOLUTION",
                     lambda m: f'{m.group(1)}raise NotImplementedError("Exercise {exercise_id}")', source,
                     flags=re.S)
    namespace = {"exercise": lambda *a: (lambda f: f)}
    exec(compile(student, "<student>", "exec"), cbam.__dict__ | bam.__dict__ | namespace)
# END INSTRUCTOR ONLY


def _t(array):
    return torch.tensor(array, requires_grad=True)


@pytest.mark.exercise("2.2", 1)
def test_exercise_2_2_channel_attention_logit_in_isolation(rng):
    descriptors = [rng.standard_normal((3, 6)) for _ in range(3)]
    w0, b0, w1, b1 = rng.standard_normal((2, 6)), rng.standard_normal(2), rng.standard_normal((6, 2)), \
        rng.standard_normal(6)
    ours = cbam.channel_attention_logit([Tensor(d) for d in descriptors], *map(Tensor, (w0, b0, w1, b1)))
    mlp = lambda d: torch.relu(torch.tensor(d) @ torch.tensor(w0).T + torch.tensor(b0)) @ torch.tensor(w1).T \
        + torch.tensor(b1)
    assert_close(ours.data, sum(mlp(d) for d in descriptors).numpy())


@pytest.mark.exercise("3.4", 1)
@pytest.mark.parametrize("k, with_bn", [(7, True), (3, False)])
def test_exercise_3_4_spatial_attention_logit_in_isolation(rng, k, with_bn):
    pooled = rng.standard_normal((2, 2, 6, 5))
    weight = rng.standard_normal((1, 2, k, k))
    bn = nn.BatchNorm2d(1).double() if with_bn else None
    ours = cbam.spatial_attention_logit(Tensor(pooled), Tensor(weight), bn)
    ref = torch.nn.functional.conv2d(torch.tensor(pooled), torch.tensor(weight), padding=k // 2)
    if with_bn:
        ref = torch.nn.functional.batch_norm(ref, None, None, training=True)
    assert_close(ours.data, ref.numpy())


@pytest.mark.exercise("4.1", 1)
@pytest.mark.parametrize("arrangement", cbam.ARRANGEMENTS)
def test_exercise_4_1_composition_matches_the_twin(arrangement, rng):
    module = interop.randomize(nn.CBAM(6, 2, arrangement=arrangement), 1).double()
    twin = interop.to_torch(module)
    x = rng.standard_normal((2, 6, 5, 5))
    ours = cbam.cbam_attention(Tensor(x), module.channel_gate, module.spatial_gate, arrangement)
    assert_close(ours.data, twin(torch.tensor(x)).detach().numpy())


@pytest.mark.exercise("6.1", 1)
def test_exercise_6_1_bam_spatial_logit_in_isolation(rng):
    x = rng.standard_normal((2, 4, 7, 6))
    convs = [(rng.standard_normal((2, 4, 1, 1)), rng.standard_normal(2)),
             (rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2)),
             (rng.standard_normal((1, 2, 1, 1)), rng.standard_normal(1))]
    ours = bam.bam_spatial_logit(Tensor(x), [tuple(map(Tensor, c)) for c in convs], [None, None, None], 3)
    F = torch.nn.functional
    h = torch.relu(F.conv2d(torch.tensor(x), *map(torch.tensor, convs[0])))
    h = torch.relu(F.conv2d(h, *map(torch.tensor, convs[1]), padding=3, dilation=3))
    assert_close(ours.data, F.conv2d(h, *map(torch.tensor, convs[2])).numpy())
    assert ours.shape == (2, 1, 7, 6)


@pytest.mark.exercise("7.2", 1)
@pytest.mark.parametrize("fusion", bam.FUSIONS + ("channel only", "spatial only"))
def test_exercise_7_2_fusion_in_isolation(fusion, rng):
    x, c, s = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3)), rng.standard_normal((2, 1, 4, 5))
    tx, tc, ts = _t(x), _t(c), _t(s)
    ours_c = None if fusion == "spatial only" else Tensor(c, requires_grad=True)
    ours_s = None if fusion == "channel only" else Tensor(s, requires_grad=True)
    ours_x = Tensor(x, requires_grad=True)
    out = bam.bam_fuse(ours_x, ours_c, ours_s, fusion if fusion in bam.FUSIONS else "sum")
    logit = {"sum": lambda: tc[:, :, None, None] + ts, "product": lambda: tc[:, :, None, None] * ts,
             "max": lambda: torch.maximum(tc[:, :, None, None], ts), "channel only": lambda: tc[:, :, None, None],
             "spatial only": lambda: ts}[fusion]()
    ref = tx + tx * torch.sigmoid(logit)
    upstream = rng.standard_normal(x.shape)
    out.backward(upstream)
    ref.backward(torch.tensor(upstream))
    assert_close(out.data, ref.detach().numpy(), name="output")
    assert_close(ours_x.grad, tx.grad.numpy(), name="dF")
    for ours_in, theirs_in, name in ((ours_c, tc, "dMc"), (ours_s, ts, "dMs")):
        if ours_in is not None:
            assert_close(ours_in.grad, theirs_in.grad.numpy(), name=name)


def test_bam_max_fusion_sends_the_tie_gradient_to_the_channel_logit():
    c = Tensor(np.array([[1.0]]), requires_grad=True)
    s = Tensor(np.array([[[[1.0, 0.0]]]]), requires_grad=True)
    out = bam.maximum(cbam.expand_channels(c), s)
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(out.data, [[[[1.0, 1.0]]]])
    np.testing.assert_array_equal(c.grad, [[2.0]])
    np.testing.assert_array_equal(s.grad, [[[[0.0, 0.0]]]])


# --------------------------------------------------------------------------
# Awkward inputs and random shapes
# --------------------------------------------------------------------------
def _compare_with_twin(module, x, backend_name="numpy"):
    """Max relative error over output, input grad and parameter grads vs the twin (one step, current mode)."""
    twin = interop.to_torch(module)
    ours_in, theirs_in = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    with backend(backend_name):
        out = module(ours_in)
        out.backward(np.ones(out.shape, x.dtype))
    ref = twin(theirs_in)
    ref.backward(torch.ones(ref.shape, dtype=ref.dtype))
    errors = [rel_error(out.data, ref.detach().numpy()), rel_error(ours_in.grad, theirs_in.grad.numpy())]
    theirs = dict(twin.named_parameters())
    errors += [rel_error(p.grad, theirs[k].grad.numpy()) for k, p in module.named_parameters()]
    return max(errors)


@pytest.mark.parametrize("build", [lambda: nn.CBAM(6, 2), lambda: nn.BAM(6, 2), lambda: nn.SE(6, 3)],
                         ids=["cbam", "bam", "se"])
def test_batch_of_one_in_eval_mode(build, backend_name):
    module = interop.randomize(build(), 2).double().eval()
    x = np.random.default_rng(0).standard_normal((1, 6, 5, 4))
    assert _compare_with_twin(module, x, backend_name) < TOLERANCE[np.dtype(np.float64)]


def test_large_magnitudes_saturate_without_overflow(backend_name):
    """|x| ~ 1e3: lse pooling and the sigmoids must not overflow (exp of large numbers)."""
    module = interop.randomize(nn.CBAM(6, 2, pool_types=("avg", "max", "lse")), 3).double()
    x = 1e3 * np.random.default_rng(1).standard_normal((2, 6, 4, 4))
    assert _compare_with_twin(module, x, backend_name) < TOLERANCE[np.dtype(np.float64)]


@given(n=st.integers(2, 3), c=st.integers(2, 12), h=st.integers(3, 7), w=st.integers(3, 7),
       r=st.integers(1, 4), k=st.sampled_from([1, 3, 5]), seed=st.integers(0, 2**16))
def test_cbam_random_shapes_match_the_twin(n, c, h, w, r, k, seed):
    r = min(r, c)
    module = interop.randomize(nn.CBAM(c, r, kernel_size=k), seed).double()
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    assert _compare_with_twin(module, x) < TOLERANCE[np.dtype(np.float64)]


@given(n=st.integers(2, 3), c=st.integers(2, 10), h=st.integers(2, 6), w=st.integers(2, 6),
       r=st.integers(1, 3), d=st.integers(1, 3), convs=st.integers(0, 2),
       fusion=st.sampled_from(bam.FUSIONS), seed=st.integers(0, 2**16))
def test_bam_random_shapes_match_the_twin(n, c, h, w, r, d, convs, fusion, seed):
    r = min(r, c)
    module = interop.randomize(nn.BAM(c, r, convs, d, fusion=fusion), seed).double()
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    assert _compare_with_twin(module, x) < TOLERANCE[np.dtype(np.float64)]


def test_fused_and_unfused_cbam_paths_agree():
    """The fused channel-gate-and-pool path equals channel gate then spatial gate, applied one after the other."""
    module = interop.randomize(nn.CBAM(8, 2), 4).double()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 8, 5, 5)))
    fused = module(x)
    unfused = module.spatial_gate(module.channel_gate(x))
    assert_close(fused.data, unfused.data)


def test_same_seed_same_module():
    nn.manual_seed(11)
    a = nn.BAM(8, 2).state_dict()
    nn.manual_seed(11)
    b = nn.BAM(8, 2).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_uses_only_ops():
    """Modules call minitorch_attn.ops, never a backend directly."""
    for module in (cbam, bam):
        source = inspect.getsource(module)
        assert "backends" not in source and "kernels" not in source
    # BEGIN INSTRUCTOR ONLY
    # (the solutions' bodies: the student edition has none)
    solution = inspect.getsource(cbam.cbam_attention.__wrapped__)
    assert ops.gated_channel_pool.__name__ in solution and ops.channel_spatial_gate.__name__ in solution
    assert ops.residual_gate.__name__ in inspect.getsource(bam.bam_fuse.__wrapped__)
    # END INSTRUCTOR ONLY
