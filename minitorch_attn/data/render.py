"""Drawing helpers shared by the generators: pasting patches with ``max``, tight boxes, bilinear upscaling.

Everything here is element-wise or an exact reduction (``max``, ``any``), so a generated image has the same
bytes on every machine and thread count: no BLAS call and no floating-point sum decides a pixel.
"""
from __future__ import annotations

import numpy as np


def paste_max(canvas, patches, ys, xs):
    """``canvas[n, ys[n]:ys[n]+h, xs[n]:xs[n]+w] = max(that window, patches[n])`` for every n at once.

    canvas (N, H, W), patches (N, h, w), ys and xs (N,) ints with every window inside the canvas.
    Each n pastes one patch, so no pixel is written twice by one call.
    """
    n, h, w = patches.shape
    rows = (ys[:, None] + np.arange(h))[:, :, None]
    cols = (xs[:, None] + np.arange(w))[:, None, :]
    images = np.arange(n)[:, None, None]
    canvas[images, rows, cols] = np.maximum(canvas[images, rows, cols], patches)


def tight_boxes(masks):
    """(N, H, W) bool -> (N, 4) int32 boxes ``(y0, x0, y1, x1)``, end exclusive, the smallest holding each mask.

    An empty mask gets ``(0, 0, 0, 0)``; the generators never make one.
    """
    boxes = np.zeros((len(masks), 4), np.int32)
    for axis, (lo, hi) in ((2, (0, 2)), (1, (1, 3))):
        hit = masks.any(axis=axis)
        size = hit.shape[1]
        present = hit.any(axis=1)
        boxes[:, lo] = np.where(present, hit.argmax(axis=1), 0)
        boxes[:, hi] = np.where(present, size - hit[:, ::-1].argmax(axis=1), 0)
    return boxes


def bilinear_weights(n_in, n_out):
    """Source indices and weights of a bilinear resize along one axis (pixel centres aligned, edges clamped)."""
    position = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, position - low


def upscale(images, size):
    """(N, h, w) -> (N, size, size) float32 by separable bilinear interpolation."""
    out = images.astype(np.float64)
    low, high, t = bilinear_weights(out.shape[1], size)
    out = out[:, low, :] * (1 - t)[:, None] + out[:, high, :] * t[:, None]
    low, high, t = bilinear_weights(out.shape[2], size)
    out = out[:, :, low] * (1 - t) + out[:, :, high] * t
    return out.astype(np.float32)


def chunk_ranges(start, stop, chunk):
    """The chunk indices covering [start, stop) and, per chunk, the slice of it that falls inside."""
    for index in range(start // chunk, (stop + chunk - 1) // chunk):
        lo, hi = index * chunk, (index + 1) * chunk
        yield index, max(start, lo), min(stop, hi)
