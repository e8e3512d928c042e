"""The CUDA backend: every kernel of ``numpy_backend`` as a Numba ``@cuda.jit`` kernel.

Which CUDA is this? ``from numba import cuda`` resolves to the NVIDIA-maintained
``numba-cuda`` package (``cuda.implementation == "NVIDIA"``): numba-cuda installs
an import hook (``_numba_cuda_redirector.pth``) that redirects ``numba.cuda`` to
it. Its ``__init__`` reads ``NUMBA_ENABLE_CUDASIM`` once, at import: when set it
loads numba-cuda's own ``numba.cuda.simulator``, which runs every CUDA
thread as a Python thread and makes ``cuda.is_available()`` True without a GPU.
Without a GPU and without the simulator the import still succeeds, kernels are
only compiled lazily, and :func:`availability` says what to do.

How the kernels map work onto threads (all deterministic: no atomics, every
reduction adds in a fixed order, so repeated runs give identical bits; another
``threads_per_block`` regroups the partial sums, which moves only the last bits):

* element-wise work: a grid-stride loop, ``for k in range(cuda.grid(1), size, cuda.gridsize(1))``;
* reductions (pools, batch-norm statistics, weight/bias/gate gradients): one
  block per output value; its threads stride over the inputs of that value, then
  a shared-memory tree reduction (:func:`_block_sum`, :func:`_block_first_max`);
* convolution: one thread per output element (forward), per input element (dx,
  gathering over the taps that touched it) and one block per weight element (dW).

Accumulators are float64 (also for float32 data): the shared scratch arrays need
a dtype fixed at compile time, and float64 keeps float32 sums well inside 1e-5.
Every max propagates NaN as NumPy and PyTorch do: a NaN beats every number, and the
first NaN wins (:func:`_beats`). A max over no elements raises, as NumPy's does.

Kernels take and return host ndarrays (``cuda.to_device`` / ``copy_to_host``
happen here), so ops and modules do not know the data visited a GPU.
"""
from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from ..exercise import exercise
from .numpy_backend import conv_output_size

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


# --------------------------------------------------------------------------
# Launch configuration and transfers (the only host-side plumbing)
# --------------------------------------------------------------------------
def _next_power_of_two(n):
    return 1 << max(n - 1, 0).bit_length()


def _launch(kernel, *, items=None, blocks=None, reduce_over=None):
    """``kernel[grid, block]`` for the two kinds of work in this module.

    ``items=n``: element-wise work on n elements, grid-stride loop.
    ``blocks=b, reduce_over=m``: one block per output value (b of them), whose
    threads share that value's m inputs and then tree-reduce (a power of two).
    """
    if not 1 <= threads_per_block <= MAX_THREADS_PER_BLOCK or threads_per_block & (threads_per_block - 1):
        raise ValueError(f"cuda_backend.threads_per_block must be a power of two <= {MAX_THREADS_PER_BLOCK}, "
                         f"got {threads_per_block}")
    if items is not None:
        threads = min(threads_per_block, _next_power_of_two(items))
        blocks = min(-(-items // threads), MAX_BLOCKS)
    else:
        threads = min(threads_per_block, _next_power_of_two(reduce_over))
    if blocks == 0:  # empty input: nothing to compute, and CUDA refuses an empty grid
        return lambda *args: None
    return kernel[blocks, threads]


def _to_device(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def _on_device(shape, dtype):
    return cuda.device_array(shape, dtype)


# --------------------------------------------------------------------------
# Block-level building blocks (device functions)
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Global pooling over H×W. x is viewed as rows (N*C, H*W); block r owns row r.
# --------------------------------------------------------------------------
@cuda.jit
def _global_sum_kernel(x, l2, out):
    """Average pool out[r] = sum_k x[r,k] / (H*W), or with ``l2`` the L2 pool out[r] = sqrt(sum_k x[r,k]^2)."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    r = cuda.blockIdx.x
    partial = 0.0
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += x[r, k] * x[r, k] if l2 else x[r, k]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[r] = math.sqrt(total) if l2 else total / x.shape[1]


@cuda.jit
def _global_max_kernel(x, out, index):
    """out[r] = max_k x[r,k], index[r] = the first k where it occurs."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    best, best_k = -math.inf, x.shape[1]  # sentinel index: any real element beats it
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    best, best_k = _block_first_max(best, best_k, values, indices)
    if cuda.threadIdx.x == 0:
        out[r] = best
        index[r] = best_k


@cuda.jit
def _global_lse_kernel(x, out):
    """out[r] = m + log(sum_k exp(x[r,k] - m)) with m = max_k x[r,k], so exp() never overflows;
    an infinite m is replaced by 0 (PyTorch's logsumexp: +inf gives +inf, not inf - inf = NaN)."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    best, best_k = -math.inf, x.shape[1]
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    peak, _ = _block_first_max(best, best_k, values, indices)
    if math.isinf(peak):
        peak = 0.0
    partial = 0.0
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += math.exp(x[r, k] - peak)
    total = _block_sum(partial, values)
    if cuda.threadIdx.x == 0:
        out[r] = peak + math.log(total)


@cuda.jit
def _global_avg_max_kernel(x, avg, peak, index):
    """CBAM's two descriptors in ONE read of x: avg[r] = mean_k x[r,k] and the first max."""
    sums = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    r = cuda.blockIdx.x
    partial, best, best_k = 0.0, -math.inf, x.shape[1]
    for k in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        partial += x[r, k]
        if _beats(x[r, k], k, best, best_k):
            best, best_k = x[r, k], k
    total = _block_sum(partial, sums)
    best, best_k = _block_first_max(best, best_k, values, indices)
    if cuda.threadIdx.x == 0:
        avg[r] = total / x.shape[1]
        peak[r] = best
        index[r] = best_k


@cuda.jit
def _global_pool_backward_kernel(grad_avg, grad_max, index, dx):
    """dx[r,k] = grad_avg[r] / (H*W) + (grad_max[r] if k is row r's first max else 0)."""
    rows, size = dx.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        value = grad_avg[r] / size
        if k == index[r]:
            value += grad_max[r]
        dx[r, k] = value


@cuda.jit
def _global_lp_backward_kernel(grad, x, out, dx):
    """dx = g * x / out (d sqrt(sum x^2) / dx); 0 where out == 0, as in numpy_backend."""
    rows, size = x.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        dx[r, k] = grad[r] / out[r] * x[r, k] if out[r] > 0 else 0


@cuda.jit
def _global_lse_backward_kernel(grad, x, out, dx):
    """dx = g * exp(x - lse): the softmax of the row, scaled by g."""
    rows, size = x.shape
    for flat in range(cuda.grid(1), rows * size, cuda.gridsize(1)):
        r, k = flat // size, flat % size
        dx[r, k] = grad[r] * math.exp(x[r, k] - out[r])


def _rows(x):
    N, C, H, W = x.shape
    return x.reshape(N * C, H * W)


def _check_not_empty(kernel, name, shape, axes, axis_names):
    """A max (or log-sum-exp) over no elements has no value: raise as NumPy's reductions do."""
    if any(shape[axis] == 0 for axis in axes):
        raise ValueError(f"{kernel}: {name} must have at least one element along {axis_names} to take a max "
                         f"over, got {name} of shape {tuple(shape)}")


def _global_reduce(kernel, x, *args, outputs):
    """Run a one-block-per-(n,c) kernel; ``outputs`` are the dtypes of its (N, C) results."""
    N, C, H, W = x.shape
    (d_x,) = _to_device(_rows(x))
    results = [_on_device(N * C, dtype) for dtype in outputs]
    _launch(kernel, blocks=N * C, reduce_over=H * W)(d_x, *args, *results)
    return tuple(r.copy_to_host().reshape(N, C) for r in results)


def _global_pool_backward(grad_avg, grad_max, index, shape):
    N, C, H, W = shape
    d_avg, d_max, d_index = _to_device(grad_avg.reshape(-1), grad_max.reshape(-1), index.reshape(-1))
    dx = _on_device((N * C, H * W), grad_avg.dtype)
    _launch(_global_pool_backward_kernel, items=dx.size)(d_avg, d_max, d_index, dx)
    return dx.copy_to_host().reshape(shape)


def _global_elementwise_backward(kernel, grad, x, out):
    d_grad, d_x, d_out = _to_device(grad.reshape(-1), _rows(x), out.reshape(-1))
    dx = _on_device(d_x.shape, x.dtype)
    _launch(kernel, items=dx.size)(d_grad, d_x, d_out, dx)
    return dx.copy_to_host().reshape(x.shape)


def global_avg_pool_forward(x):
    return _global_reduce(_global_sum_kernel, x, False, outputs=[x.dtype])[0]


def global_avg_pool_backward(grad, shape):
    # the fused backward with no max gradient (index -1 matches no pixel)
    return _global_pool_backward(grad, np.zeros_like(grad), np.full(grad.shape, -1, np.int64), shape)


def global_max_pool_forward(x):
    _check_not_empty("global_max_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_max_kernel, x, outputs=[x.dtype, np.int64])


def global_max_pool_backward(grad, index, shape):
    return _global_pool_backward(np.zeros_like(grad), grad, index, shape)


def global_lp_pool_forward(x):
    return _global_reduce(_global_sum_kernel, x, True, outputs=[x.dtype])[0]


def global_lp_pool_backward(grad, x, out):
    return _global_elementwise_backward(_global_lp_backward_kernel, grad, x, out)


def global_lse_pool_forward(x):
    _check_not_empty("global_lse_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_lse_kernel, x, outputs=[x.dtype])[0]


def global_lse_pool_backward(grad, x, out):
    return _global_elementwise_backward(_global_lse_backward_kernel, grad, x, out)


# --------------------------------------------------------------------------
# Pooling over channels. x is viewed as (N, C, P) with P = H*W pixels;
# block b owns pixel (n, p) = (b // P, b % P) and its threads share the channels.
# --------------------------------------------------------------------------
@cuda.jit
def _channel_mean_kernel(x, out):
    """out[n, p] = (1/C) sum_c x[n, c, p]."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial = 0.0
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        partial += x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[n, p] = total / C


@cuda.jit
def _channel_max_kernel(x, out, index):
    """out[n, p] = max_c x[n, c, p]; index[n, p] = the first channel where it occurs."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    best, best_c = -math.inf, C
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        if _beats(x[n, c, p], c, best, best_c):
            best, best_c = x[n, c, p], c
    best, best_c = _block_first_max(best, best_c, values, indices)
    if cuda.threadIdx.x == 0:
        out[n, p] = best
        index[n, p] = best_c


@cuda.jit
def _channel_pool_backward_kernel(grad_mean, grad_max, index, dx):
    """dx[n,c,p] = grad_mean[n,p] / C + (grad_max[n,p] if c is the first maximal channel else 0)."""
    N, C, P = dx.shape
    for flat in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, p = flat // (C * P), flat // P % C, flat % P
        value = grad_mean[n, p] / C
        if c == index[n, p]:
            value += grad_max[n, p]
        dx[n, c, p] = value


def _pixels(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H * W)


@exercise("9.2", "launch the channel-mean kernel, mean[n,0,i,j] = (1/C) sum_c x[n,c,i,j]: x to the device, "
                 "one block per output pixel (N*H*W blocks) whose threads share the C channels, the result "
                 "back to the host as (N,1,H,W) (lesson 9)")
def channel_mean_forward(x):
    N, C, H, W = x.shape
    # BEGIN SOLUTION
    (d_x,) = _to_device(_pixels(x))
    d_out = _on_device((N, H * W), x.dtype)
    _launch(_channel_mean_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_out)
    return d_out.copy_to_host().reshape(N, 1, H, W)
    # END SOLUTION


def channel_max_forward(x):
    N, C, H, W = x.shape
    _check_not_empty("channel_max_forward", "x", x.shape, (1,), "C")
    (d_x,) = _to_device(_pixels(x))
    d_out, d_index = _on_device((N, H * W), x.dtype), _on_device((N, H * W), np.int64)
    _launch(_channel_max_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_out, d_index)
    return d_out.copy_to_host().reshape(N, 1, H, W), d_index.copy_to_host().reshape(N, 1, H, W)


def _channel_pool_backward(grad_mean, grad_max, index, shape):
    N, C, H, W = shape
    d_mean, d_max, d_index = _to_device(*(a.reshape(N, H * W) for a in (grad_mean, grad_max, index)))
    dx = _on_device((N, C, H * W), grad_mean.dtype)
    _launch(_channel_pool_backward_kernel, items=dx.size)(d_mean, d_max, d_index, dx)
    return dx.copy_to_host().reshape(shape)


def channel_mean_backward(grad, shape):
    # the shared backward with no max gradient (index -1 matches no channel)
    return _channel_pool_backward(grad, np.zeros_like(grad), np.full(grad.shape, -1, np.int64), shape)


def channel_max_backward(grad, index, shape):
    return _channel_pool_backward(np.zeros_like(grad), grad, index, shape)


# --------------------------------------------------------------------------
# Dense layers and activations
# --------------------------------------------------------------------------
@cuda.jit
def _linear_kernel(x, weight, bias, out):
    """out[m, o] = b[o] + sum_k x[m, k] W[o, k]: one thread per output element."""
    M, O = out.shape
    for flat in range(cuda.grid(1), M * O, cuda.gridsize(1)):
        m, o = flat // O, flat % O
        total = 0.0
        for k in range(x.shape[1]):
            total += x[m, k] * weight[o, k]
        out[m, o] = total + bias[o]


@cuda.jit
def _linear_input_grad_kernel(grad, weight, dx):
    """dx[m, k] = sum_o g[m, o] W[o, k]: one thread per input element."""
    M, K = dx.shape
    for flat in range(cuda.grid(1), M * K, cuda.gridsize(1)):
        m, k = flat // K, flat % K
        total = 0.0
        for o in range(grad.shape[1]):
            total += grad[m, o] * weight[o, k]
        dx[m, k] = total


@cuda.jit
def _linear_weight_grad_kernel(grad, x, dweight):
    """dW[o, k] = sum_m g[m, o] x[m, k]: block (o, k) tree-sums over the batch."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    K = dweight.shape[1]
    o, k = cuda.blockIdx.x // K, cuda.blockIdx.x % K
    partial = 0.0
    for m in range(cuda.threadIdx.x, grad.shape[0], cuda.blockDim.x):
        partial += grad[m, o] * x[m, k]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dweight[o, k] = total


def linear_forward(x, weight, bias):
    M, O = x.shape[0], weight.shape[0]
    # no bias is a zero bias: one kernel for both
    d_x, d_weight, d_bias = _to_device(x, weight, np.zeros(O, x.dtype) if bias is None else bias)
    out = _on_device((M, O), x.dtype)
    _launch(_linear_kernel, items=M * O)(d_x, d_weight, d_bias, out)
    return out.copy_to_host()


def linear_backward(grad, x, weight, has_bias):
    d_grad, d_x, d_weight = _to_device(grad, x, weight)
    dx, dweight = _on_device(x.shape, x.dtype), _on_device(weight.shape, weight.dtype)
    _launch(_linear_input_grad_kernel, items=x.size)(d_grad, d_weight, dx)
    _launch(_linear_weight_grad_kernel, blocks=weight.size, reduce_over=x.shape[0])(d_grad, d_x, dweight)
    dbias = _sum_over_axes(d_grad, grad.shape, (0,)).copy_to_host() if has_bias else None
    return dx.copy_to_host(), dweight.copy_to_host(), dbias


@cuda.jit
def _relu_kernel(x, out):
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[k] = x[k] if x[k] > 0 else 0


@cuda.jit
def _relu_backward_kernel(grad, out, dx):
    """dx = g where the output was positive, else 0."""
    for k in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        dx[k] = grad[k] if out[k] > 0 else 0


@cuda.jit
def _sigmoid_kernel(x, out):
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[k] = _sigmoid(x[k])


@cuda.jit
def _sigmoid_backward_kernel(grad, out, dx):
    """dx = g * s * (1 - s) with s = sigmoid(x), the saved output."""
    for k in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        dx[k] = grad[k] * out[k] * (1 - out[k])


def _elementwise(kernel, *arrays):
    """Run an element-wise kernel on same-shaped arrays; the result has the first one's shape and dtype."""
    devices = _to_device(*(a.reshape(-1) for a in arrays))
    out = _on_device(arrays[0].size, arrays[0].dtype)
    _launch(kernel, items=out.size)(*devices, out)
    return out.copy_to_host().reshape(arrays[0].shape)


def relu_forward(x):
    return _elementwise(_relu_kernel, x)


def relu_backward(grad, out):
    return _elementwise(_relu_backward_kernel, grad, out)


def sigmoid_forward(x):
    return _elementwise(_sigmoid_kernel, x)


def sigmoid_backward(grad, out):
    return _elementwise(_sigmoid_backward_kernel, grad, out)


# --------------------------------------------------------------------------
# Broadcasting arithmetic. An array broadcast to shape S is read through
# element strides that are 0 along its stretched axes.
# --------------------------------------------------------------------------
@cuda.jit(device=True)
def _offset(flat, shape, strides):
    """Position in memory of element ``flat`` (C order over ``shape``) of an array with ``strides``."""
    position = 0
    for axis in range(len(shape) - 1, -1, -1):
        position += (flat % shape[axis]) * strides[axis]
        flat //= shape[axis]
    return position


@cuda.jit
def _broadcast_kernel(a, a_strides, b, b_strides, shape, multiply, out):
    """out = a * b (``multiply``) or a + b, both read through broadcast strides."""
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        left, right = a[_offset(k, shape, a_strides)], b[_offset(k, shape, b_strides)]
        out[k] = left * right if multiply else left + right


@cuda.jit
def _sum_kernel(src, kept_shape, kept_strides, summed_shape, summed_strides, divisor, out):
    """out[r] = (sum over the summed axes of src at kept position r) / divisor: block r tree-sums."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    r = cuda.blockIdx.x
    count = 1
    for n in summed_shape:
        count *= n
    base = _offset(r, kept_shape, kept_strides)
    partial = 0.0
    for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        partial += src[base + _offset(k, summed_shape, summed_strides)]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        out[r] = total / divisor


def _contiguous_strides(shape):
    """Element strides of a C-contiguous array (the last axis varies fastest)."""
    strides = np.ones(len(shape), np.int64)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    return strides


def _sum_over_axes(d_src, shape, axes, divisor=1):
    """Sum a C-contiguous device array of ``shape`` over ``axes``; a flat device array of the kept axes."""
    strides = _contiguous_strides(shape)
    kept = [a for a in range(len(shape)) if a not in axes]
    kept_shape = np.array([shape[a] for a in kept] or [1], np.int64)
    kept_strides = np.array([strides[a] for a in kept] or [0], np.int64)
    summed_shape = np.array([shape[a] for a in axes] or [1], np.int64)
    summed_strides = np.array([strides[a] for a in axes] or [0], np.int64)
    out = _on_device(int(kept_shape.prod()), d_src.dtype)
    _launch(_sum_kernel, blocks=out.size, reduce_over=int(summed_shape.prod()))(
        d_src.reshape(d_src.size),
        *_to_device(kept_shape, kept_strides, summed_shape, summed_strides), divisor, out)
    return out


def _broadcast(a, b, multiply):
    dtype = np.result_type(a, b)
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    shape = np.broadcast_shapes(a.shape, b.shape) or (1,)

    def strides(array):
        padded = (1,) * (len(shape) - array.ndim) + array.shape
        return np.where(np.array(padded) == 1, 0, _contiguous_strides(padded))

    out = _on_device(int(np.prod(shape)), dtype)
    d_a, d_b, d_a_strides, d_b_strides, d_shape = _to_device(
        a.reshape(-1), b.reshape(-1), strides(a), strides(b), np.array(shape, np.int64))
    _launch(_broadcast_kernel, items=out.size)(d_a, d_a_strides, d_b, d_b_strides, d_shape, multiply, out)
    return out.copy_to_host().reshape(np.broadcast_shapes(a.shape, b.shape))


def mul_forward(a, b):
    return _broadcast(a, b, True)


def add_forward(a, b):
    return _broadcast(a, b, False)


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the leading extra axes and the axes stretched from 1."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape)
                                       if n == 1 and grad.shape[extra + i] != 1)
    (d_grad,) = _to_device(grad)
    return _sum_over_axes(d_grad, grad.shape, axes).copy_to_host().reshape(shape)


def mul_backward(grad, a, b, needs_a=True, needs_b=True):
    """Gradients of ``a * b`` (the NumPy reference's composition of the two kernels above, no fused device code)."""
    da = sum_to_shape(mul_forward(grad, b), a.shape) if needs_a else None
    db = sum_to_shape(mul_forward(grad, a), b.shape) if needs_b else None
    return da, db


# --------------------------------------------------------------------------
# Convolution (cross-correlation) with stride s, zero padding p, dilation d, groups.
# Output pixel (oh, ow) reads, through tap (i, j), input pixel
#     (ih, iw) = (oh*s_h - p_h + i*d_h, ow*s_w - p_w + j*d_w),
# and a pixel outside the input is a padding zero. Channel c belongs to group c // CG.
# --------------------------------------------------------------------------
@cuda.jit
def _conv2d_kernel(x, weight, bias, stride, padding, dilation, out):
    """out[n,o,oh,ow] = b[o] + sum_{cg,i,j} W[o,cg,i,j] x[n, g*CG + cg, ih, iw]: one thread per output."""
    N, CO, OH, OW = out.shape
    H, W = x.shape[2], x.shape[3]
    CG, KH, KW = weight.shape[1], weight.shape[2], weight.shape[3]
    outputs_per_group = CO // (x.shape[1] // CG)
    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, o, oh, ow = flat // (CO * OH * OW), flat // (OH * OW) % CO, flat // OW % OH, flat % OW
        first_channel = o // outputs_per_group * CG
        total = 0.0
        for cg in range(CG):
            for i in range(KH):
                ih = oh * stride[0] - padding[0] + i * dilation[0]
                for j in range(KW):
                    iw = ow * stride[1] - padding[1] + j * dilation[1]
                    if 0 <= ih < H and 0 <= iw < W:
                        total += weight[o, cg, i, j] * x[n, first_channel + cg, ih, iw]
        out[n, o, oh, ow] = total + bias[o]


@cuda.jit(device=True)
def _output_position(pixel, tap, stride, padding, dilation, size):
    """The output row (or column) that read input ``pixel`` through ``tap``, or -1 if none did."""
    shifted = pixel + padding - tap * dilation
    if shifted < 0 or shifted % stride != 0 or shifted // stride >= size:
        return -1
    return shifted // stride


@cuda.jit
def _conv2d_input_grad_kernel(grad, weight, stride, padding, dilation, dx):
    """dx[n,c,ih,iw] = sum over the outputs o of c's group and the taps (i,j) that read (ih,iw) of
    g[n,o,oh,ow] W[o,cg,i,j]: one thread per input element gathers, so no two threads write one place."""
    N, C, H, W = dx.shape
    CO, OH, OW = grad.shape[1], grad.shape[2], grad.shape[3]
    CG, KH, KW = weight.shape[1], weight.shape[2], weight.shape[3]
    outputs_per_group = CO // (C // CG)
    for flat in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        n, c, ih, iw = flat // (C * H * W), flat // (H * W) % C, flat // W % H, flat % W
        group, cg = c // CG, c % CG
        total = 0.0
        for o in range(group * outputs_per_group, (group + 1) * outputs_per_group):
            for i in range(KH):
                oh = _output_position(ih, i, stride[0], padding[0], dilation[0], OH)
                for j in range(KW):
                    ow = _output_position(iw, j, stride[1], padding[1], dilation[1], OW)
                    if oh >= 0 and ow >= 0:
                        total += grad[n, o, oh, ow] * weight[o, cg, i, j]
        dx[n, c, ih, iw] = total


@cuda.jit
def _conv2d_weight_grad_kernel(grad, x, stride, padding, dilation, dweight):
    """dW[o,cg,i,j] = sum_{n,oh,ow} g[n,o,oh,ow] x[n, g*CG + cg, ih, iw]: block (o,cg,i,j) tree-sums."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, CO, OH, OW = grad.shape
    H, W = x.shape[2], x.shape[3]
    CG, KH, KW = dweight.shape[1], dweight.shape[2], dweight.shape[3]
    b = cuda.blockIdx.x
    o, cg, i, j = b // (CG * KH * KW), b // (KH * KW) % CG, b // KW % KH, b % KW
    c = o // (CO // (x.shape[1] // CG)) * CG + cg
    partial = 0.0
    for k in range(cuda.threadIdx.x, N * OH * OW, cuda.blockDim.x):
        n, oh, ow = k // (OH * OW), k // OW % OH, k % OW
        ih = oh * stride[0] - padding[0] + i * dilation[0]
        iw = ow * stride[1] - padding[1] + j * dilation[1]
        if 0 <= ih < H and 0 <= iw < W:
            partial += grad[n, o, oh, ow] * x[n, c, ih, iw]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dweight[o, cg, i, j] = total


def _conv_geometry(stride, padding, dilation):
    return tuple(np.asarray(v, np.int64) for v in (stride, padding, dilation))


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    CO, CG, KH, KW = weight.shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    d_x, d_weight, d_bias, *geometry = _to_device(
        x, weight, np.zeros(CO, x.dtype) if bias is None else bias, *_conv_geometry(stride, padding, dilation))
    out = _on_device((N, CO, OH, OW), x.dtype)
    _launch(_conv2d_kernel, items=out.size)(d_x, d_weight, d_bias, *geometry, out)
    return out.copy_to_host()


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias):
    N, C, H, W = x.shape
    d_grad, d_x, d_weight, *geometry = _to_device(grad, x, weight, *_conv_geometry(stride, padding, dilation))
    dx, dweight = _on_device(x.shape, x.dtype), _on_device(weight.shape, weight.dtype)
    _launch(_conv2d_input_grad_kernel, items=dx.size)(d_grad, d_weight, *geometry, dx)
    _launch(_conv2d_weight_grad_kernel, blocks=weight.size, reduce_over=N * grad.shape[2] * grad.shape[3])(
        d_grad, d_x, *geometry, dweight)
    dbias = _sum_over_axes(d_grad, grad.shape, (0, 2, 3)).copy_to_host() if has_bias else None
    return dx.copy_to_host(), dweight.copy_to_host(), dbias


# --------------------------------------------------------------------------
# Batch norm on (N, C, L): block c owns channel c, its threads share the m = N*L values.
# --------------------------------------------------------------------------
@cuda.jit
def _batch_norm_train_kernel(x, weight, bias, eps, out, xhat, inv_std, mean, var):
    """mean = (1/m) sum x, var = (1/m) sum (x - mean)^2 (biased), xhat = (x - mean) / sqrt(var + eps),
    out = weight * xhat + bias; statistics in two passes, as NumPy does, for accuracy."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, L = x.shape
    c = cuda.blockIdx.x
    m = N * L
    partial = 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial += x[k // L, c, k % L]
    mu = _block_sum(partial, scratch) / m
    partial = 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial += (x[k // L, c, k % L] - mu) ** 2
    variance = _block_sum(partial, scratch) / m
    inverse = 1 / math.sqrt(variance + eps)
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        normalized = (x[k // L, c, k % L] - mu) * inverse
        xhat[k // L, c, k % L] = normalized
        out[k // L, c, k % L] = normalized * weight[c] + bias[c]
    if cuda.threadIdx.x == 0:
        mean[c], var[c], inv_std[c] = mu, variance, inverse


@cuda.jit
def _batch_norm_eval_kernel(x, running_mean, running_var, weight, bias, eps, out, xhat, inv_std):
    """xhat = (x - running_mean) / sqrt(running_var + eps), out = weight * xhat + bias, element-wise."""
    N, C, L = x.shape
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, l = flat // (C * L), flat // L % C, flat % L
        inverse = 1 / math.sqrt(running_var[c] + eps)
        normalized = (x[n, c, l] - running_mean[c]) * inverse
        xhat[n, c, l] = normalized
        out[n, c, l] = normalized * weight[c] + bias[c]
        if n == 0 and l == 0:  # exactly one thread per channel reports its inv_std
            inv_std[c] = inverse


@cuda.jit
def _batch_norm_backward_kernel(grad, xhat, inv_std, weight, training, dx, dweight, dbias):
    """dbias = sum g, dweight = sum g xhat; dx = weight * inv_std * (g - dbias/m - xhat * dweight/m) in
    train mode (the batch mean and variance depend on every x of the channel), weight * inv_std * g in eval."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, L = grad.shape
    c = cuda.blockIdx.x
    m = N * L
    partial_g, partial_gx = 0.0, 0.0
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        partial_g += grad[k // L, c, k % L]
        partial_gx += grad[k // L, c, k % L] * xhat[k // L, c, k % L]
    sum_g = _block_sum(partial_g, scratch)
    sum_gx = _block_sum(partial_gx, scratch)
    scale = weight[c] * inv_std[c]
    for k in range(cuda.threadIdx.x, m, cuda.blockDim.x):
        g = grad[k // L, c, k % L]
        if training:
            g -= sum_g / m + xhat[k // L, c, k % L] * sum_gx / m
        dx[k // L, c, k % L] = scale * g
    if cuda.threadIdx.x == 0:
        dbias[c], dweight[c] = sum_g, sum_gx


def batch_norm_train_forward(x, weight, bias, eps):
    N, C, L = x.shape
    d_x, d_weight, d_bias = _to_device(x, weight, bias)
    out, xhat = _on_device(x.shape, x.dtype), _on_device(x.shape, x.dtype)
    inv_std, mean, var = (_on_device(C, x.dtype) for _ in range(3))
    _launch(_batch_norm_train_kernel, blocks=C, reduce_over=N * L)(
        d_x, d_weight, d_bias, eps, out, xhat, inv_std, mean, var)
    return tuple(a.copy_to_host() for a in (out, xhat, inv_std, mean, var))


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    C = x.shape[1]
    devices = _to_device(x, *(a.astype(x.dtype, copy=False) for a in (running_mean, running_var, weight, bias)))
    out, xhat, inv_std = _on_device(x.shape, x.dtype), _on_device(x.shape, x.dtype), _on_device(C, x.dtype)
    _launch(_batch_norm_eval_kernel, items=x.size)(*devices, eps, out, xhat, inv_std)
    return out.copy_to_host(), xhat.copy_to_host(), inv_std.copy_to_host()


def batch_norm_backward(grad, xhat, inv_std, weight, training):
    N, C, L = grad.shape
    devices = _to_device(grad, xhat, inv_std, weight)
    dx, dweight, dbias = _on_device(grad.shape, grad.dtype), _on_device(C, grad.dtype), _on_device(C, grad.dtype)
    _launch(_batch_norm_backward_kernel, blocks=C, reduce_over=N * L)(*devices, training, dx, dweight, dbias)
    return dx.copy_to_host(), dweight.copy_to_host(), dbias.copy_to_host()


# --------------------------------------------------------------------------
# Softmax cross-entropy, mean over the batch: block m owns row m of the logits.
# --------------------------------------------------------------------------
@cuda.jit
def _softmax_cross_entropy_kernel(logits, labels, probs, row_loss):
    """lse = max + log(sum_k exp(z_k - max)); probs = exp(z - lse); row_loss = lse - z[label]."""
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    m = cuda.blockIdx.x
    K = logits.shape[1]
    best, best_k = -math.inf, K
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        if _beats(logits[m, k], k, best, best_k):
            best, best_k = logits[m, k], k
    peak, _ = _block_first_max(best, best_k, values, indices)
    partial = 0.0
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        partial += math.exp(logits[m, k] - peak)
    lse = peak + math.log(_block_sum(partial, values))
    for k in range(cuda.threadIdx.x, K, cuda.blockDim.x):
        probs[m, k] = math.exp(logits[m, k] - lse)
    if cuda.threadIdx.x == 0:
        row_loss[m] = lse - logits[m, labels[m]]


@cuda.jit
def _softmax_cross_entropy_backward_kernel(grad, probs, labels, dlogits):
    """dz[m,k] = g * (probs[m,k] - [k == label[m]]) / M."""
    M, K = probs.shape
    for flat in range(cuda.grid(1), probs.size, cuda.gridsize(1)):
        m, k = flat // K, flat % K
        target = 1 if k == labels[m] else 0
        dlogits[m, k] = grad * (probs[m, k] - target) / M


def softmax_cross_entropy_forward(logits, labels):
    M, K = logits.shape
    _check_not_empty("softmax_cross_entropy_forward", "logits", logits.shape, (1,), "K (the classes)")
    d_logits, d_labels = _to_device(logits, labels.astype(np.int64, copy=False))
    probs, row_loss = _on_device(logits.shape, logits.dtype), _on_device(M, logits.dtype)
    _launch(_softmax_cross_entropy_kernel, blocks=M, reduce_over=K)(d_logits, d_labels, probs, row_loss)
    loss = _sum_over_axes(row_loss, (M,), (0,), divisor=M)
    return loss.copy_to_host().reshape(()), probs.copy_to_host()


def softmax_cross_entropy_backward(grad, probs, labels):
    d_probs, d_labels = _to_device(probs, labels.astype(np.int64, copy=False))
    dlogits = _on_device(probs.shape, probs.dtype)
    _launch(_softmax_cross_entropy_backward_kernel, items=probs.size)(float(grad), d_probs, d_labels, dlogits)
    return dlogits.copy_to_host()


# --------------------------------------------------------------------------
# Fused attention kernels: each reads the big (N, C, H, W) tensors once.
# --------------------------------------------------------------------------
def global_avg_max_pool_forward(x):
    _check_not_empty("global_avg_max_pool_forward", "x", x.shape, (2, 3), "H×W")
    return _global_reduce(_global_avg_max_kernel, x, outputs=[x.dtype, x.dtype, np.int64])


def global_avg_max_pool_backward(grad_avg, grad_max, index, shape):
    return _global_pool_backward(grad_avg, grad_max, index, shape)


@cuda.jit
def _channel_gate_and_pool_kernel(x, gate, y, pooled, index):
    """y[n,c,p] = gate[n,c] x[n,c,p], and in the same pass over c: pooled[n,0,p] = mean_c y,
    pooled[n,1,p] = max_c y, index[n,p] = its first channel. Block b owns pixel (n, p)."""
    sums = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    values = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    indices = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.int64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial, best, best_c = 0.0, -math.inf, C
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        gated = gate[n, c] * x[n, c, p]
        y[n, c, p] = gated
        partial += gated
        if _beats(gated, c, best, best_c):
            best, best_c = gated, c
    total = _block_sum(partial, sums)
    best, best_c = _block_first_max(best, best_c, values, indices)
    if cuda.threadIdx.x == 0:
        pooled[n, 0, p] = total / C
        pooled[n, 1, p] = best
        index[n, p] = best_c


@cuda.jit
def _channel_gate_and_pool_backward_kernel(grad_y, grad_pooled, x, gate, index, dx, dgate):
    """dy = g_y + g_mean / C + (g_max at the first maximal channel); dx = gate * dy and
    dgate[n,c] = sum_p dy x. Block b owns (n, c) = (b // C, b % C) and tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        dy = grad_y[n, c, p] + grad_pooled[n, 0, p] / C
        if c == index[n, p]:
            dy += grad_pooled[n, 1, p]
        dx[n, c, p] = gate[n, c] * dy
        partial += dy * x[n, c, p]
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dgate[n, c] = total


def channel_gate_and_pool_forward(x, gate):
    N, C, H, W = x.shape
    _check_not_empty("channel_gate_and_pool_forward", "x", x.shape, (1,), "C")
    d_x, d_gate = _to_device(_pixels(x), gate)
    y, pooled = _on_device((N, C, H * W), x.dtype), _on_device((N, 2, H * W), x.dtype)
    index = _on_device((N, H * W), np.int64)
    _launch(_channel_gate_and_pool_kernel, blocks=N * H * W, reduce_over=C)(d_x, d_gate, y, pooled, index)
    return (y.copy_to_host().reshape(x.shape), pooled.copy_to_host().reshape(N, 2, H, W),
            index.copy_to_host().reshape(N, 1, H, W))


def channel_gate_and_pool_backward(grad_y, grad_pooled, x, gate, index):
    N, C, H, W = x.shape
    devices = _to_device(_pixels(grad_y), _pixels(grad_pooled), _pixels(x), gate, index.reshape(N, H * W))
    dx, dgate = _on_device((N, C, H * W), x.dtype), _on_device((N, C), x.dtype)
    _launch(_channel_gate_and_pool_backward_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dgate)
    return dx.copy_to_host().reshape(x.shape), dgate.copy_to_host()


@cuda.jit(device=True)
def _gate_logit_grad(grad, x, gate):
    """d/dz of g * x * sigmoid(z), the gradient reaching both logits Mc and Ms."""
    return grad * x * gate * (1 - gate)


@cuda.jit
def _residual_gate_kernel(x, channel_logit, spatial_logit, out):
    """out = x + x * sigmoid(Mc[n,c] + Ms[n,p]): BAM's (1 + M(F)) ⊗ F, element-wise."""
    N, C, P = x.shape
    for flat in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n, c, p = flat // (C * P), flat // P % C, flat % P
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        out[n, c, p] = x[n, c, p] + x[n, c, p] * gate


@cuda.jit
def _residual_gate_channel_grad_kernel(grad, x, channel_logit, spatial_logit, dx, dchannel):
    """dx = g (1 + gate) and dMc[n,c] = sum_p dz: block (n, c) tree-sums over its pixels."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, c = cuda.blockIdx.x // C, cuda.blockIdx.x % C
    partial = 0.0
    for p in range(cuda.threadIdx.x, P, cuda.blockDim.x):
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        dx[n, c, p] = grad[n, c, p] * (1 + gate)
        partial += _gate_logit_grad(grad[n, c, p], x[n, c, p], gate)
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dchannel[n, c] = total


@cuda.jit
def _residual_gate_spatial_grad_kernel(grad, x, channel_logit, spatial_logit, dspatial):
    """dMs[n,p] = sum_c dz: block (n, p) tree-sums over the channels (dz recomputed, not stored)."""
    scratch = cuda.shared.array(MAX_THREADS_PER_BLOCK, np.float64)
    N, C, P = x.shape
    n, p = cuda.blockIdx.x // P, cuda.blockIdx.x % P
    partial = 0.0
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        gate = _sigmoid(channel_logit[n, c] + spatial_logit[n, p])
        partial += _gate_logit_grad(grad[n, c, p], x[n, c, p], gate)
    total = _block_sum(partial, scratch)
    if cuda.threadIdx.x == 0:
        dspatial[n, p] = total


def residual_gate_forward(x, channel_logit, spatial_logit):
    N, C, H, W = x.shape
    devices = _to_device(_pixels(x), channel_logit, spatial_logit.reshape(N, H * W))
    out = _on_device((N, C, H * W), x.dtype)
    _launch(_residual_gate_kernel, items=x.size)(*devices, out)
    return out.copy_to_host().reshape(x.shape)


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    N, C, H, W = x.shape
    devices = _to_device(_pixels(grad), _pixels(x), channel_logit, spatial_logit.reshape(N, H * W))
    dx, dchannel, dspatial = (_on_device((N, C, H * W), x.dtype), _on_device((N, C), x.dtype),
                              _on_device((N, H * W), x.dtype))
    _launch(_residual_gate_channel_grad_kernel, blocks=N * C, reduce_over=H * W)(*devices, dx, dchannel)
    _launch(_residual_gate_spatial_grad_kernel, blocks=N * H * W, reduce_over=C)(*devices, dspatial)
    return dx.copy_to_host().reshape(x.shape), dchannel.copy_to_host(), dspatial.copy_to_host().reshape(N, 1, H, W)
