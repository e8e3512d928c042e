"""Timing loop and copy bandwidth: what every worker process measures with."""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of one callable, in milliseconds."""

    median_ms: float
    iqr_ms: float
    reps: int

    def as_dict(self):
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "reps": self.reps}


def measure(fn, min_time=0.5, min_reps=20, warmup_time=0.2, warmup_reps=3, max_reps=100_000):
    """Run ``fn`` until both ``min_reps`` calls and ``min_time`` seconds are reached; median and IQR of the calls.

    The warm-up absorbs JIT compilation, thread-pool start and the allocator reaching its steady state.
    The garbage collector is paused while timing so that a collection triggered by one side's
    allocation pattern does not land in its numbers (``timeit`` does the same).
    """
    started = time.perf_counter()
    done = 0
    while done < warmup_reps or time.perf_counter() - started < warmup_time:
        fn()
        done += 1
    with _collector_paused():
        durations = []
        total = 0.0
        while len(durations) < max_reps and (len(durations) < min_reps or total < min_time):
            begin = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - begin
            durations.append(elapsed)
            total += elapsed
    return summarise(durations)


def summarise(durations):
    """The :class:`Timing` of some calls' durations in seconds."""
    q1, median, q3 = np.percentile(np.array(durations) * 1e3, [25, 50, 75])
    return Timing(float(median), float(q3 - q1), len(durations))


def timed_calls(fn, reps):
    """Seconds of each of ``reps`` calls of ``fn`` (already warm), the collector paused as in :func:`measure`."""
    with _collector_paused():
        durations = []
        for _ in range(reps):
            begin = time.perf_counter()
            fn()
            durations.append(time.perf_counter() - begin)
    return durations


@contextlib.contextmanager
def _collector_paused():
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def copy_bandwidth(copy, nbytes, **timing):
    """GB/s of ``copy()`` moving ``nbytes``: bytes read plus bytes written over the median time."""
    result = measure(copy, **timing)
    return 2 * nbytes / (result.median_ms * 1e-3) / 1e9


def numpy_copy(src, dst):
    """NumPy's copy (one thread: NumPy does not parallelise element-wise work)."""
    return lambda: np.copyto(dst, src)


def numba_copy(src, dst):
    """A parallel copy compiled by Numba, the same machinery the Numba backend's kernels use."""
    from ._numba_copy import parallel_copy  # only the Numba worker may load Numba's OpenMP runtime

    flat_src, flat_dst = src.reshape(-1), dst.reshape(-1)
    return lambda: parallel_copy(flat_src, flat_dst)


def torch_copy(src, dst):
    """PyTorch's ``copy_`` (parallel over its OpenMP threads for large tensors)."""
    import torch

    source, target = torch.from_numpy(src), torch.from_numpy(dst)
    return lambda: target.copy_(source)


COPIES = {"numpy": numpy_copy, "numba": numba_copy, "torch": torch_copy}
