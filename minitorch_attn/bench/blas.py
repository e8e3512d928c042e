"""``python -m minitorch_attn.bench.blas``: would the Numba conv gain from NumPy's ``matmul``? The measurement.

For the stride-1 3×3 convs of the benchmarked ResNet-10 (batch 64), one process with OpenBLAS
and Numba both held to one thread times the Numba backend's whole ``conv2d_forward`` against
the two halves of an im2col conv: building the im2col matrix (the backend's own loop) and
``np.matmul`` of the weights by it (one call per sample). A conv through ``matmul`` costs at
least the larger of those two, plus whatever taming OpenBLAS's thread pool costs. The last
column is such a conv done in cache-sized pieces: the batch stacked as the backend's wide loops
stack it, and for every CHUNK positions the im2col block (copied from shifted rows) times the
weights by ``matmul``, so the block never leaves L2.
"""
from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: its thread pool would otherwise fight Numba's for the cores.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numba  # noqa: E402
import numpy as np  # noqa: E402

from ..backends import numba as numba_backend  # noqa: E402
from ..backends.numba.conv import _ConvGeometry, _stacked_planes, _wide_length  # noqa: E402
from .measure import measure  # noqa: E402

#: (input channels, output channels, size) of the stride-1 3×3 convs of resnet10(widths=(16, 32, 64, 128)).
LAYERS = ((16, 16, 32), (32, 32, 16), (64, 64, 8), (128, 128, 4))

#: Positions per im2col block of the chunked conv (512 × 144 taps × 4 bytes = 295 KB at 16 channels).
CHUNK = 512


@numba.njit(cache=True)
def _columns_block(xpad, taps, lo, hi, cols):
    """cols[t, q - lo] = xpad[c_t, q + offset_t] for lo <= q < hi, with (c_t, offset_t) = taps[t]."""
    for t in range(taps.shape[0]):
        start = lo + taps[t, 1]
        cols[t, :hi - lo] = xpad[taps[t, 0], start:start + hi - lo]


def _chunked_im2col_conv(x, weight):
    """The stride-1, padding-1 3×3 conv in pieces of CHUNK positions (the wide planes, junk included)."""
    N, C = x.shape[:2]
    CO = weight.shape[0]
    xpad, Hs, Wp, OH1, OW1 = _stacked_planes(x, (1, 1), (3, 3), (1, 1))
    taps = np.array([(t // 9, (t // 3 % 3) * Wp + t % 3) for t in range(C * 9)], np.int64)
    flat_weight = weight.reshape(CO, -1)
    length = _wide_length(N, Hs, Wp, OH1, OW1)
    out = np.empty((CO, length), x.dtype)
    cols = np.empty((C * 9, CHUNK), x.dtype)
    for lo in range(0, length, CHUNK):
        hi = min(length, lo + CHUNK)
        _columns_block(xpad, taps, lo, hi, cols)
        np.matmul(flat_weight, cols[:, :hi - lo], out=out[:, lo:hi])
    return out


def main(batch=64, min_time=0.5):
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"float32, batch {batch}, 3×3 stride 1 padding 1, one thread (OpenBLAS and Numba); median ms")
    print(f"{'layer':>16}  {'numba conv2d_forward':>20}  {'np.matmul alone':>15}  {'im2col alone':>12}  "
          f"{'chunked im2col + matmul':>23}")
    for C, CO, size in LAYERS:
        x = rng.standard_normal((batch, C, size, size), dtype=np.float32)
        weight = rng.standard_normal((CO, C, 3, 3), dtype=np.float32)
        conv = _ConvGeometry("bench", x, weight, 1, 1, 1, 1)
        cols = conv.columns()[:, 0]
        flat_weight = weight.reshape(CO, -1)
        ours = measure(lambda: numba_backend.conv2d_forward(x, weight, None, 1, 1, 1, 1), min_time).median_ms
        blas = measure(lambda: [np.matmul(flat_weight, cols[n]) for n in range(batch)], min_time).median_ms
        im2col = measure(conv.columns, min_time).median_ms
        chunked = measure(lambda: _chunked_im2col_conv(x, weight), min_time).median_ms
        print(f"{f'{C}->{CO} {size}x{size}':>16}  {ours:20.2f}  {blas:15.2f}  {im2col:12.2f}  {chunked:23.2f}")


if __name__ == "__main__":
    main()
