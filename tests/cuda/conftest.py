"""CUDA test set-up: who may run here, and settings that keep the simulator fast.

``cudasim`` tests need numba's CUDA in *this* process: a GPU, or the simulator,
which numba only enables when NUMBA_ENABLE_CUDASIM=1 is set before it is first
imported (hence a separate pytest process in ``make test``). ``gpu`` tests need
a real GPU.
"""
import sys

import pytest

from cuda_cases import CUDA_RUNS, REAL_GPU, SIMULATOR

if SIMULATOR:
    # The simulator runs one Python thread per CUDA thread and parks them at every
    # syncthreads(); switching the GIL more often makes the barriers 4-7x faster.
    sys.setswitchinterval(1e-4)


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="numba's CUDA is not available in this process: run "
                                      "`NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/cuda` (or use a GPU)")
    no_gpu = pytest.mark.skip(reason="needs a real CUDA GPU (the simulator is too slow for these shapes)")
    for item in items:
        if "cudasim" in item.keywords and not CUDA_RUNS:
            item.add_marker(no_cuda)
        if "gpu" in item.keywords and not REAL_GPU:
            item.add_marker(no_gpu)


@pytest.fixture
def cuda_kernels():
    """The CUDA backend with small blocks (8 threads) so that reductions loop AND tree-reduce."""
    from minitorch_attn.backends import cuda as cuda_backend
    from minitorch_attn.backends.cuda import device

    saved = device.threads_per_block
    device.threads_per_block = 8
    yield cuda_backend
    device.threads_per_block = saved
