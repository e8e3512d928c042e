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
  a shared-memory tree reduction (``blocks._block_sum``, ``blocks._block_first_max``);
* convolution: one thread per output element (forward), per input element (dx,
  gathering over the taps that touched it) and one block per weight element (dW).

Accumulators are float64 (also for float32 data): the shared scratch arrays need
a dtype fixed at compile time, and float64 keeps float32 sums well inside 1e-5.
Every max propagates NaN as NumPy and PyTorch do: a NaN beats every number, and the
first NaN wins (``blocks._beats``). A max over no elements raises, as NumPy's does.

Kernels take and return host ndarrays (``cuda.to_device`` / ``copy_to_host``
happen in :mod:`.device`), so ops and modules do not know the data visited a GPU.

The modules are laid out as ``minitorch_attn/ops`` is (``conv.py`` here holds the
kernels of ``ops/conv.py``, and so on); ``blocks.py`` holds the block-wide
reductions they share and ``device.py`` the launch configuration
(``device.threads_per_block``), the transfers and :func:`availability`.
"""
from __future__ import annotations

from .device import availability  # noqa: F401
from .pooling import (  # noqa: F401
    global_avg_pool_forward,
    global_avg_pool_backward,
    global_max_pool_forward,
    global_max_pool_backward,
    global_lp_pool_forward,
    global_lp_pool_backward,
    global_lse_pool_forward,
    global_lse_pool_backward,
    channel_mean_forward,
    channel_mean_backward,
    channel_max_forward,
    channel_max_backward,
    global_avg_max_pool_forward,
    global_avg_max_pool_backward,
)
from .dense import (  # noqa: F401
    linear_forward,
    linear_backward,
    relu_forward,
    relu_backward,
    sigmoid_forward,
    sigmoid_backward,
)
from .arith import (  # noqa: F401
    mul_forward,
    mul_backward,
    add_forward,
    sum_to_shape,
)
from .conv import (  # noqa: F401
    conv2d_forward,
    conv2d_backward,
)
from .norm import (  # noqa: F401
    batch_norm_train_forward,
    batch_norm_eval_forward,
    batch_norm_backward,
)
from .loss import (  # noqa: F401
    softmax_cross_entropy_forward,
    softmax_cross_entropy_backward,
)
from .attention import (  # noqa: F401
    gated_channel_pool_forward,
    gated_channel_pool_backward,
    channel_spatial_gate_forward,
    channel_spatial_gate_backward,
    residual_gate_forward,
    residual_gate_backward,
)
