"""NaN, ±inf and empty inputs on the NumPy and Numba backends, against PyTorch (cases in nonfinite_cases.py;
the CUDA backend runs the same cases in cuda/test_cuda_nonfinite.py)."""
import numpy as np
import pytest

from minitorch_attn import backends

from nonfinite_cases import EMPTY_CASES, OPS, PLACEMENTS, run_case, run_empty_case, run_module_case

CPU_BACKENDS = [name for name in ("numpy", "numba") if backends.is_available(name)]
needs_numba = pytest.mark.skipif("numba" not in CPU_BACKENDS, reason="numba is not installed")


@pytest.mark.parametrize("position, odd", PLACEMENTS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_nan_and_inf_propagate_as_in_pytorch(backend_name, op, position, odd):
    run_case(backend_name, op, position, odd, np.float32)


@needs_numba
@pytest.mark.parametrize("op", ["global_max_pool", "channel_max", "gated_channel_pool", "cross_entropy"])
def test_nan_first_in_float64(op):
    run_case("numba", op, "first", "nan", np.float64)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", EMPTY_CASES)
def test_empty_reductions_raise_or_return_as_numpy_does(name, dtype):
    run_empty_case("numba", name, dtype)


@pytest.mark.parametrize("pool_types", [("max",), ("avg", "max", "lse")])
@pytest.mark.parametrize("backend_name", CPU_BACKENDS)
def test_channel_gate_with_a_leading_nan_matches_pytorch(backend_name, pool_types):
    run_module_case(backend_name, pool_types)
