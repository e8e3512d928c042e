"""Parameter and multiply-accumulate counts per model, the two columns of the papers' tables.

MACs are counted by forward hooks on the modules (PyTorch's way of observing a model), during one forward
pass of a single image. Where an attention module applies a weight with the ops directly instead of calling
the layer that holds it, a hook on the module that does the work counts it from the shapes it sees:

* ``Conv2d`` / ``Linear`` called as modules: their own hooks;
* ``ChannelGate`` / ``SE`` (and CBAM's channel gate): a hook on ``logit_out`` counts the shared MLP once per
  pooled descriptor (``len(pool_types)`` times), as the papers do;
* ``SpatialGate``: a hook on ``logit_out`` counts the k×k conv at every pixel of the logit (its optional 1×1
  compression conv is a module call, counted by its own hook);
* ``BAMSpatialGate``: a hook on the gate counts its convs (every one keeps H×W); ``BAMChannelGate`` calls its
  ``Linear`` layers, whose hooks count them.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import nn
from ..exercise import exercise
from ..autograd import no_grad
from ..tensor import Tensor


@exercise("13.1", "a conv's multiply-accumulates per image: C_out × C_in/groups × kH × kW at every output "
                  "pixel (lesson 13)")
def conv_macs(weight, output_shape):
    """Multiply-accumulates of a conv per sample: C_out × C_in/groups × kH × kW, once per output pixel.

    weight (C_out, C_in/groups, kH, kW); output_shape (N, C_out, H_out, W_out). -> an int.
    """
    # BEGIN SOLUTION
    return weight.size * output_shape[2] * output_shape[3]
    # END SOLUTION


def linear_macs(weight):
    """Multiply-accumulates of ``x W^T`` per sample: in × out (the weight's size)."""
    return weight.size


def _counters(module):
    """``[(module to hook, macs(output))]`` for the work of ``module`` itself (not of its children)."""
    if isinstance(module, nn.Conv2d):
        return [(module, lambda out: conv_macs(module.weight, out.shape))]
    if isinstance(module, nn.Linear):
        return [(module, lambda out: linear_macs(module.weight))]
    if isinstance(module, nn.ChannelGate):
        mlp = linear_macs(module.fc0.weight) + linear_macs(module.fc1.weight)
        return [(module.logit_out, lambda out: len(module.pool_types) * mlp)]
    if isinstance(module, nn.SpatialGate):
        return [(module.logit_out, lambda out: conv_macs(module.conv.weight, out.shape))]
    if isinstance(module, nn.BAMSpatialGate):
        return [(module, lambda out: sum(conv_macs(conv.weight, out.shape) for conv in module.convs))]
    return []


@contextlib.contextmanager
def counting_macs(model):
    """While active, the forward passes of ``model`` add their multiply-accumulates to ``counter[0]``.

    ``with counting_macs(model) as counter: model(x)`` -> ``counter[0]``, summed over the batch (the hooks
    are removed on exit). The layers whose weights a gate applies directly (``ChannelGate.fc0`` / ``fc1``,
    ``SpatialGate.conv``, ``BAMSpatialGate.convs``) are never called, so their own hooks never fire: only the
    gate's hook counts them.
    """
    counter = [0]
    handles = []
    for module in model.modules():
        for hooked, macs in _counters(module):
            def hook(_, inputs, output, macs=macs):
                counter[0] += output.shape[0] * macs(output)
            handles.append(hooked.register_forward_hook(hook))
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()


def model_report(model, input_size=(3, 32, 32)):
    """``{"params", "attention_params", "macs"}`` for one (C, H, W) input.

    ``macs`` counts the multiply-accumulates of every convolution and linear layer (what the papers' "FLOPs"
    columns count, e.g. 3.86 G for ResNet-50); pooling, BN and element-wise ops are left out.
    ``attention_params``: the parameters inside SE / CBAM / BAM modules.
    """
    attention_types = (nn.ChannelGate, nn.SpatialGate, nn.CBAM, nn.BAM)
    attention_params = {id(p) for m in model.modules() if isinstance(m, attention_types) for p in m.parameters()}
    params = list(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with no_grad(), counting_macs(model) as counter:
            model(Tensor(np.zeros((1,) + tuple(input_size), model.dtype)))
    finally:
        model.train(was_training)
    return {"params": sum(p.size for p in params),
            "attention_params": sum(p.size for p in params if id(p) in attention_params),
            "macs": counter[0]}


def format_report(models, input_size=(3, 32, 32)):
    """A Markdown table of :func:`model_report` for ``{name: model}``."""
    lines = ["| model | params | attention params | MFLOPs (MACs) |", "|---|---|---|---|"]
    for name, model in models.items():
        r = model_report(model, input_size)
        lines.append(f"| {name} | {r['params']:,} | {r['attention_params']:,} | {r['macs'] / 1e6:.2f} |")
    return "\n".join(lines)
