"""Interop with PyTorch: the official CBAM/BAM layout, and the PyTorch twins of our modules.

The ``Official*`` classes (:mod:`minitorch_attn.official_torch`, shared with lesson 8) rebuild the structure of
the official code (Jongchan/attention-module, MODELS/cbam.py and bam.py) from its description in papers.md
(module names, [max, mean] channel pool, BasicConv's BN with momentum 0.01, BAM's product fusion and
square-input pooling), independently of :mod:`minitorch_attn.interop`, so that loading their state dicts
checks the mapping.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn as tnn

from minitorch_attn import Tensor, backend, interop, nn
from minitorch_attn.nn.module import StateDictError
from minitorch_attn.official_torch import (
    OfficialCBAMChannelGate, OfficialCBAMSpatialGate, OfficialCBAM, OfficialBAM, randomize_torch,
)
from minitorch_attn.testing import TOLERANCE, assert_close, rel_error


# (id, official builder, our builder, input channels). Square inputs: the official BAM pools with a square window.
OFFICIAL_CASES = [
    ("cbam", lambda: OfficialCBAM(8, 4), lambda: nn.CBAM(8, 4), 8),
    ("cbam-all-pools", lambda: OfficialCBAM(8, 4, ("avg", "max", "lp", "lse")),
     lambda: nn.CBAM(8, 4, ("avg", "max", "lp", "lse")), 8),
    ("cbam-max-avg", lambda: OfficialCBAM(8, 4, ("max", "avg")), lambda: nn.CBAM(8, 4, ("max", "avg")), 8),
    ("cbam-k3-C10", lambda: OfficialCBAM(10, 4, kernel_size=3), lambda: nn.CBAM(10, 4, kernel_size=3), 10),
    ("cbam-no-spatial", lambda: OfficialCBAM(8, 2, no_spatial=True), lambda: nn.CBAM(8, 2, no_spatial=True), 8),
    ("cbam-channel-gate", lambda: OfficialCBAMChannelGate(8, 4, ("avg", "max")), lambda: nn.ChannelGate(8, 4), 8),
    ("cbam-spatial-gate", lambda: OfficialCBAMSpatialGate(7), lambda: nn.SpatialGate(7), 8),
    ("bam", lambda: OfficialBAM(8, 4), lambda: nn.BAM(8, 4, fusion="product"), 8),
    ("bam-d2-one-conv-C10", lambda: OfficialBAM(10, 4, 1, 2),
     lambda: nn.BAM(10, 4, dilation_conv_num=1, dilation_val=2, fusion="product"), 10),
]


def _official_pair(case, dtype, seed=0):
    _, build_official, build_ours, channels = case
    official = randomize_torch(build_official(), seed).to({np.float32: torch.float32,
                                                           np.float64: torch.float64}[dtype.type])
    ours = interop.load_official(build_ours().to(dtype), official.state_dict())
    return official, ours, channels


# Ties only matter where there is a max: the CBAM cases (BAM has none).
PARITY_INPUTS = [(case, ties) for case in OFFICIAL_CASES for ties in (False, True)
                 if not ties or case[0].startswith("cbam")]


def _run_official(official, x, upstream, training):
    """{quantity: array} for one train or eval step of a torch module (its state advances)."""
    official.train(training).zero_grad()
    x = torch.tensor(x, requires_grad=True)
    out = official(x)
    out.backward(torch.from_numpy(upstream))
    values = {"output": out.detach().numpy(), "input grad": x.grad.numpy()}
    values.update({f"grad of {k}": p.grad.numpy() for k, p in official.named_parameters()})
    values.update({k: b.numpy().copy() for k, b in official.named_buffers() if not k.endswith("num_batches_tracked")})
    return values


def _run_ours(ours, names, x, upstream, training, backend_name):
    """The same quantities for our module, keyed and laid out as the official ones."""
    ours.train(training).zero_grad()
    x = Tensor(x.copy(), requires_grad=True)
    with backend(backend_name):
        out = ours(x)
        out.backward(upstream)
    values = {"output": out.data, "input grad": x.grad}
    params, state = dict(ours.named_parameters()), ours.state_dict()
    for key, (our_key, swap) in names.items():
        value = params[our_key].grad if our_key in params else state[our_key]
        values[f"grad of {key}" if our_key in params else key] = value[:, ::-1] if swap else value
    return values


@pytest.mark.parametrize("case, ties", PARITY_INPUTS,
                         ids=[f"{c[0]}-{'ties' if t else 'random'}" for c, t in PARITY_INPUTS])
def test_official_structure_parity(case, ties, dtype, backend_name):
    """Official weights loaded into our module: same outputs, input grads, parameter grads and running
    statistics as the official torch module, in train then eval mode.

    float64: within 1e-10 of torch float64. float32: ours and torch's float32 results are both compared with
    torch's float64 result on the same weights; ours must be within max(1e-5, 3 × torch float32's own error).
    (Deep BN chains with C // r = 2 put torch's own float32 gradients ~1e-5 off, so a direct 1e-5 match
    between two float32 implementations would test rounding luck.)
    """
    official, ours, channels = _official_pair(case, dtype)
    exact = copy.deepcopy(official).double()
    names = interop.official_names(ours)
    rng = np.random.default_rng(1)
    shape = (4, channels, 6, 6)
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)
    for training in (True, False):
        mode = "train" if training else "eval"
        mine = _run_ours(ours, names, x, upstream, training, backend_name)
        truth = _run_official(exact, x.astype(np.float64), upstream.astype(np.float64), training)
        theirs = _run_official(official, x, upstream, training) if dtype == np.float32 else truth
        assert set(mine) == set(truth)
        for quantity, value in truth.items():
            tol = max(TOLERANCE[dtype], 3 * rel_error(theirs[quantity], value))
            assert_close(mine[quantity], value, tol, f"{mode} {quantity}")


def test_official_bam_sum_differs_from_product():
    """The paper's sum fusion is a different function: loading official weights into it changes the output."""
    official, ours, channels = _official_pair(OFFICIAL_CASES[7], np.dtype(np.float64))
    paper = interop.load_official(nn.BAM(8, 4, fusion="sum").double(), official.state_dict()).eval()
    x = np.random.default_rng(2).standard_normal((2, channels, 6, 6))
    assert rel_error(paper(x).data, ours.eval()(x).data) > 1e-3


def test_load_official_accepts_module_prefix_numpy_and_prefix_selection():
    official = randomize_torch(OfficialCBAM(8, 4), 3).double()
    reference = interop.load_official(nn.CBAM(8, 4).double(), official.state_dict())
    wrapped = {f"module.layer1.0.cbam.{k}": v.numpy() for k, v in official.state_dict().items()}
    wrapped["module.layer1.0.conv1.weight"] = np.zeros((8, 8, 3, 3))  # outside the selected block
    loaded = interop.load_official(nn.CBAM(8, 4).double(), wrapped, prefix="layer1.0.cbam.")
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)


def test_load_official_lists_missing_unexpected_and_misshaped_keys():
    state = dict(OfficialCBAM(8, 4).state_dict())
    del state["SpatialGate.spatial.bn.running_var"]
    state["SpatialGate.spatial.bn.extra"] = torch.zeros(1)
    state["ChannelGate.mlp.1.weight"] = torch.zeros(3, 8)
    with pytest.raises(StateDictError) as info:
        interop.load_official(nn.CBAM(8, 4), state)
    message = str(info.value)
    assert "missing keys (1): SpatialGate.spatial.bn.running_var" in message
    assert "unexpected keys (1): SpatialGate.spatial.bn.extra" in message
    assert "ChannelGate.mlp.1.weight (expected (2, 8), got (3, 8))" in message


def test_load_official_refuses_variants_the_official_code_lacks():
    with pytest.raises(ValueError, match="conv1x1"):
        interop.load_official(nn.CBAM(8, 4, compress="conv1x1"), {})
    with pytest.raises(ValueError, match="bn_placement='paper'"):
        interop.load_official(nn.BAM(8, 4, bn_placement="paper"), {})
    with pytest.raises(TypeError, match="Linear"):
        interop.load_official(nn.Linear(2, 2), {})


@pytest.mark.parametrize("case", OFFICIAL_CASES, ids=[c[0] for c in OFFICIAL_CASES])
def test_to_official_round_trip_is_exact_and_loads_into_the_official_module(case):
    _, build_official, build_ours, channels = case
    ours = interop.randomize(build_ours(), 5).double()
    exported = interop.to_official(ours)
    again = interop.load_official(build_ours().double(), exported)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value)
    official = build_official().double()
    official.load_state_dict(exported)  # strict: every official key present, num_batches_tracked filled in
    x = np.random.default_rng(0).standard_normal((2, channels, 6, 6))
    assert_close(ours.eval()(x).data, official.eval()(torch.from_numpy(x)).detach().numpy())


def test_to_official_numpy_values():
    exported = interop.to_official(nn.CBAM(8, 4), as_torch=False)
    assert all(isinstance(v, np.ndarray) for v in exported.values())
    assert exported["SpatialGate.spatial.conv.weight"].shape == (1, 2, 7, 7)


# --------------------------------------------------------------------------
# Twins of our own modules
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", interop.PARITY_CASES, ids=[c.id for c in interop.PARITY_CASES])
def test_parity_table_row_within_tolerance(case, dtype, backend_name):
    """Each row of ``python -m minitorch_attn.interop --table``: module vs its PyTorch twin."""
    errors = interop.parity_errors(case, dtype, backend_name)
    tol = TOLERANCE[dtype]
    assert max(errors.values()) <= tol, f"{case.id} {dtype} on {backend_name}: {errors}"


def test_parity_table_prints_and_reports_success(capsys):
    cases = interop.PARITY_CASES[:1]
    rows = interop.parity_table(backend_names=["numpy"], cases=cases)
    table = interop.format_parity_table(rows, detail=True)
    assert table.count("\n") == 1 + len(rows) and "| NO |" not in table
    assert "numpy: param grads" in table.splitlines()[0]


@pytest.mark.parametrize("build", [
    lambda: nn.CBAM(8, 4, arrangement="parallel", compress="conv1x1"),
    lambda: nn.BAM(8, 4, fusion="max", bn_placement="paper"),
    lambda: nn.SE(8, 2),
    lambda: nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16, 3), nn.Sigmoid()),
], ids=["cbam", "bam", "se", "sequential"])
def test_to_torch_from_torch_round_trip(build, dtype):
    ours = interop.randomize(build(), 7).to(dtype).eval()
    twin = interop.to_torch(ours)
    assert not twin.training
    back = interop.from_torch(twin)
    assert type(back) is type(ours) and back.dtype == dtype and not back.training
    assert repr(back) == repr(ours)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value)
    x = np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(dtype)
    assert_close(ours(x).data, twin(torch.from_numpy(x)).detach().numpy())


def test_from_torch_rejects_unknown_modules():
    with pytest.raises(TypeError, match="GELU"):
        interop.from_torch(tnn.GELU())
    with pytest.raises(TypeError, match="to_torch"):
        interop.to_torch(type("Custom", (nn.Module,), {})())
