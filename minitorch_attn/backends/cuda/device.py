"""Host-side plumbing of the CUDA kernels: is CUDA usable here, the launch configuration, and
the transfers (kernels take and return host ndarrays; only this module moves them)."""
from __future__ import annotations

import numpy as np
from numba import config, cuda

#: Capacity of the shared scratch arrays of the tree reductions, hence the largest block.
MAX_THREADS_PER_BLOCK = 256
#: Threads per block of every launch: a power of two <= MAX_THREADS_PER_BLOCK. The tests lower it,
#: since the simulator runs one Python thread per CUDA thread.
threads_per_block = 128
#: Grid-stride kernels never launch more blocks than this; each thread then handles several elements.
MAX_BLOCKS = 4096


def _make_simulator_shared_arrays_atomic():
    """Work around a race in numba-cuda 0.30.4's simulator (``FakeCUDAShared.array``).

    It finds a block's shared array by the calling line with check-then-set: two of a
    block's Python threads can both miss, each allocate, and then reduce into different
    arrays (seen as a wrong max in a tree reduction about once in a few hundred runs).
    ``dict.setdefault`` is atomic under the GIL, so every thread gets the same array.
    """
    import sys
    import traceback

    from numba.cuda.simulator import kernelapi

    original = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe())[-2][0:2])
        return self._allocations.setdefault(caller, np.empty(shape, dtype))

    kernelapi.FakeCUDAShared.array = array


if config.ENABLE_CUDASIM:
    _make_simulator_shared_arrays_atomic()


def availability():
    """None when kernels can run here (a GPU, or the simulator), else what to do about it."""
    if cuda.is_available():
        return None
    return ("no CUDA GPU found. To try the CUDA kernels without a GPU, set NUMBA_ENABLE_CUDASIM=1 before "
            "numba or minitorch_attn is imported (e.g. `NUMBA_ENABLE_CUDASIM=1 make test`, or "
            "os.environ['NUMBA_ENABLE_CUDASIM'] = '1' in the first notebook cell); on a machine with an "
            "NVIDIA GPU install the GPU extra: pip install -e .[gpu]")


def _next_power_of_two(n):
    return 1 << max(n - 1, 0).bit_length()


def launch(kernel, *, items=None, blocks=None, reduce_over=None):
    """``kernel[grid, block]`` for the two kinds of work in this module.

    ``items=n``: element-wise work on n elements, grid-stride loop.
    ``blocks=b, reduce_over=m``: one block per output value (b of them), whose
    threads share that value's m inputs and then tree-reduce (a power of two).
    """
    if not 1 <= threads_per_block <= MAX_THREADS_PER_BLOCK or threads_per_block & (threads_per_block - 1):
        raise ValueError(f"backends.cuda.device.threads_per_block must be a power of two <= {MAX_THREADS_PER_BLOCK}, "
                         f"got {threads_per_block}")
    if items is not None:
        threads = min(threads_per_block, _next_power_of_two(items))
        blocks = min(-(-items // threads), MAX_BLOCKS)
    else:
        threads = min(threads_per_block, _next_power_of_two(reduce_over))
    if blocks == 0:  # empty input: nothing to compute, and CUDA refuses an empty grid
        return lambda *args: None
    return kernel[blocks, threads]


def upload(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def _check_not_empty(kernel, name, shape, axes, axis_names):
    """A max (or log-sum-exp) over no elements has no value: raise as NumPy's reductions do."""
    if any(shape[axis] == 0 for axis in axes):
        raise ValueError(f"{kernel}: {name} must have at least one element along {axis_names} to take a max "
                         f"over, got {name} of shape {tuple(shape)}")
