"""Lesson 9: the channel-wise mean as a Numba prange kernel (9.1) and as a CUDA kernel launch (9.2)."""
import numpy as np
import pytest
import torch

from minitorch_attn.grading.checks import describe, expect_array

# S = H·W: below one pixel block, exactly one (1024), and more than one with a ragged last block.
SHAPES = [(2, 3, 4, 5), (1, 1, 1, 1), (3, 5, 32, 32), (2, 3, 37, 29)]


def mean_cases(seed, shapes):
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for dtype in (np.float64, np.float32):
            yield (rng.standard_normal(shape) * 4).astype(dtype)


def expected_mean(x):
    return torch.from_numpy(x).mean(dim=1, keepdim=True).numpy()


# -- run in the student's process ----------------------------------------------
def numba_channel_mean(x):
    from minitorch_attn.backends import kernels

    return kernels("numba").channel_mean_forward(x)


def numba_channel_mean_on_one_and_every_thread(x):
    import numba

    from minitorch_attn.backends import kernels

    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = kernels("numba").channel_mean_forward(x)
    finally:
        numba.set_num_threads(threads)
    return one_thread, kernels("numba").channel_mean_forward(x), threads


def cuda_channel_mean(x):
    from minitorch_attn.backends import kernels

    return kernels("cuda").channel_mean_forward(x)


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("9.1", points=2)
def test_numba_channel_mean_matches_torch(student):
    for x in mean_cases(91, SHAPES):
        expect_array(student(numba_channel_mean, x), expected_mean(x), "the channel mean", describe(x=x))


@pytest.mark.exercise("9.1", points=1)
def test_numba_channel_mean_is_the_same_for_any_thread_count(student):
    for x in mean_cases(92, SHAPES[2:]):
        one_thread, every_thread, threads = student(numba_channel_mean_on_one_and_every_thread, x)
        expect_array(every_thread, expected_mean(x), "the channel mean", describe(x=x))
        if not np.array_equal(one_thread, every_thread):
            raise AssertionError(f"{describe(x=x)}: the mean differs between 1 and {threads} threads "
                                 "(a race, or an order of additions that depends on the threads)")


@pytest.mark.cudasim
@pytest.mark.exercise("9.2", points=3)
def test_cuda_channel_mean_matches_torch(student):
    # Tiny shapes: the simulator runs one Python thread per CUDA thread.
    for x in mean_cases(93, [(2, 3, 2, 3), (1, 1, 1, 1), (1, 9, 1, 2)]):
        expect_array(student(cuda_channel_mean, x), expected_mean(x), "the channel mean", describe(x=x))
