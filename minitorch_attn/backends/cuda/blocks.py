"""Device functions every reduction kernel shares: the block-wide tree sum and first maximum
(NaN-aware), and the overflow-free sigmoid."""
import math

from numba import cuda


@cuda.jit(device=True)
def _block_sum(partial, scratch):
    """Sum of every thread's ``partial`` over the block (blockDim a power of two), by halving:
    thread t adds in thread t + half, so the order of the additions never changes."""
    t = cuda.threadIdx.x
    scratch[t] = partial
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            scratch[t] += scratch[t + half]
        cuda.syncthreads()
        half //= 2
    total = scratch[0]
    cuda.syncthreads()  # everyone has read scratch[0] before a following reduction reuses it
    return total


@cuda.jit(device=True)
def _beats(value, index, best, best_index):
    """First-maximum order: a NaN beats every number, a larger value wins, and between
    equal values (or two NaNs) the smaller index wins."""
    if value != value:
        return best == best or index < best_index
    if best != best:
        return False
    return value > best or (value == best and index < best_index)


@cuda.jit(device=True)
def _block_first_max(value, index, values, indices):
    """(max, index of its first occurrence) over the threads' candidates, by halving."""
    t = cuda.threadIdx.x
    values[t] = value
    indices[t] = index
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half and _beats(values[t + half], indices[t + half], values[t], indices[t]):
            values[t] = values[t + half]
            indices[t] = indices[t + half]
        cuda.syncthreads()
        half //= 2
    best, best_index = values[0], indices[0]
    cuda.syncthreads()
    return best, best_index


@cuda.jit(device=True)
def _sigmoid(z):
    # exp() only ever sees -|z|, so it cannot overflow (as in numpy_backend.sigmoid_forward)
    e = math.exp(-abs(z))
    return 1 / (1 + e) if z >= 0 else e / (1 + e)
