"""The reference backend: readable NumPy, the textbook every other backend is checked against.

Each kernel is the plain math of one op in ``minitorch_attn.ops`` (where the
formula is stated); shapes use PyTorch's NCHW. Kernels take and return
ndarrays and keep the input dtype.

Tie rule for every max: the whole gradient goes to ONE element, the first
maximum in C order (``np.argmax``), which is the element PyTorch's
``max_pool2d`` and ``torch.max(dim)`` pick. Splitting it between tied elements
(what ``amax`` does) is also a valid subgradient, but then the numbers differ
from PyTorch's index-based ops and from our Numba/CUDA kernels.
"""
from __future__ import annotations

import numpy as np

from ..exercise import exercise
from .add_to import added, check_add_to


# --------------------------------------------------------------------------
# Global pooling over H×W: (N, C, H, W) -> (N, C)
# --------------------------------------------------------------------------
def global_avg_pool_forward(x):
    return x.mean(axis=(2, 3))


@exercise("1.1", "backward of global average pooling, dF[n,c,i,j] = g[n,c] / (H*W) (lesson 1)")
def global_avg_pool_backward(grad, shape):
    N, C, H, W = shape
    # BEGIN SOLUTION
    return np.broadcast_to((grad / (H * W))[:, :, None, None], shape).copy()
    # END SOLUTION


def global_max_pool_forward(x):
    """Returns ``(out, index)``; ``index[n, c]`` is the flat H×W position of the first maximum."""
    N, C, H, W = x.shape
    flat = x.reshape(N, C, H * W)
    index = flat.argmax(axis=2)
    return np.take_along_axis(flat, index[:, :, None], axis=2)[:, :, 0], index


@exercise("1.2", "backward of global max pooling: all of g[n,c] to the first maximum (lesson 1)")
def global_max_pool_backward(grad, index, shape):
    N, C, H, W = shape
    # BEGIN SOLUTION
    dx = np.zeros((N, C, H * W), grad.dtype)
    np.put_along_axis(dx, index[:, :, None], grad[:, :, None], axis=2)
    return dx.reshape(shape)
    # END SOLUTION


def global_lp_pool_forward(x):
    return np.sqrt((x * x).sum(axis=(2, 3)))


def global_lp_pool_backward(grad, x, out):
    # d sqrt(sum x^2) / dx = x / out; at out == 0 every x is 0 and we take the
    # subgradient 0 (PyTorch gives NaN there).
    safe = np.where(out > 0, out, 1)
    return (grad / safe)[:, :, None, None] * x * (out > 0)[:, :, None, None]


def global_lse_pool_forward(x):
    # Subtracting the max before exp keeps exp() <= 1: no overflow for large inputs. An infinite
    # max is replaced by 0, as in PyTorch's logsumexp: +inf then gives +inf, not inf - inf = NaN.
    peak = x.max(axis=(2, 3), keepdims=True)
    peak = np.where(np.isinf(peak), 0, peak).astype(x.dtype, copy=False)
    return peak[:, :, 0, 0] + np.log(np.exp(x - peak).sum(axis=(2, 3)))


def global_lse_pool_backward(grad, x, out):
    return grad[:, :, None, None] * np.exp(x - out[:, :, None, None])


# --------------------------------------------------------------------------
# Pooling over channels (CBAM's "channel pool"): (N, C, H, W) -> (N, 1, H, W)
# --------------------------------------------------------------------------
def channel_mean_forward(x):
    return x.mean(axis=1, keepdims=True)


@exercise("3.1", "backward of the channel-wise mean, dF[n,c,i,j] = g[n,0,i,j] / C (lesson 3)")
def channel_mean_backward(grad, shape):
    # BEGIN SOLUTION
    return np.broadcast_to(grad / shape[1], shape).copy()
    # END SOLUTION


def channel_max_forward(x):
    """Returns ``(out, index)``; ``index[n, 0, i, j]`` is the channel of the first maximum."""
    index = x.argmax(axis=1)[:, None]
    return np.take_along_axis(x, index, axis=1), index


@exercise("3.2", "backward of the channel-wise max: g to the first maximal channel (lesson 3)")
def channel_max_backward(grad, index, shape):
    # BEGIN SOLUTION
    dx = np.zeros(shape, grad.dtype)
    np.put_along_axis(dx, index, grad, axis=1)
    return dx
    # END SOLUTION


# --------------------------------------------------------------------------
# Dense layers and activations
# --------------------------------------------------------------------------
def linear_forward(x, weight, bias):
    out = x @ weight.T
    return out if bias is None else out + bias


@exercise("2.1", "backward of y = x W^T + b: dx, dW and db (lesson 2, the shared MLP)")
def linear_backward(grad, x, weight, has_bias):
    # BEGIN SOLUTION
    dx = grad @ weight
    dweight = grad.T @ x
    dbias = grad.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
    # END SOLUTION


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(grad, out):
    # The gradient is stopped where out <= 0 (subgradient 0 at 0) and passes elsewhere, NaN included,
    # as PyTorch's threshold_backward does.
    return np.where(out <= 0, 0, grad).astype(grad.dtype, copy=False)


def sigmoid_forward(x):
    # Two branches so that exp() only ever sees a non-positive argument:
    # 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0 never overflow.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(grad, out):
    return grad * out * (1 - out)


# --------------------------------------------------------------------------
# Broadcasting arithmetic
# --------------------------------------------------------------------------
def mul_forward(a, b):
    return a * b


def add_forward(a, b):
    return a + b


def sum_to_shape(grad, shape):
    """Undo broadcasting: sum ``grad`` over the axes that were stretched to reach its shape."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


def mul_backward(grad, a, b, needs_a=True, needs_b=True):
    """Gradients of ``a * b``: ``(sum_to_shape(g·b, a.shape), sum_to_shape(g·a, b.shape))``, None where not needed."""
    da = sum_to_shape(mul_forward(grad, b), a.shape) if needs_a else None
    db = sum_to_shape(mul_forward(grad, a), b.shape) if needs_b else None
    return da, db


# --------------------------------------------------------------------------
# Convolution (stride, zero padding, dilation, groups)
# --------------------------------------------------------------------------
def _tap(array, i, j, stride, dilation, out_hw):
    """The input pixels kernel tap (i, j) sees for every output pixel: a strided view."""
    (sh, sw), (dh, dw), (OH, OW) = stride, dilation, out_hw
    return array[:, :, i * dh : i * dh + sh * (OH - 1) + 1 : sh, j * dw : j * dw + sw * (OW - 1) + 1 : sw]


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, workspace=None):
    """``workspace``: a dict the op hands to this kernel and then to conv2d_backward; this backend keeps nothing."""
    N, C, H, W = x.shape
    CO, CG, KH, KW = weight.shape
    G = groups
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    wg = weight.reshape(G, CO // G, CG, KH, KW)
    out = np.zeros((N, G, CO // G, OH, OW), x.dtype)
    # One kernel tap at a time: every output pixel adds w[:, :, i, j] times the
    # input pixel that tap sees, so the loop runs KH*KW times, not N*C*OH*OW.
    for i in range(KH):
        for j in range(KW):
            patch = _tap(xp, i, j, stride, dilation, (OH, OW)).reshape(N, G, CG, OH, OW)
            out += np.einsum("ngchw,goc->ngohw", patch, wg[..., i, j])
    out = out.reshape(N, CO, OH, OW)
    return out if bias is None else out + bias[None, :, None, None]


@exercise("3.3", "backward of conv2d: dx, dw and db for any stride/padding/dilation/groups (lessons 3 and 6)")
def conv2d_backward(grad, x, weight, stride, padding, dilation, groups, has_bias, workspace=None):
    N, C, H, W = x.shape
    CO, CG, KH, KW = weight.shape
    G = groups
    OH, OW = grad.shape[2:]
    # BEGIN SOLUTION
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    dxp = np.zeros_like(xp)
    wg = weight.reshape(G, CO // G, CG, KH, KW)
    gg = grad.reshape(N, G, CO // G, OH, OW)
    dweight = np.zeros_like(wg)
    for i in range(KH):
        for j in range(KW):
            patch = _tap(xp, i, j, stride, dilation, (OH, OW)).reshape(N, G, CG, OH, OW)
            dweight[..., i, j] = np.einsum("ngohw,ngchw->goc", gg, patch)
            # The same view, written to: each input pixel collects the gradient of
            # every output pixel it fed through this tap.
            _tap(dxp, i, j, stride, dilation, (OH, OW))[...] += np.einsum(
                "ngohw,goc->ngchw", gg, wg[..., i, j]
            ).reshape(N, C, OH, OW)
    dx = dxp[:, :, padding[0] : padding[0] + H, padding[1] : padding[1] + W]
    dbias = grad.sum(axis=(0, 2, 3)) if has_bias else None
    return np.ascontiguousarray(dx), dweight.reshape(weight.shape), dbias
    # END SOLUTION


# --------------------------------------------------------------------------
# Batch norm on (N, C, L): statistics per channel over N and L
# --------------------------------------------------------------------------
def batch_norm_train_forward(x, weight, bias, eps):
    """Returns ``(out, xhat, inv_std, mean, biased_var)`` with batch statistics."""
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mean[None, :, None]) * inv_std[None, :, None]
    return xhat * weight[None, :, None] + bias[None, :, None], xhat, inv_std, mean, var


def batch_norm_eval_forward(x, running_mean, running_var, weight, bias, eps):
    """Returns ``(out, xhat, inv_std)`` with the running statistics."""
    inv_std = (1 / np.sqrt(running_var + eps)).astype(x.dtype)
    xhat = (x - running_mean[None, :, None]) * inv_std[None, :, None]
    return xhat * weight[None, :, None] + bias[None, :, None], xhat, inv_std


@exercise("5.1", "backward of batch norm in train mode: dx through the batch mean and variance (lesson 5)")
def batch_norm_backward(grad, xhat, inv_std, weight, training):
    dbias = grad.sum(axis=(0, 2))
    dweight = (grad * xhat).sum(axis=(0, 2))
    dxhat = grad * weight[None, :, None]
    if not training:  # running statistics are constants: BN is an affine map
        return dxhat * inv_std[None, :, None], dweight, dbias
    # BEGIN SOLUTION
    m = grad.shape[0] * grad.shape[2]
    # The mean and the variance depend on every x of the channel; their two
    # paths collapse into subtracting dxhat's mean and its projection on xhat.
    dx = (dxhat - dxhat.sum(axis=(0, 2), keepdims=True) / m
          - xhat * (dxhat * xhat).sum(axis=(0, 2), keepdims=True) / m) * inv_std[None, :, None]
    return dx, dweight, dbias
    # END SOLUTION


# --------------------------------------------------------------------------
# Softmax cross-entropy, mean over the batch
# --------------------------------------------------------------------------
def softmax_cross_entropy_forward(logits, labels):
    """Returns ``(loss, probabilities)``; ``loss`` is a 0-d array."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return np.asarray(loss, logits.dtype), np.exp(log_probs)


def softmax_cross_entropy_backward(grad, probs, labels):
    dlogits = probs.copy()
    dlogits[np.arange(len(labels)), labels] -= 1
    return dlogits * (grad / len(labels))


# --------------------------------------------------------------------------
# Fused attention kernels. Here they are compositions of the kernels above: the
# unfused path that the Numba and CUDA fusions are checked against.
# --------------------------------------------------------------------------
def global_avg_max_pool_forward(x):
    """CBAM's two descriptors in one call: ``(avg (N,C), max (N,C), index (N,C))``."""
    peak, index = global_max_pool_forward(x)
    return global_avg_pool_forward(x), peak, index


def global_avg_max_pool_backward(grad_avg, grad_max, index, shape, add_to=None):
    """``add_to``: None, or the gradient collected for F so far, to add this one into (and return)."""
    check_add_to("global_avg_max_pool_backward", add_to, shape, grad_avg.dtype)
    dx = global_avg_pool_backward(grad_avg, shape) + global_max_pool_backward(grad_max, index, shape)
    return added(add_to, dx)


def gated_channel_pool_forward(x, gate):
    """CBAM's channel pool of ``y = gate ⊗ x``: ``(pooled (N,2,H,W) = [mean; max], index (N,1,H,W))``."""
    y = x * gate[:, :, None, None]
    peak, index = channel_max_forward(y)
    return np.concatenate([channel_mean_forward(y), peak], axis=1), index


def gated_channel_pool_backward(grad_pooled, x, gate, index, add_to=None):
    """Returns ``(dx, dgate)``; ``add_to``: None, or the gradient collected for x so far, to add dx into."""
    check_add_to("gated_channel_pool_backward", add_to, x.shape, x.dtype)
    dy = (channel_mean_backward(grad_pooled[:, :1], x.shape)
          + channel_max_backward(grad_pooled[:, 1:], index, x.shape))
    return added(add_to, dy * gate[:, :, None, None]), (dy * x).sum(axis=(2, 3))


def channel_spatial_gate_forward(x, channel_gate, spatial_gate):
    """CBAM's ``(x ⊗ Mc) ⊗ Ms`` with Mc (N,C) and Ms (N,1,H,W) broadcast."""
    return (x * channel_gate[:, :, None, None]) * spatial_gate


def channel_spatial_gate_backward(grad, x, channel_gate, spatial_gate):
    """Returns ``(dx, dchannel_gate (N,C), dspatial_gate (N,1,H,W))``, through dF' = g ⊗ Ms."""
    channel = channel_gate[:, :, None, None]
    dgated = grad * spatial_gate
    return (dgated * channel, (dgated * x).sum(axis=(2, 3)),
            (grad * (x * channel)).sum(axis=1, keepdims=True))


def residual_gate_forward(x, channel_logit, spatial_logit):
    """BAM's output ``(1 + σ(Mc + Ms)) ⊗ x`` with Mc (N,C) and Ms (N,1,H,W) broadcast."""
    gate = sigmoid_forward(channel_logit[:, :, None, None] + spatial_logit)
    return x + x * gate


@exercise("7.1", "backward of BAM's F' = (1 + σ(Mc + Ms)) ⊗ F: dF, dMc and dMs (lesson 7)")
def residual_gate_backward(grad, x, channel_logit, spatial_logit):
    """Returns ``(dx, dchannel_logit (N,C), dspatial_logit (N,1,H,W))``."""
    # BEGIN SOLUTION
    gate = sigmoid_forward(channel_logit[:, :, None, None] + spatial_logit)
    dlogit = grad * x * gate * (1 - gate)
    return grad * (1 + gate), dlogit.sum(axis=(2, 3)), dlogit.sum(axis=1, keepdims=True)
    # END SOLUTION
