"""Every attention module of the parity table on the CUDA backend, against its PyTorch twin.

The same cases as ``python -m minitorch_attn.interop --table`` (numpy and numba run them in the
default process), on a batch of 2 and 3×4 maps so that the simulator stays fast.
"""
import numpy as np
import pytest

from minitorch_attn import interop
from minitorch_attn.testing import TOLERANCE

pytestmark = pytest.mark.cudasim


@pytest.mark.parametrize("case", interop.PARITY_CASES, ids=[c.id for c in interop.PARITY_CASES])
def test_module_matches_torch_on_cuda(cuda_kernels, case):
    dtype = np.dtype(np.float64)
    errors = interop.parity_errors(case, dtype, "cuda", batch=2, size=(3, 4))
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE[dtype], f"{case.id} on cuda: {worst} off by {errors[worst]:.2g}: {errors}"
