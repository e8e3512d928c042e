"""``python -m minitorch_attn.bench.blas``: would the Numba conv gain from NumPy's ``matmul``? The measurement.

For the stride-1 3×3 convs of the benchmarked ResNet-10 (batch 64), one process with OpenBLAS
and Numba both held to one thread times the Numba backend's whole ``conv2d_forward`` against
the two halves of an im2col conv on the same stacked planes as the backend's wide loops: building
the im2col matrix (row t: the planes shifted by tap t's offset) and ``np.matmul`` of the weights
by it. A conv through ``matmul`` costs at least the larger of those two, plus whatever taming
OpenBLAS's thread pool costs. The last column is such a conv done in cache-sized pieces: for
every CHUNK positions the im2col block times the weights by ``matmul``, so the block never
leaves L2.
"""
from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: its thread pool would otherwise fight Numba's for the cores.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numba  # noqa: E402
import numpy as np  # noqa: E402

from ..backends import numba as numba_backend  # noqa: E402
from ..backends.numba.conv import _ConvGeometry  # noqa: E402
from .measure import measure  # noqa: E402

#: (input channels, output channels, size) of the stride-1 3×3 convs of resnet10(widths=(16, 32, 64, 128)).
LAYERS = ((16, 16, 32), (32, 32, 16), (64, 64, 8), (128, 128, 4))

#: Positions per im2col block of the chunked conv (512 × 144 taps × 4 bytes = 295 KB at 16 channels).
CHUNK = 512


@numba.njit(cache=True)
def _columns_block(planes, offsets, lo, hi, cols):
    """cols[t, q - lo] = planes[offsets[t] + q] for lo <= q < hi: the im2col block of those positions."""
    for t in range(offsets.shape[0]):
        start = lo + offsets[t]
        cols[t, :hi - lo] = planes[start:start + hi - lo]


def _wide_columns(x, weight):
    """``(the flat planes, tap offsets, positions, flattened weights)`` of the stride-1, padding-1 3×3 conv."""
    conv = _ConvGeometry("bench", x, weight, 1, 1, 1, 1)
    planes, offsets = conv.input_planes()
    return planes.reshape(-1), offsets, conv.frame.length, weight.reshape(weight.shape[0], -1)


def _chunked_im2col_conv(x, weight):
    """The stride-1, padding-1 3×3 conv in pieces of CHUNK positions (the wide planes, junk included)."""
    planes, offsets, length, flat_weight = _wide_columns(x, weight)
    out = np.empty((flat_weight.shape[0], length), x.dtype)
    cols = np.empty((offsets.shape[0], CHUNK), x.dtype)
    for lo in range(0, length, CHUNK):
        hi = min(length, lo + CHUNK)
        _columns_block(planes, offsets, lo, hi, cols)
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
        planes, offsets, length, flat_weight = _wide_columns(x, weight)
        cols = np.empty((offsets.shape[0], length), x.dtype)
        _columns_block(planes, offsets, 0, length, cols)
        ours = measure(lambda: numba_backend.conv2d_forward(x, weight, None, 1, 1, 1, 1), min_time).median_ms
        blas = measure(lambda: np.matmul(flat_weight, cols), min_time).median_ms
        im2col = measure(lambda: _columns_block(planes, offsets, 0, length, cols), min_time).median_ms
        chunked = measure(lambda: _chunked_im2col_conv(x, weight), min_time).median_ms
        print(f"{f'{C}->{CO} {size}x{size}':>16}  {ours:20.2f}  {blas:15.2f}  {im2col:12.2f}  {chunked:23.2f}")


if __name__ == "__main__":
    main()
