"""The Numba CPU backend: the NumPy kernels rewritten as explicit parallel loops.

Every kernel is a thin Python wrapper (checks its arguments before any work,
allocates the outputs, turns ``bias=None`` into an array plus a flag) around an
``@njit(parallel=True, cache=True)`` loop whose outermost loop is a ``prange``.
The formulas and return conventions are those of ``numpy_backend``.

The modules are laid out as ``minitorch_attn/ops`` is: the kernels of
``ops/conv.py`` are in ``conv.py`` here, and so on for ``pooling``, ``dense``,
``arith``, ``norm``, ``loss`` and ``attention``; ``lanes.py`` holds the row
loops they share (the lane reductions, the first maximum, the GEMM row update)
and ``checks.py`` the argument checks. The conv has four helpers of its own:
``frames.py`` (the batch stacked into "wide rows"), ``microkernels.py`` (the
register-blocked sums, on ``simd.py``'s machine vectors), ``winograd.py``
(the 3×3 "same" convs of 32 to 64 channels) and ``pixels.py`` (small output
planes, channels-last). This package exposes every kernel.

Rules every loop in this package follows, and why:

* **Deterministic for any thread count.** A ``prange`` iteration owns the
  outputs it writes; no two threads ever add into the same element. Every sum
  runs in an order fixed by the shapes alone (never by how Numba shares the
  iterations out), so 1 thread and 8 threads give bit-identical results.
* **float32 stays float32.** Constants are made with ``x.dtype.type(...)``: a
  bare Python ``1`` or ``0.5`` makes Numba promote float32 math to float64.
* **Few compiled variants.** The wrappers hand the loops C-contiguous arrays of
  one fixed ndim per loop (global pools see ``(planes, H*W)``, activations see
  1-D), and every input is cast to the dtype of the main input. Each loop then
  compiles once per dtype, and a warm on-disk cache loads in milliseconds.
* **Reductions in a fixed order, with many sums in flight.** Strict IEEE order
  forbids LLVM to reorder one running sum, so a plain ``s += row[i]`` loop waits
  on the adder for every element. :func:`lanes._lane_sum` and friends keep two
  machine vectors of running sums (``simd.py``: element ``i`` of the whole
  chunks goes to lane ``i mod 2W``) and add the lanes in a fixed tree: one
  fixed order, and 2W independent chains. (Eight scalar running sums stay
  scalar in LLVM's hands: CBAM's descriptor sum-and-max ran so at one element
  per cycle, 3× slower than reading the plane.) The conv, where the arithmetic
  is, keeps 8 tiles of sums in registers across all the taps (half the vector
  registers: 16 with AVX-512, 8 with AVX2), at 95–113 GFLOPS on a Zen 4 core
  and 70–83 on a Zen 3 one. The order depends on the vector width W, so a machine without
  AVX-512 rounds differently: results agree across machines to rounding,
  across thread counts bit for bit.
* **First maximum, NaN first of all.** Every max keeps the first of equal
  values (strict ``>`` while scanning in C order), the element ``np.argmax``
  and PyTorch's index-based max pick; a NaN beats every number and the first
  NaN wins, as there. A max over no elements raises (NumPy's ``argmax`` does).

Numba does not check bounds, so the wrappers check every shape and index the
loops rely on. Convolutions run on loops written here (``conv.py`` says how: the
batch stacked into "wide rows", a strided conv split into phases, a 1×1 conv on
x as it is, a 3×3 "same" conv as Winograd's F(2×2, 3×3)), not on NumPy's BLAS ``matmul``: OpenBLAS runs its own thread pool,
which fought Numba's OpenMP threads for the two cores (a BAM conv backward took
240 ms instead of 2), and its sums are not in an order we fix. Held to one
thread, ``python -m minitorch_attn.bench.blas`` measured it on the ResNet-10 3×3
convs (run of 2026-11-30 23:27): ``sgemm`` on the same stacked positions was
1.05× (16 channels), 1.1× (32 and 64, our Winograd convs) and 1.8× (128)
faster than our whole conv, stacking included, but building its im2col matrix
cost 0.6–4.3 ms on top, and fed in L2-sized blocks it was 1.2–2.5× slower than
ours up to 64 channels and 1.25× faster only at 128 channels of 4×4 pixels,
where the wide rows waste most. Not worth a second thread pool to tame: the
loops stay.
"""
from __future__ import annotations

from .cache import drop_stale_cache

drop_stale_cache()  # before any kernel loads its cached code (on its first call)

from .pooling import (  # noqa: F401, E402
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
from .dense import (  # noqa: F401, E402
    linear_forward,
    linear_backward,
    relu_forward,
    relu_backward,
    sigmoid_forward,
    sigmoid_backward,
)
from .arith import (  # noqa: F401, E402
    mul_forward,
    mul_backward,
    add_forward,
    sum_to_shape,
)
from .conv import (  # noqa: F401, E402
    conv2d_forward,
    conv2d_backward,
)
from .norm import (  # noqa: F401, E402
    batch_norm_train_forward,
    batch_norm_eval_forward,
    batch_norm_backward,
)
from .loss import (  # noqa: F401, E402
    softmax_cross_entropy_forward,
    softmax_cross_entropy_backward,
)
from .attention import (  # noqa: F401, E402
    gated_channel_pool_forward,
    gated_channel_pool_backward,
    channel_spatial_gate_forward,
    channel_spatial_gate_backward,
    residual_gate_forward,
    residual_gate_backward,
)
