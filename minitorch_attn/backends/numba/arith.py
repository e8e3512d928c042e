"""Kernels of ``ops/arith.py``: broadcasting product and sum, and their reduction back to a shape."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .checks import _as_float
from .lanes import _lane_dot, _lane_sum


# --------------------------------------------------------------------------
# Broadcasting arithmetic. Runs of adjacent axes that broadcast alike are
# merged (a (N,C,H,W) ⊗ (N,1,H,W) product becomes (N, C, H*W) ⊗ (N, 1, H*W)),
# so the loops see at most four axes and a long contiguous last axis.
# --------------------------------------------------------------------------
def _merged_axes(kernel, shape, operands):
    """Merge adjacent axes of ``shape`` where every operand is either full or 1 alike.

    ``operands`` are shapes of ``len(shape)``. Returns the merged shapes padded
    on the left to 4-D: ``(shape4, [operand4, ...])``.
    """
    runs = []  # [pattern, size, operand sizes]
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        pattern = tuple(op[axis] == size for op in operands)
        if runs and runs[-1][0] == pattern:
            runs[-1][1] *= size
            runs[-1][2] = [n * op[axis] for n, op in zip(runs[-1][2], operands)]
        else:
            runs.append([pattern, size, [op[axis] for op in operands]])
    if len(runs) > 4:
        raise ValueError(f"{kernel}: the shapes {[tuple(op) for op in operands]} broadcast in {len(runs)} "
                         f"separate runs of axes; at most 4 are supported")
    pad = [1] * (4 - len(runs))
    merged = tuple(pad + [run[1] for run in runs])
    per_operand = [tuple(pad + [run[2][k] for run in runs]) for k in range(len(operands))]
    return merged, per_operand


@njit(cache=True)
def _combine(u, v, multiply):
    return u * v if multiply else u + v


#: Elements per task along the last (merged) axis of an element-wise op: two
#: same-shaped operands merge into ONE row of N·C·H·W elements, which must
#: still be shared among the threads (it ran on one thread: 1.5 ms for a CBAM-sized product).
ROW_CHUNK = 16384


@njit(parallel=True, cache=True)
def _binary_loop(a, b, multiply, out):
    """out = a ⊗ b (product if ``multiply`` else sum) for 4-D a, b whose sizes are out's or 1.

    The operands come un-broadcast (contiguous), so each output row reads a
    contiguous row or one repeated number of each operand: the three row loops
    below vectorise, where stride-0 broadcast views did not. A task is one
    chunk of ROW_CHUNK elements of one output row.
    """
    T0, T1, T2, T3 = out.shape
    chunks = (T3 + ROW_CHUNK - 1) // ROW_CHUNK
    for task in prange(T0 * T1 * T2 * chunks):
        row = task // chunks
        i0 = row // (T1 * T2)
        i1 = (row // T2) % T1
        i2 = row % T2
        start = (task % chunks) * ROW_CHUNK
        stop = min(start + ROW_CHUNK, T3)
        # A size-1 axis of an operand is read at index 0 for every output index.
        row_a = a[i0 if a.shape[0] > 1 else 0, i1 if a.shape[1] > 1 else 0, i2 if a.shape[2] > 1 else 0]
        row_b = b[i0 if b.shape[0] > 1 else 0, i1 if b.shape[1] > 1 else 0, i2 if b.shape[2] > 1 else 0]
        chunk_out = out[i0, i1, i2, start:stop]
        if row_a.shape[0] == row_b.shape[0]:
            chunk_a, chunk_b = row_a[start:stop], row_b[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(chunk_a[j], chunk_b[j], multiply)
        elif row_a.shape[0] == 1:
            chunk_b = row_b[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(row_a[0], chunk_b[j], multiply)
        else:
            chunk_a = row_a[start:stop]
            for j in range(stop - start):
                chunk_out[j] = _combine(chunk_a[j], row_b[0], multiply)


@njit(parallel=True, cache=True)
def _sum_to_shape_loop(grad, out):
    """out = grad summed over the axes where out has size 1 (4-D, merged axes alternate kept/summed).

    A task owns one row out[o0, o1, o2] and adds the rows of grad that land on
    it in C order; a summed last axis collapses each of those rows to one number.
    """
    G0, G1, G2, G3 = grad.shape
    T0, T1, T2, T3 = out.shape
    R0 = G0 if T0 == 1 else 1
    R1 = G1 if T1 == 1 else 1
    R2 = G2 if T2 == 1 else 1
    keep_last = T3 == G3
    zero = out.dtype.type(0)
    for task in prange(T0 * T1 * T2):
        o0 = task // (T1 * T2)
        o1 = (task // T2) % T1
        o2 = task % T2
        row = out[o0, o1, o2]
        for j in range(T3):
            row[j] = zero
        # A kept axis has R = 1 and index o; a summed one has o = 0 and R = its size.
        for r0 in range(R0):
            for r1 in range(R1):
                for r2 in range(R2):
                    source = grad[o0 + r0, o1 + r1, o2 + r2]
                    if keep_last:
                        for j in range(T3):
                            row[j] += source[j]
                    else:
                        row[0] += _lane_sum(source)


@njit(parallel=True, cache=True)
def _mul_backward_loop(grad, full, small, dfull, dsmall):
    """dfull = grad ⊗ small (broadcast) and dsmall = grad ⊗ full summed to small's shape, in one pass.

    grad, full, dfull share one 4-D shape; small's axes are theirs or 1 (merged axes alternate).
    Tasks as in :func:`_sum_to_shape_loop`: one row of dsmall each, visiting the grad rows that land
    on it in C order, so neither product is written out and read back.
    """
    G0, G1, G2, G3 = grad.shape
    T0, T1, T2, T3 = small.shape
    R0 = G0 if T0 == 1 else 1
    R1 = G1 if T1 == 1 else 1
    R2 = G2 if T2 == 1 else 1
    keep_last = T3 == G3
    for task in prange(T0 * T1 * T2):
        o0 = task // (T1 * T2)
        o1 = (task // T2) % T1
        o2 = task % T2
        scale = small[o0, o1, o2]
        # A task-local running row: it cannot alias dfull, so the row loop vectorises.
        row = np.zeros(T3, dsmall.dtype)
        for r0 in range(R0):
            for r1 in range(R1):
                for r2 in range(R2):
                    g = grad[o0 + r0, o1 + r1, o2 + r2]
                    f = full[o0 + r0, o1 + r1, o2 + r2]
                    df = dfull[o0 + r0, o1 + r1, o2 + r2]
                    if keep_last:
                        for j in range(G3):
                            df[j] = g[j] * scale[j]
                            row[j] += g[j] * f[j]
                    else:
                        for j in range(G3):
                            df[j] = g[j] * scale[0]
                        row[0] += _lane_dot(g, f)
        dsmall[o0, o1, o2] = row


def _binary(kernel, a, b, multiply):
    # NumPy's promotion (a Python float does not widen float32), then one float dtype for both.
    dtype = np.result_type(a, b)
    a = _as_float(kernel, "a", np.asarray(a, dtype))
    b = _as_float(kernel, "b", np.asarray(b, dtype))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{kernel}: shapes {a.shape} and {b.shape} do not broadcast") from None
    padded = [(1,) * (len(shape) - x.ndim) + x.shape for x in (a, b)]
    merged, (shape_a, shape_b) = _merged_axes(kernel, shape, padded)
    out = np.empty(merged, a.dtype)
    _binary_loop(a.reshape(shape_a), b.reshape(shape_b), multiply, out)
    return out.reshape(shape)


def mul_forward(a, b):
    return _binary("mul_forward", a, b, True)


def mul_backward(grad, a, b, needs_a=True, needs_b=True):
    """Gradients of ``a * b``: ``(sum_to_shape(g·b, a.shape), sum_to_shape(g·a, b.shape))``, None where not needed.

    When both are needed and one operand has grad's shape (CBAM's F' ⊗ M_s), one fused pass;
    otherwise the two kernels above.
    """
    grad = _as_float("mul_backward", "grad", grad)
    a = _as_float("mul_backward", "a", a, dtype=grad.dtype)
    b = _as_float("mul_backward", "b", b, dtype=grad.dtype)
    try:
        expected = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        expected = None
    if expected != grad.shape:
        raise ValueError(f"mul_backward: grad must have the broadcast shape of a {a.shape} and b {b.shape}, "
                         f"got {grad.shape}")
    a_is_full = a.shape == grad.shape
    if not (needs_a and needs_b and (a_is_full or b.shape == grad.shape)):
        da = sum_to_shape(mul_forward(grad, b), a.shape) if needs_a else None
        db = sum_to_shape(mul_forward(grad, a), b.shape) if needs_b else None
        return da, db
    full, small = (a, b) if a_is_full else (b, a)
    padded = (1,) * (grad.ndim - small.ndim) + small.shape
    merged, (small4,) = _merged_axes("mul_backward", grad.shape, [padded])
    dfull, dsmall = np.empty(merged, grad.dtype), np.empty(small4, grad.dtype)
    _mul_backward_loop(grad.reshape(merged), full.reshape(merged), small.reshape(small4), dfull, dsmall)
    dfull, dsmall = dfull.reshape(grad.shape), dsmall.reshape(small.shape)
    return (dfull, dsmall) if a_is_full else (dsmall, dfull)


def add_forward(a, b):
    return _binary("add_forward", a, b, False)


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the axes that were stretched to reach its shape."""
    grad = _as_float("sum_to_shape", "grad", grad)
    shape = tuple(int(n) for n in shape)
    padded = (1,) * (grad.ndim - len(shape)) + shape
    if len(shape) > grad.ndim or any(t not in (1, g) for t, g in zip(padded, grad.shape)):
        raise ValueError(f"sum_to_shape: grad of shape {grad.shape} cannot be summed to shape {shape}")
    if grad.shape == shape:
        return grad
    merged, (grad4, out4) = _merged_axes("sum_to_shape", grad.shape, [grad.shape, padded])
    out = np.empty(out4, grad.dtype)
    _sum_to_shape_loop(grad.reshape(grad4), out)
    return out.reshape(shape)
