"""Trusted stand-ins for every exercise, computed with PyTorch.

While exercise X is graded, every other exercise runs one of these (see
:func:`minitorch_attn.grading.isolation.isolate`), so an unfinished lesson 2
cannot fail lesson 5's tests. Each has the exercise's signature and return
convention (tuples, ``None`` for an absent bias, the input's dtype), but gets
its numbers from ``torch.autograd`` (or a torch scatter), not from the
reference solution. This file ships with the student edition: a backward here
is torch's, not the derivation the lesson asks for; a module-level stand-in
(2.2, 3.4, 4.1, 6.1, 7.2) does show the structure in torch, as the exercise's
docstring already does in words.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..autograd import Function


def _leaf(array):
    return torch.tensor(np.asarray(array), requires_grad=True)


def _vector_jacobian(function, arrays, upstream):
    """Gradients of ``sum(function(*arrays) * upstream)`` w.r.t. each array, as ndarrays of their dtype."""
    leaves = [_leaf(a) for a in arrays]
    with torch.enable_grad():
        out = function(*leaves)
    grads = torch.autograd.grad(out, leaves, torch.as_tensor(np.asarray(upstream)), allow_unused=True)
    return [np.zeros_like(a) if g is None else g.numpy() for a, g in zip(arrays, grads)]


def global_avg_pool_backward(grad, shape):
    (dx,) = _vector_jacobian(lambda x: x.mean(dim=(2, 3)), [np.zeros(shape, grad.dtype)], grad)
    return dx


def _scatter(grad, index, shape, axis):
    return torch.zeros(shape, dtype=torch.from_numpy(grad).dtype).scatter_(
        axis, torch.from_numpy(np.asarray(index, np.int64)), torch.from_numpy(grad)).numpy()


def global_max_pool_backward(grad, index, shape):
    N, C, H, W = shape
    return _scatter(grad[:, :, None], index[:, :, None], (N, C, H * W), 2).reshape(shape)


def channel_mean_backward(grad, shape):
    (dx,) = _vector_jacobian(lambda x: x.mean(dim=1, keepdim=True), [np.zeros(shape, grad.dtype)], grad)
    return dx


def channel_max_backward(grad, index, shape):
    return _scatter(grad, index, shape, 1)


def linear_backward(grad, x, weight, has_bias):
    if not has_bias:
        dx, dweight = _vector_jacobian(F.linear, [x, weight], grad)
        return dx, dweight, None
    bias = np.zeros(weight.shape[0], weight.dtype)
    return tuple(_vector_jacobian(F.linear, [x, weight, bias], grad))


def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias, workspace=None):
    def conv(x, weight, bias=None):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)

    if not has_bias:
        dx, dweight = _vector_jacobian(conv, [x, weight], grad)
        return dx, dweight, None
    bias = np.zeros(weight.shape[0], weight.dtype)
    return tuple(_vector_jacobian(conv, [x, weight, bias], grad))


def batch_norm_backward(grad, xhat, inv_std, weight, training):
    # The kernel sees xhat and 1/σ, not x: x = xhat/inv_std has the same normalised
    # values, and an eps chosen per channel makes var(x) + eps equal 1/inv_std²,
    # so torch.autograd differentiates exactly the statistics of the forward pass.
    as64 = [np.asarray(a, np.float64) for a in (grad, xhat, inv_std, weight)]
    grad64, xhat64, inv_std64, weight64 = as64
    x = xhat64 / inv_std64[None, :, None]
    denominator = torch.from_numpy(1 / inv_std64 ** 2)[None, :, None]

    def normalise(x, weight, bias):
        if not training:
            return (x * torch.from_numpy(inv_std64)[None, :, None]) * weight[None, :, None] + bias[None, :, None]
        centred = x - x.mean(dim=(0, 2), keepdim=True)
        variance = (centred ** 2).mean(dim=(0, 2), keepdim=True)
        eps = (denominator - variance).detach()
        return centred / torch.sqrt(variance + eps) * weight[None, :, None] + bias[None, :, None]

    grads = _vector_jacobian(normalise, [x, weight64, np.zeros_like(weight64)], grad64)
    return tuple(g.astype(grad.dtype) for g in grads)


def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    def gate(x, channel_logit, spatial_logit):
        return x * (1 + torch.sigmoid(channel_logit[:, :, None, None] + spatial_logit))

    return tuple(_vector_jacobian(gate, [x, channel_logit, spatial_logit], grad))


# --------------------------------------------------------------------------
# Module-level exercises take and return minitorch Tensors. The torch part runs
# inside one Function (forward by torch, backward by torch.autograd), so the
# result joins minitorch's tape like any other op; layers that are not
# exercises (BatchNorm modules) are called as they are.
# --------------------------------------------------------------------------
class _TorchComputation(Function):
    @staticmethod
    def forward(ctx, *arrays, compute):
        ctx.leaves = [_leaf(a) for a in arrays]
        with torch.enable_grad():
            ctx.out = compute(*ctx.leaves)
        return ctx.out.detach().numpy().copy()

    @staticmethod
    def backward(ctx, grad):
        grads = torch.autograd.grad(ctx.out, ctx.leaves, torch.from_numpy(np.ascontiguousarray(grad)),
                                    allow_unused=True)
        return tuple(None if g is None else g.numpy() for g in grads)


def _in_torch(compute, *tensors):
    """``compute(*torch tensors)`` as a minitorch Tensor whose backward is torch's."""
    return _TorchComputation.apply(*tensors, compute=compute)


def _broadcast_logit(logit):
    """(N, C) -> (N, C, 1, 1); (N, 1, H, W) stays."""
    return logit.reshape(logit.shape + (1,) * (4 - logit.dim()))


def channel_attention_logit(descriptors, w0, b0, w1, b1):
    def shared_mlp_sum(w0, b0, w1, b1, *descriptors):
        return sum(F.linear(torch.relu(F.linear(d, w0, b0)), w1, b1) for d in descriptors)

    return _in_torch(shared_mlp_sum, w0, b0, w1, b1, *descriptors)


def spatial_attention_logit(compressed, weight, bn=None):
    size = weight.shape[-1]
    logit = _in_torch(lambda c, w: F.conv2d(c, w, padding=size // 2), compressed, weight)
    return logit if bn is None else bn(logit)


def cbam_attention(x, channel_gate, spatial_gate, arrangement="channel-spatial"):
    def gated(features, logit):
        return _in_torch(lambda f, g: f * torch.sigmoid(_broadcast_logit(g)), features, logit)

    if spatial_gate is None:
        return gated(x, channel_gate.logit(x))
    if arrangement == "parallel":
        return _in_torch(lambda f, c, s: f * torch.sigmoid(_broadcast_logit(c) + s),
                         x, channel_gate.logit(x), spatial_gate.logit(x))
    first, second = (spatial_gate, channel_gate) if arrangement == "spatial-channel" else (channel_gate, spatial_gate)
    refined = gated(x, first.logit(x))
    return gated(refined, second.logit(refined))


def bam_spatial_logit(x, convs, norms, dilation):
    h = x
    for layer, ((weight, bias), norm) in enumerate(zip(convs, norms)):
        # The first and last convs are 1×1; the ones between are the dilated 3×3 convs.
        spread = dilation if 0 < layer < len(convs) - 1 else 1
        h = _in_torch(lambda h, w, b: F.conv2d(h, w, b, padding=spread * (w.shape[-1] // 2), dilation=spread),
                      h, weight, bias)
        if norm is not None:
            h = norm(h)
        if layer < len(convs) - 1:
            h = _in_torch(torch.relu, h)
    return h


def bam_fuse(x, channel_logit, spatial_logit, fusion="sum"):
    logits = [t for t in (channel_logit, spatial_logit) if t is not None]

    def residual(f, *logits):
        expanded = [_broadcast_logit(g) for g in logits]
        if len(expanded) == 1:
            combined = expanded[0]
        elif fusion == "sum":
            combined = expanded[0] + expanded[1]
        elif fusion == "product":
            combined = expanded[0] * expanded[1]
        else:  # max; at ties the gradient goes to the channel logit
            combined = torch.where(expanded[0] >= expanded[1], expanded[0], expanded[1])
        return f * (1 + torch.sigmoid(combined))

    return _in_torch(residual, x, *logits)


def channel_mean_forward(x):
    """The Numba (9.1) and CUDA (9.2) channel-mean kernels: (N, C, H, W) -> (N, 1, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(x)).mean(dim=1, keepdim=True).numpy()


def welch_t_test(a, b):
    """Welch's (t, df, p) with torch's mean and variance; p by the trapezoid rule over the t density."""
    a, b = torch.tensor(np.asarray(a, float)), torch.tensor(np.asarray(b, float))
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch_t_test needs at least two values per side, got {len(a)} and {len(b)}")
    va, vb = (a.var() / len(a)).item(), (b.var() / len(b)).item()
    gap = (a.mean() - b.mean()).item()
    if va + vb == 0:
        return (math.copysign(math.inf, gap) if gap else 0.0), math.inf, (0.0 if gap else 1.0)
    t = gap / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    x = torch.linspace(0.0, abs(t), 200_001, dtype=torch.float64)
    nu = torch.tensor(df, dtype=torch.float64)
    density = torch.exp(torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
                        - (nu + 1) / 2 * torch.log1p(x * x / nu))
    return t, df, max(0.0, 1.0 - 2.0 * torch.trapezoid(density, x).item())


def receptive_field(layers):
    """Measured, not derived: the input pixels a middle output pixel's gradient reaches through all-ones convs."""
    layers = [tuple(layer) for layer in layers]
    span = 1 + sum(d * (k - 1) for k, _, d in layers) * int(np.prod([s for _, s, _ in layers] or [1]))
    x = torch.zeros(1, 1, 3 * span + 64, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        h = x
        for k, s, d in layers:
            h = F.conv1d(h, torch.ones(1, 1, k, dtype=torch.float64), stride=s, dilation=d)
        h[0, 0, h.shape[-1] // 2].backward()
    reached = np.flatnonzero(x.grad[0, 0].numpy())
    return int(reached[-1] - reached[0] + 1)


def sgd_update(param, grad, buffer, lr, momentum, weight_decay):
    """torch.optim.SGD's step on ``param`` (in place, through a tensor sharing its memory); returns the buffer."""
    leaf = torch.nn.Parameter(torch.from_numpy(param))
    leaf.grad = torch.from_numpy(np.array(grad))
    optimizer = torch.optim.SGD([leaf], lr=lr, momentum=momentum, weight_decay=weight_decay)
    if buffer is not None and momentum:
        optimizer.state[leaf]["momentum_buffer"] = torch.from_numpy(np.array(buffer))
    with torch.no_grad():
        optimizer.step()
    state = optimizer.state[leaf].get("momentum_buffer")
    return None if state is None else state.numpy().copy()


def conv_macs(weight, output_shape):
    """PyTorch's FLOP counter on a stride-1 conv with the same weight and output size (meta tensors), halved."""
    from torch.utils.flop_counter import FlopCounterMode

    out_h, out_w = output_shape[2], output_shape[3]
    k_h, k_w = weight.shape[2], weight.shape[3]
    x = torch.empty((1, weight.shape[1], out_h + k_h - 1, out_w + k_w - 1), device="meta")
    with FlopCounterMode(display=False) as counter:
        F.conv2d(x, torch.empty(tuple(weight.shape), device="meta"))
    return int(counter.get_total_flops() // 2)


def grad_cam_map(activations, gradients):
    a, g = torch.from_numpy(np.asarray(activations)), torch.from_numpy(np.asarray(gradients))
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).numpy()


def pointing_hits(cams, masks):
    flat = torch.from_numpy(np.ascontiguousarray(cams)).flatten(1)
    peak = flat.argmax(dim=1)  # the first maximum, as np.argmax
    inside = torch.from_numpy(np.ascontiguousarray(masks)).flatten(1).gather(1, peak[:, None])[:, 0]
    return (inside & (flat.amax(dim=1) > 0)).numpy()


#: Exercise id -> trusted implementation. Every exercise in the registry must have one (a test checks).
TRUSTED = {
    "1.1": global_avg_pool_backward,
    "1.2": global_max_pool_backward,
    "2.1": linear_backward,
    "3.1": channel_mean_backward,
    "3.2": channel_max_backward,
    "3.3": conv2d_backward,
    "5.1": batch_norm_backward,
    "7.1": residual_gate_backward,
    "2.2": channel_attention_logit,
    "3.4": spatial_attention_logit,
    "4.1": cbam_attention,
    "6.1": bam_spatial_logit,
    "7.2": bam_fuse,
    "9.1": channel_mean_forward,
    "9.2": channel_mean_forward,
    "11.1": welch_t_test,
    "12.1": receptive_field,
    "10.1": sgd_update,
    "13.1": conv_macs,
    "14.1": grad_cam_map,
    "14.2": pointing_hits,
}
