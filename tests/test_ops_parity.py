"""Every op against PyTorch autograd: forward, every input gradient and running buffers, on hypothesis shapes.

The ops, their PyTorch counterparts and the input makers are ``minitorch_attn.parity.CASES``, the same
table ``python -m minitorch_attn.parity`` prints.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minitorch_attn import ops, parity
from minitorch_attn.parity import CASES, Draw, OpCase, Sample, compare
from minitorch_attn.testing import TOLERANCE


def hypothesis_draw(data, dtype, ties=False):
    seed = data.draw(st.integers(0, 2**32 - 1), label="value seed")
    return Draw(lambda low, high: data.draw(st.integers(low, high)), seed, dtype, ties)


def assert_within_tolerance(case, sample, errors, dtype):
    too_large = {k: f"{e:.2e}" for k, e in errors.items() if not e <= TOLERANCE[dtype]}
    assert not too_large, f"{case.name} [{sample.describe()}] {dtype}: {too_large} > {TOLERANCE[dtype]:.0e}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_matches_torch(case, dtype, backend_name, data):
    ties = case.ties and data.draw(st.booleans(), label="integer inputs with ties")
    sample = case.make(hypothesis_draw(data, dtype, ties))
    grad_seed = data.draw(st.integers(0, 2**16), label="upstream seed")
    assert_within_tolerance(case, sample, compare(case, sample, backend_name, grad_seed), dtype)


def test_table_covers_every_op_of_the_package():
    """A new op in ``minitorch_attn.ops`` without a parity case fails here."""
    covered = {case.ours for case in CASES} | {ops.concat, ops.mul, ops.add, ops.batch_norm}
    public = [getattr(ops, name) for name in dir(ops) if not name.startswith("_")]
    functions = {f for f in public if callable(f) and not isinstance(f, type)
                 and getattr(f, "__module__", "").startswith(ops.__name__)}
    helpers = {ops.same_padding, ops.update_running_stats}
    assert functions - helpers - covered == set()


def test_parity_table_numpy_within_tolerance():
    rows = parity.parity_table("numpy", seed=0)
    assert {row.label for row in rows} >= {case.name for case in CASES} | {"global_max_pool (ties)"}
    failing = [(row.label, row.errors, row.problems) for row in rows if not row.within_tolerance()]
    assert not failing


def test_parity_table_flags_a_wrong_op(capsys, monkeypatch):
    """The table is not a rubber stamp: an op that is off by a little fails, and so does one that raises."""
    def off_by_a_little(x):
        return ops.mul(ops.sigmoid(x), 1 + 1e-6)

    def raising(x):
        raise RuntimeError("kernel exploded")

    sigmoid = parity.CASES_BY_NAME["sigmoid"]
    cases = (OpCase("nearly sigmoid", off_by_a_little, sigmoid.theirs, sigmoid.make),
             OpCase("broken", raising, sigmoid.theirs, sigmoid.make))
    rows = parity.parity_table("numpy", seed=1, cases=cases)
    assert [row.within_tolerance() for row in rows] == [False, False]
    assert rows[0].errors[np.dtype(np.float64)] > TOLERANCE[np.dtype(np.float64)]
    assert rows[0].errors[np.dtype(np.float32)] <= TOLERANCE[np.dtype(np.float32)]  # 1e-6 is within float32's
    assert "kernel exploded" in rows[1].problems[0]

    monkeypatch.setattr(parity, "CASES", cases)
    assert parity.main(["--backend", "numpy", "--samples", "1"]) == 1
    printed = capsys.readouterr().out
    assert "nearly sigmoid" in printed and "!" in printed and "kernel exploded" in printed


def test_parity_command_prints_the_table(capsys):
    assert parity.main(["--backend", "numpy", "--seed", "3", "--samples", "1"]) == 0
    printed = capsys.readouterr().out
    assert "seed 3" in printed and "all " in printed and "within tolerance" in printed
    assert all(case.name in printed for case in CASES)


def test_parity_table_is_deterministic():
    case = parity.CASES_BY_NAME["conv2d"]
    first = parity.parity_table("numpy", seed=5, samples=2, cases=(case,))
    second = parity.parity_table("numpy", seed=5, samples=2, cases=(case,))
    assert first[0].errors == second[0].errors


def test_compare_detects_an_op_that_writes_into_its_input():
    def in_place_relu(x):
        np.maximum(x.data, 0, out=x.data)
        return ops.relu(x)

    relu = parity.CASES_BY_NAME["relu"]
    sample = Sample({"x": np.random.default_rng(0).standard_normal((3, 4))})
    with pytest.raises(AssertionError, match="changed its input 'x'"):
        compare(OpCase("in-place relu", in_place_relu, relu.theirs, relu.make), sample)


def test_draw_makes_non_contiguous_inputs():
    """The parity tests would miss stride bugs if the maker never produced a non-contiguous view."""
    layouts = set()
    for seed in range(30):
        x = Draw.seeded(seed, np.float64).values(2, 3, 4)
        layouts.add((x.flags.c_contiguous, x.flags.f_contiguous))
    assert layouts == {(True, False), (False, True), (False, False)}
