"""Parameter and multiply-accumulate counts per model, the two columns of the papers' tables."""
from __future__ import annotations

import contextlib

import numpy as np

from .. import nn, ops
from ..autograd import no_grad
from ..tensor import Tensor


@contextlib.contextmanager
def _counting_macs(counter):
    """While active, every conv2d / linear op adds its multiply-accumulates (per sample) to ``counter[0]``.

    Counting at the op level sees the attention modules' convs and MLPs too (they call the ops with their
    weights directly), and counts CBAM's shared MLP once per pooled descriptor, as the papers do.
    """
    conv_apply, linear_apply = ops.Conv2d.apply, ops.Linear.apply

    def conv(x, weight, *args, **options):
        out = conv_apply(x, weight, *args, **options)
        counter[0] += weight.size * out.shape[2] * out.shape[3]  # every output pixel: C_out × C_in/g × k × k
        return out

    def linear(x, weight, *args):
        counter[0] += weight.size
        return linear_apply(x, weight, *args)

    ops.Conv2d.apply, ops.Linear.apply = conv, linear
    try:
        yield
    finally:
        ops.Conv2d.apply, ops.Linear.apply = conv_apply, linear_apply


def model_report(model, input_size=(3, 32, 32)):
    """``{"params", "attention_params", "macs"}`` for one (C, H, W) input.

    ``macs`` counts the multiply-accumulates of every convolution and linear layer (what the papers' "FLOPs"
    columns count, e.g. 3.86 G for ResNet-50); pooling, BN and element-wise ops are left out.
    ``attention_params``: the parameters inside SE / CBAM / BAM modules.
    """
    attention_types = (nn.ChannelGate, nn.SpatialGate, nn.CBAM, nn.BAM)
    attention_params = {id(p) for m in model.modules() if isinstance(m, attention_types) for p in m.parameters()}
    params = list(model.parameters())
    counter = [0]
    was_training = model.training
    model.eval()
    try:
        with no_grad(), _counting_macs(counter):
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
