"""NaN, ±inf and empty inputs on the CUDA backend, against PyTorch (the cases of ../nonfinite_cases.py;
run under the simulator: `NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/cuda`, or on a GPU)."""
import numpy as np
import pytest

from nonfinite_cases import EMPTY_CASES, OPS, PLACEMENTS, run_case, run_empty_case, run_module_case

pytestmark = pytest.mark.cudasim
#: The simulator is slow (a Python thread per CUDA thread): a NaN first and two NaNs (the first must
#: win), and +inf last, which the CPU tests run at every position.
CUDA_PLACEMENTS = [placement for placement in PLACEMENTS if placement in {("first", "nan"), ("two", "nan"),
                                                                          ("last", "+inf")}]


@pytest.mark.parametrize("position, odd", CUDA_PLACEMENTS)
@pytest.mark.parametrize("op", OPS)
def test_nan_and_inf_propagate_as_in_pytorch(cuda_kernels, op, position, odd):
    run_case("cuda", op, position, odd, np.float32)


@pytest.mark.parametrize("name", EMPTY_CASES)
def test_empty_reductions_raise_or_return_as_numpy_does(cuda_kernels, name):
    run_empty_case("cuda", name, np.float32)


def test_channel_gate_with_a_leading_nan_matches_pytorch(cuda_kernels):
    run_module_case("cuda", ("max",))
