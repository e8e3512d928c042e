"""The stacked "wide rows" every conv of :mod:`.conv` and :mod:`.winograd` runs on.

Stack the zero-padded samples of an input plane one under the other into one
tall image, span_w columns wide and span_h rows per sample (a :class:`_Frame`),
and flatten it. Output pixel (o, o') of sample n is flat position
q = (n·span_h + o)·span_w + o' of an output image laid out the same way, and a
tap that reads the input at (o + e, o' + f) reads the planes at
q + (top + e)·span_w + (left + f): ONE offset for the whole batch. Every tap is
then one contiguous multiply-add over all positions, long rows that vectorise,
and no im2col matrix is written. (The columns past OW of each row and the rows
past OH of each sample are junk: computed, never read.)

A stride s becomes a stride 1 by splitting each input plane into its phases
x[a::s] (rows; columns alike): tap kh reads input row o·s + kh·dh − ph, which
is row o + e of phase a for (e, a) = divmod(kh·dh − ph, s) (an :class:`_Axis`).
A strided conv is a stride-1 conv over the phase planes, each tap with its own
phase and shift, and nothing is computed twice or thrown away.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: The loops compute positions in multiples of this: two tiles or four vectors (of 16 float32 or 8 float64 lanes
#: with AVX-512, half as many without) divide it.
POSITION_QUANTUM = 64


def task_count(length, most, threads):
    """How many tasks a loop splits ``length`` positions (a multiple of POSITION_QUANTUM) into: a multiple of
    the thread count, at least four per thread, with at most about ``most`` positions each (and no more tasks
    than quanta). Numba deals a prange's iterations out in equal runs, one per thread, so 9 equal tasks
    on 2 threads kept one thread busy for 5 while the other waited after 4."""
    quanta = length // POSITION_QUANTUM
    tasks = max(-(-quanta // max(1, most // POSITION_QUANTUM)), 4 * threads)
    return min(quanta, -(-tasks // threads) * threads)


@njit(cache=True, inline="always")
def _task_positions(task, tasks, length):
    """Positions [lo, hi) of task ``task`` of ``tasks``: whole quanta, as even as they divide."""
    quanta = length // POSITION_QUANTUM
    return task * quanta // tasks * POSITION_QUANTUM, (task + 1) * quanta // tasks * POSITION_QUANTUM


#: Samples per task of the loops that stack planes and take them apart: a 4×4 plane is too little work
#: for a task of its own (one task per plane and sample made stacking 128 channels of 64 4×4 samples 3× slower).
SAMPLES_PER_TASK = 16


@njit(parallel=True, cache=True)
def _stack_loop(x, sh, sw, phases_h, phases_w, top, left, planes):
    """planes[c, i, j, n, top + r, left + k] = x[n, c, phases_h[i] + r·sh, phases_w[j] + k·sw], 0 elsewhere
    (in every block n, those past the last sample too)."""
    N, C, H, W = x.shape
    _, Ph, Pw, blocks, span_h, span_w = planes.shape
    block_size = span_h * span_w
    stacked, source = planes.reshape(-1), x.reshape(-1)
    # Both column phases of a stride 2 come from one pass over each row, split in two: LLVM vectorises
    # that with shuffles, where a copy of every other element went one at a time (4× as long).
    split_rows = sw == 2 and Pw == 2
    runs = -(-blocks // SAMPLES_PER_TASK)
    for task in prange(C * Ph * runs):
        first = (task % runs) * SAMPLES_PER_TASK
        i = (task // runs) % Ph
        c = task // (runs * Ph)
        rows = (H - phases_h[i] + sh - 1) // sh
        phase_step = blocks * block_size  # from one column phase's planes to the next
        last = min(blocks, first + SAMPLES_PER_TASK)
        # The task's blocks of each column phase are one run: zeroed at once, not block by block (a 4×4
        # sample's block is 25 numbers, and zeroing them one block at a time cost more than copying them)
        run = ((c * Ph + i) * Pw * blocks + first) * block_size
        for j in range(Pw):
            stacked[run + j * phase_step:run + j * phase_step + (last - first) * block_size] = 0
        for n in range(first, last):
            block = ((c * Ph + i) * Pw * blocks + n) * block_size  # column phase 0
            for r in range(rows if n < N else 0):
                at = ((n * C + c) * H + phases_h[i] + r * sh) * W
                to = block + (top + r) * span_w + left
                if split_rows:
                    _split_copy(source, at, W, stacked, to, to + phase_step)
                elif sw == 1:
                    _copy(source, at, stacked, to, W)
                else:
                    for j in range(Pw):
                        _strided_copy(source, at + phases_w[j], sw, stacked, to + j * phase_step, 1,
                                      (W - phases_w[j] + sw - 1) // sw)


@njit(cache=True, inline="always")
def _copy(source, at, dest, to, count):
    """dest[to:to + count] = source[at:at + count]: :func:`_strided_copy` with both steps known to be 1 (given
    at run time, LLVM left the copy scalar: stacking the input of a ResNet-10 stride-1 conv took 1.3–1.7× as
    long, and taking its output apart 1.1–1.5×)."""
    for k in range(count):
        dest[np.uint64(to + k)] = source[np.uint64(at + k)]


@njit(cache=True, inline="always")
def _split_copy(source, at, count, dest, even_to, odd_to):
    """dest[even_to + k] = source[at + 2k] and dest[odd_to + k] = source[at + 2k + 1], for the count elements
    from at (unsigned indices: see :func:`_strided_copy`)."""
    for k in range(count // 2):
        dest[np.uint64(even_to + k)] = source[np.uint64(at + 2 * k)]
        dest[np.uint64(odd_to + k)] = source[np.uint64(at + 2 * k + 1)]
    if count % 2:
        dest[np.uint64(even_to + count // 2)] = source[np.uint64(at + count - 1)]


@njit(parallel=True, cache=True)
def _unstack_loop(wide, sh, sw, a, b, out, odd=None):
    """out[n, c, a + i·sh, b + j·sw] = wide[c, n, i, j] for every such pixel of out: the outputs in the frame
    back in NCHW (for the input gradient, one phase of it). Given ``odd`` (with sw = 2 and b = 0), the odd
    columns too: out[n, c, a + i·sh, 2j + 1] = odd[c, n, i, j], both column phases in one pass, merged (see
    :func:`_stack_loop` on why)."""
    N, C, H, W = out.shape
    _, blocks, span_h, span_w = wide.shape
    rows, columns = (H - a + sh - 1) // sh, (W - b + sw - 1) // sw
    source, dest = wide.reshape(-1), out.reshape(-1)
    odds = source if odd is None else odd.reshape(-1)
    runs = -(-N // SAMPLES_PER_TASK)
    for task in prange(C * runs):
        c = task // runs
        first = (task % runs) * SAMPLES_PER_TASK
        for n in range(first, min(N, first + SAMPLES_PER_TASK)):
            for i in range(rows):
                at, to = ((c * blocks + n) * span_h + i) * span_w, ((n * C + c) * H + a + i * sh) * W + b
                if odd is None and sw == 1:
                    _copy(source, at, dest, to, columns)
                elif odd is None:
                    _strided_copy(source, at, 1, dest, to, sw, columns)
                else:
                    _merge_copy(source, odds, at, W, dest, to)


@njit(cache=True, inline="always")
def _merge_copy(evens, odds, at, count, dest, to):
    """dest[to + 2k] = evens[at + k] and dest[to + 2k + 1] = odds[at + k], for the count elements from to:
    :func:`_split_copy` undone."""
    for k in range(count // 2):
        dest[np.uint64(to + 2 * k)] = evens[np.uint64(at + k)]
        dest[np.uint64(to + 2 * k + 1)] = odds[np.uint64(at + k)]
    if count % 2:
        dest[np.uint64(to + count - 1)] = evens[np.uint64(at + count // 2)]


@njit(cache=True, inline="always")
def _strided_copy(source, at, source_step, dest, to, dest_step, count):
    """dest[to + k·dest_step] = source[at + k·source_step] for k < count, on flat arrays. The indices are
    unsigned: Numba checks a signed one for a negative (wrap-around) index, which kept LLVM from vectorising
    the copy. With signed indices and a view per row, stacking a stride-2 conv's phases took 4× as long."""
    for k in range(count):
        dest[np.uint64(to + k * dest_step)] = source[np.uint64(at + k * source_step)]


class _Axis:
    """One spatial axis of a conv as phases and shifts: tap k reads input index
    o·stride + k·dilation − padding = (o + shift[k])·stride + phase[k]."""

    def __init__(self, size, kernel, stride, padding, dilation):
        self.stride = stride
        self.phase = [(k * dilation - padding) % stride for k in range(kernel)]
        self.shift = [(k * dilation - padding) // stride for k in range(kernel)]
        self.phases = sorted(set(self.phase))  # the phases some tap reads; a 1×1 at stride s reads one
        self.phase_index = [self.phases.index(a) for a in self.phase]
        self.phase_size = max(len(range(a, size, stride)) for a in self.phases)

    def taps_of(self, phase):
        """The taps that read ``phase``, as a slice: k·dilation − padding ≡ phase (mod stride) holds for an
        arithmetic run of k."""
        taps = [k for k, a in enumerate(self.phase) if a == phase]
        return slice(taps[0], taps[-1] + 1, taps[1] - taps[0] if len(taps) > 1 else 1)


def _band(data, out, shifts):
    """``(top, span)`` of one axis of a frame: ``data`` pixels after ``top`` zeros, read at o + shift for
    the ``out`` outputs o. The zero band after a sample's data is the next sample's top band as well: a
    read past the data lands in zeros either way, so the bands are shared, not doubled."""
    top = max(0, -min(shifts))
    return top, max(top + data, out + max(shifts), out, 1)


class _Frame:
    """The stacked layout of one batch of planes: ``(P, blocks, span_h, span_w)``, flattened to (P, positions).

    Sample n's data sit at rows n·span_h + top.., columns left..; its outputs at rows n·span_h..,
    columns 0..out_w − 1, read at shifts ``shifts_h``, ``shifts_w``. The blocks after the last sample
    are zeros, room for the reads of the junk positions up to ``length`` (a multiple of POSITION_QUANTUM).
    """

    def __init__(self, N, data, out, shifts_h, shifts_w):
        self.top, self.span_h = _band(data[0], out[0], shifts_h)
        self.left, self.span_w = _band(data[1], out[1], shifts_w)
        length = ((N - 1) * self.span_h + out[0] - 1) * self.span_w + out[1]
        self.length = -(-length // POSITION_QUANTUM) * POSITION_QUANTUM
        reach = self.offset(max(shifts_h), max(shifts_w)) + POSITION_QUANTUM
        self.blocks = N + -(-reach // (self.span_h * self.span_w))
        self.plane = self.blocks * self.span_h * self.span_w

    @property
    def layout(self):
        return self.top, self.left, self.span_h, self.span_w, self.plane

    def offset(self, shift_h, shift_w):
        """Where a read at (o + shift_h, o' + shift_w) lands, from output position (o, o'), in a plane."""
        return (self.top + np.asarray(shift_h)) * self.span_w + self.left + np.asarray(shift_w)

    def stack(self, x, axis_h=None, axis_w=None, where=None):
        """x (N, C, H, W) in this frame: ``(C·Ph·Pw, positions)``, the used phases of each channel in turn.

        x goes where the data go, or at ``where=(0, 0)`` where the outputs go."""
        phases_h = np.array(axis_h.phases if axis_h else [0], np.int64)
        phases_w = np.array(axis_w.phases if axis_w else [0], np.int64)
        planes = np.empty((x.shape[1], len(phases_h), len(phases_w), self.blocks, self.span_h, self.span_w),
                          x.dtype)
        _stack_loop(x, axis_h.stride if axis_h else 1, axis_w.stride if axis_w else 1, phases_h, phases_w,
                    *(where or (self.top, self.left)), planes)
        return planes.reshape(-1, self.plane)
