"""Kernels of ``ops/attention.py`` and the fused CBAM pooling: one pass over F where NumPy makes several."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..add_to import check_add_to
from .checks import _as_float, _as_index, _check_shape
from .lanes import PIXEL_BLOCK, _block_count, _lane_dot, _lane_sum, _replaces_max, _sigmoid
from .pooling import _channels


# --------------------------------------------------------------------------
# Fused attention kernels: one pass over the (N, C, H, W) tensor where the
# numpy backend composes several kernels (and several passes).
# --------------------------------------------------------------------------


@njit(cache=True)
def _gated_pool_channel(x_row, g, c, total, peak, where):
    """One channel c of :func:`_gated_channel_pool_loop`, for the channels left over after the groups of four."""
    for s in range(x_row.shape[0]):
        value = x_row[s] * g
        total[s] += value
        if _replaces_max(value, peak[s]):
            peak[s], where[s] = value, c


@njit(parallel=True, cache=True)
def _gated_channel_pool_loop(x, gate, pooled, index):
    """pooled[n, 0] = mean_c y, pooled[n, 1] = max_c y, index = first argmax over c, for y = gate ⊗ x
    formed in registers only."""
    N, C, S = x.shape
    count = x.dtype.type(C)
    blocks = _block_count(S)
    for task in prange(N * blocks):
        n = task // blocks
        start = (task % blocks) * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        # Running sum/max/argmax of this pixel block, in task-local rows (they
        # stay in L1; LLVM vectorises the loop only when they cannot alias x;
        # int32 channel numbers keep the select as wide as the float32 one).
        total = np.zeros(stop - start, x.dtype)
        peak = np.full(stop - start, -np.inf, x.dtype)
        where = np.zeros(stop - start, np.int32)
        # Channel rows in order, four per pass over the running rows (a quarter
        # of their loads and stores, which bounded the one-channel loop: 2×
        # slower). Strict > in channel order keeps the first maximal channel.
        whole = C - C % 4
        for c in range(0, whole, 4):
            g0, g1, g2, g3 = gate[n, c], gate[n, c + 1], gate[n, c + 2], gate[n, c + 3]
            x0, x1, x2, x3 = (x[n, c, start:stop], x[n, c + 1, start:stop],
                              x[n, c + 2, start:stop], x[n, c + 3, start:stop])
            for s in range(stop - start):
                v0, v1, v2, v3 = x0[s] * g0, x1[s] * g1, x2[s] * g2, x3[s] * g3
                total[s] += (v0 + v1) + (v2 + v3)
                best, best_channel = peak[s], where[s]
                if _replaces_max(v0, best):
                    best, best_channel = v0, c
                if _replaces_max(v1, best):
                    best, best_channel = v1, c + 1
                if _replaces_max(v2, best):
                    best, best_channel = v2, c + 2
                if _replaces_max(v3, best):
                    best, best_channel = v3, c + 3
                peak[s], where[s] = best, best_channel
        for c in range(whole, C):
            _gated_pool_channel(x[n, c, start:stop], gate[n, c], c, total, peak, where)
        for s in range(stop - start):
            pooled[n, 0, start + s] = total[s] / count
            pooled[n, 1, start + s] = peak[s]
            index[n, start + s] = where[s]


@njit(parallel=True, cache=True)
def _gated_channel_pool_backward_loop(mean_share, grad_max, x, gate, index, dx, dgate, add):
    """dy = g_mean/C + g_max·[c = argmax]; dx = dy·gate (added into dx with ``add``); dgate[n, c] = Σ_s dy·x.

    ``mean_share`` is the plane g_mean/C (divided once per pixel by the wrapper,
    not once per element here). One (n, c) plane per task: the task owns
    dx[n, c] and dgate[n, c]; dy lives in a task-local row (it stays in L1).
    """
    N, C, S = x.shape
    zero = x.dtype.type(0)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        share, peak_grad, where, out = mean_share[n], grad_max[n], index[n], dx[n, c]
        dy = np.empty(S, x.dtype)
        for s in range(S):
            # a select, not a branch, so that the loop vectorises
            dy[s] = share[s] + (peak_grad[s] if where[s] == c else zero)
        dgate[n, c] = _lane_dot(dy, x[n, c])
        g = gate[n, c]
        if add:
            for s in range(S):
                out[s] += dy[s] * g
        else:
            for s in range(S):
                out[s] = dy[s] * g


@njit(parallel=True, cache=True)
def _channel_spatial_gate_loop(x, channel_gate, spatial_gate, out):
    """out = (x · Mc[n, c]) · Ms[n, s]: CBAM's F'' = Ms ⊗ (Mc ⊗ F), F' formed in registers only."""
    N, C, S = x.shape
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        value, ms, out_row, g = x[n, c], spatial_gate[n], out[n, c], channel_gate[n, c]
        for s in range(S):
            out_row[s] = (value[s] * g) * ms[s]


@njit(parallel=True, cache=True)
def _channel_spatial_gate_backward_loop(grad, x, channel_gate, spatial_gate, dx, dspatial, dchannel_parts):
    """dF' = g·Ms; dx = dF'·Mc; dMc[n, c] = Σ_s dF'·x; dMs[n, s] = Σ_c g·(x·Mc).

    Tasks as in :func:`_residual_gate_backward_loop`: one sample and one pixel block, owning
    dMs[n, block], with dMc's per-block partial sums added afterwards in block order.
    """
    N, C, S = x.shape
    blocks = dchannel_parts.shape[1]
    for task in prange(N * blocks):
        n = task // blocks
        block = task % blocks
        start = block * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        dgated = np.empty(stop - start, x.dtype)
        spatial_total = dspatial[n, start:stop]
        spatial_total[:] = 0
        ms = spatial_gate[n, start:stop]
        for c in range(C):
            upstream, value, dx_row = grad[n, c, start:stop], x[n, c, start:stop], dx[n, c, start:stop]
            g = channel_gate[n, c]
            for s in range(stop - start):
                spatial_total[s] += upstream[s] * (value[s] * g)
            for s in range(stop - start):
                dgated[s] = upstream[s] * ms[s]
            for s in range(stop - start):
                dx_row[s] = dgated[s] * g
            dchannel_parts[n, block, c] = _lane_dot(dgated, value)


#: |logit| bound under which BAM's gate is computed factored (see _residual_sigmoid_row):
#: e^(2·bound) stays finite and e^(-2·bound) stays a normal number in the dtype.
FACTORED_SIGMOID_BOUND = {np.dtype(np.float32): 40.0, np.dtype(np.float64): 340.0}


@njit(cache=True, inline="always")
def _residual_sigmoid_row(gate, mc, ms, exp_neg_ms, factored, one):
    """gate[s] = σ(mc + ms[s]) along a row of pixels.

    Factored: e^-(mc+ms) = e^-mc · e^-ms, whose exps were taken once per channel
    (here) and once per pixel (the wrapper), so the per-element work is a
    multiply and a divide that vectorise (Numba's exp does not: it is a scalar
    libm call per element). The test on ``factored`` sits outside the pixel
    loops: with it inside, neither loop vectorised (6× slower). Inlined into
    the caller's loop by Numba: compiled as a separate function, the divide
    loop did not vectorise either.
    """
    if factored:
        exp_neg_mc = np.exp(-mc)
        for s in range(gate.shape[0]):
            gate[s] = one / (one + exp_neg_mc * exp_neg_ms[s])
    else:
        for s in range(gate.shape[0]):
            gate[s] = _sigmoid(mc + ms[s], one)


@njit(parallel=True, cache=True)
def _negated_exp_loop(values, out):
    for i in prange(values.shape[0]):
        out[i] = np.exp(-values[i])


@njit(parallel=True, cache=True)
def _residual_gate_loop(x, channel_logit, spatial_logit, exp_neg_spatial, factored, out):
    """out = x + x·σ(Mc[n, c] + Ms[n, s]), i.e. BAM's (1 + σ(Mc + Ms)) ⊗ F."""
    N, C, S = x.shape
    one = x.dtype.type(1)
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        value, out_row = x[n, c], out[n, c]
        # The output row holds σ first (it stays in L1), then x + x·σ.
        _residual_sigmoid_row(out_row, channel_logit[n, c], spatial_logit[n], exp_neg_spatial[n], factored, one)
        for s in range(S):
            out_row[s] = value[s] + value[s] * out_row[s]


@njit(parallel=True, cache=True)
def _residual_gate_backward_loop(grad, x, channel_logit, spatial_logit, exp_neg_spatial, factored,
                                 dx, dspatial, dchannel_parts):
    """σ = σ(Mc + Ms); dx = g·(1 + σ); dz = g·x·σ(1 - σ); dMs[n, s] = Σ_c dz; dMc[n, c] = Σ_s dz.

    A task is one sample and one pixel block: it owns dMs[n, block] and adds the
    channels in order; dMc needs every block, so each task writes its partial
    sum to dchannel_parts[n, block, c] and the blocks are added afterwards in
    order (the block layout depends on S only, never on the thread count).
    """
    N, C, S = x.shape
    one = x.dtype.type(1)
    blocks = dchannel_parts.shape[1]
    for task in prange(N * blocks):
        n = task // blocks
        block = task % blocks
        start = block * PIXEL_BLOCK
        stop = min(start + PIXEL_BLOCK, S)
        # Short loops over task-local rows (in L1): with fewer arrays per loop
        # LLVM can prove them independent and vectorises each (one fused loop
        # ran 7× slower).
        gate = np.empty(stop - start, x.dtype)
        dlogit = np.empty(stop - start, x.dtype)
        spatial_total = dspatial[n, start:stop]
        spatial_total[:] = 0
        ms, exp_neg_ms = spatial_logit[n, start:stop], exp_neg_spatial[n, start:stop]
        for c in range(C):
            upstream, value, dx_row = grad[n, c, start:stop], x[n, c, start:stop], dx[n, c, start:stop]
            _residual_sigmoid_row(gate, channel_logit[n, c], ms, exp_neg_ms, factored, one)
            for s in range(stop - start):
                dx_row[s] = upstream[s] * (one + gate[s])
            for s in range(stop - start):
                dlogit[s] = upstream[s] * value[s] * gate[s] * (one - gate[s])
            for s in range(stop - start):
                spatial_total[s] += dlogit[s]
            dchannel_parts[n, block, c] = _lane_sum(dlogit)


@njit(parallel=True, cache=True)
def _sum_blocks_loop(parts, total):
    """total[n, c] = Σ_block parts[n, block, c], blocks in order."""
    N, blocks, C = parts.shape
    for task in prange(N * C):
        n = task // C
        c = task % C
        acc = parts[n, 0, c]
        for block in range(1, blocks):
            acc += parts[n, block, c]
        total[n, c] = acc


def _gated_inputs(kernel, x, gate):
    x3, pooled_shape = _channels(kernel, x, is_max=True)
    gate = _as_float(kernel, "gate", gate, 2, x3.dtype)
    _check_shape(kernel, "gate", gate, x3.shape[:2])
    return x3, gate, pooled_shape


def gated_channel_pool_forward(x, gate):
    """CBAM's channel pool of ``y = gate ⊗ x``, y never stored: ``(pooled (N,2,H,W) = [mean; max], index (N,1,H,W))``."""
    x3, gate, (N, _, H, W) = _gated_inputs("gated_channel_pool_forward", x, gate)
    pooled = np.empty((N, 2, H * W), x3.dtype)
    index = np.empty((N, H * W), np.int64)
    _gated_channel_pool_loop(x3, gate, pooled, index)
    return pooled.reshape(N, 2, H, W), index.reshape(N, 1, H, W)


def gated_channel_pool_backward(grad_pooled, x, gate, index, add_to=None):
    """Returns ``(dx, dgate)``; ``add_to``: None, or the gradient collected for x so far, to add dx into."""
    kernel = "gated_channel_pool_backward"
    x3, gate, (N, _, H, W) = _gated_inputs(kernel, x, gate)
    grad_pooled = _as_float(kernel, "grad_pooled", grad_pooled, 4, x3.dtype)
    _check_shape(kernel, "grad_pooled", grad_pooled, (N, 2, H, W))
    index = _as_index(kernel, "index", index, (N, 1, H, W), x3.shape[1])
    add_to = check_add_to(kernel, add_to, np.shape(x), x3.dtype)
    dx = np.empty_like(x3) if add_to is None else add_to.reshape(x3.shape)
    dgate = np.empty(gate.shape, x3.dtype)
    grad_pooled = grad_pooled.reshape(N, 2, H * W)
    mean_share = grad_pooled[:, 0] / x3.dtype.type(x3.shape[1])
    _gated_channel_pool_backward_loop(mean_share, np.ascontiguousarray(grad_pooled[:, 1]), x3, gate,
                                      index.reshape(N, H * W), dx, dgate, add_to is not None)
    return dx.reshape(np.shape(x)) if add_to is None else add_to, dgate


def _two_gates(kernel, x, channel_gate, spatial_gate):
    x3, spatial_shape = _channels(kernel, x)
    channel_gate = _as_float(kernel, "channel_gate", channel_gate, 2, x3.dtype)
    _check_shape(kernel, "channel_gate", channel_gate, x3.shape[:2])
    spatial_gate = _as_float(kernel, "spatial_gate", spatial_gate, 4, x3.dtype)
    _check_shape(kernel, "spatial_gate", spatial_gate, spatial_shape)
    return x3, channel_gate, spatial_gate.reshape(x3.shape[0], x3.shape[2])


def channel_spatial_gate_forward(x, channel_gate, spatial_gate):
    """CBAM's ``(x ⊗ Mc) ⊗ Ms`` with Mc (N,C) and Ms (N,1,H,W) broadcast."""
    x3, channel_gate, spatial_gate = _two_gates("channel_spatial_gate_forward", x, channel_gate, spatial_gate)
    out = np.empty_like(x3)
    _channel_spatial_gate_loop(x3, channel_gate, spatial_gate, out)
    return out.reshape(np.shape(x))


def channel_spatial_gate_backward(grad, x, channel_gate, spatial_gate):
    """Returns ``(dx, dchannel_gate (N,C), dspatial_gate (N,1,H,W))``."""
    kernel = "channel_spatial_gate_backward"
    x3, channel_gate, spatial_gate = _two_gates(kernel, x, channel_gate, spatial_gate)
    grad = _as_float(kernel, "grad", grad, 4, x3.dtype)
    _check_shape(kernel, "grad", grad, np.shape(x))
    N, C, S = x3.shape
    dx, dspatial = np.empty_like(x3), np.empty((N, S), x3.dtype)
    parts = np.empty((N, _block_count(S), C), x3.dtype)
    _channel_spatial_gate_backward_loop(grad.reshape(x3.shape), x3, channel_gate, spatial_gate, dx, dspatial, parts)
    dchannel = np.empty((N, C), x3.dtype)
    _sum_blocks_loop(parts, dchannel)
    return dx.reshape(np.shape(x)), dchannel, dspatial.reshape(N, 1, *np.shape(x)[2:])


def _residual_inputs(kernel, x, channel_logit, spatial_logit):
    x3, spatial_shape = _channels(kernel, x)
    channel_logit = _as_float(kernel, "channel_logit", channel_logit, 2, x3.dtype)
    _check_shape(kernel, "channel_logit", channel_logit, x3.shape[:2])
    spatial_logit = _as_float(kernel, "spatial_logit", spatial_logit, 4, x3.dtype)
    _check_shape(kernel, "spatial_logit", spatial_logit, spatial_shape)
    spatial_logit = spatial_logit.reshape(x3.shape[0], x3.shape[2])
    # Factor σ's exp when no logit is large enough for e^-Mc · e^-Ms to overflow
    # or underflow (always, in practice); otherwise one exp per element.
    bound = FACTORED_SIGMOID_BOUND[x3.dtype]
    factored = bool(np.abs(channel_logit).max() <= bound and np.abs(spatial_logit).max() <= bound)
    exp_neg_spatial = np.zeros(spatial_logit.shape, x3.dtype)  # read only when factored
    if factored:
        _negated_exp_loop(spatial_logit.reshape(-1), exp_neg_spatial.reshape(-1))
    return x3, channel_logit, spatial_logit, exp_neg_spatial, factored


def residual_gate_forward(x, channel_logit, spatial_logit):
    """BAM's output ``(1 + σ(Mc + Ms)) ⊗ x`` with Mc (N,C) and Ms (N,1,H,W) broadcast."""
    x3, *logits = _residual_inputs("residual_gate_forward", x, channel_logit, spatial_logit)
    out = np.empty_like(x3)
    _residual_gate_loop(x3, *logits, out)
    return out.reshape(np.shape(x))


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    """Returns ``(dx, dchannel_logit (N,C), dspatial_logit (N,1,H,W))``."""
    kernel = "residual_gate_backward"
    x3, *logits = _residual_inputs(kernel, x, channel_logit, spatial_logit)
    grad = _as_float(kernel, "grad", grad, 4, x3.dtype)
    _check_shape(kernel, "grad", grad, np.shape(x))
    N, C, S = x3.shape
    dx = np.empty_like(x3)
    dspatial = np.empty((N, S), x3.dtype)
    parts = np.empty((N, -(-S // PIXEL_BLOCK), C), x3.dtype)
    _residual_gate_backward_loop(grad.reshape(x3.shape), x3, *logits, dx, dspatial, parts)
    dchannel = np.empty((N, C), x3.dtype)
    _sum_blocks_loop(parts, dchannel)
    N, _, H, W = np.shape(x)
    return dx.reshape(N, C, H, W), dchannel, dspatial.reshape(N, 1, H, W)
