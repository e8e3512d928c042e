"""Interop with PyTorch: the official CBAM/BAM checkpoint layout, and PyTorch twins of this project's modules.

* :func:`load_official` / :func:`to_official`: the state-dict layout of the official code
  (Jongchan/attention-module, ``MODELS/cbam.py`` and ``MODELS/bam.py``), from torch tensors or ndarrays,
  with or without a ``module.`` prefix (DataParallel), ignoring ``num_batches_tracked``. The official
  ``ChannelPool`` stacks ``[max, mean]`` and ours ``[mean; max]``: the spatial conv's two input channels
  are swapped on the way in and out, so the round trip is exact.
* :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Module`` with our structure and parameter names that
  computes the same numbers (its forward is written with torch ops, independently of ours), and back.
  ``to_torch`` also twins whole backbones (``models.ResNet``, ``models.MobileNet``, any attention), e.g. to
  train side by side or to check Grad-CAM; ``from_torch`` covers layers and attention modules only.
* :func:`parity_table`: every attention module × option × dtype against its twin (``python -m
  minitorch_attn.interop --table``); the tests run the same cases through :func:`parity_errors`.

torch is imported only when a function here needs it.
"""
from __future__ import annotations

import argparse
import functools
from collections import OrderedDict

import numpy as np

from . import backends, models, nn
from .nn.module import state_dict_problems, to_numpy
from .tensor import Tensor
from .testing import TOLERANCE, rel_error

# --------------------------------------------------------------------------
# The official layout
# --------------------------------------------------------------------------
_NUM_BATCHES = "num_batches_tracked"


def _layer_pairs(module):
    """``[(official layer prefix, our layer, swap_pool_channels)]`` for one of our attention modules."""
    if isinstance(module, nn.CBAM):
        pairs = [(f"ChannelGate.{o}", m, s) for o, m, s in _layer_pairs(module.channel_gate)]
        if module.spatial_gate is not None:
            pairs += [(f"SpatialGate.{o}", m, s) for o, m, s in _layer_pairs(module.spatial_gate)]
        return pairs
    if isinstance(module, nn.ChannelGate):
        return [("mlp.1", module.fc0, False), ("mlp.3", module.fc1, False)]
    if isinstance(module, nn.SpatialGate):
        if module.compress_conv is not None:
            raise ValueError("load_official: the official SpatialGate has no compress='conv1x1' variant "
                             "(it always pools [max, mean])")
        pairs = [("spatial.conv", module.conv, True)]
        return pairs + ([("spatial.bn", module.bn, False)] if module.bn is not None else [])
    if isinstance(module, nn.BAM):
        pairs = []
        if module.channel_gate is not None:
            pairs += [(f"channel_att.{o}", m, s) for o, m, s in _layer_pairs(module.channel_gate)]
        if module.spatial_gate is not None:
            pairs += [(f"spatial_att.{o}", m, s) for o, m, s in _layer_pairs(module.spatial_gate)]
        return pairs
    if isinstance(module, (nn.BAMChannelGate, nn.BAMSpatialGate)) and module.bn_placement != "official":
        raise ValueError(f"load_official: the official code has no bn_placement={module.bn_placement!r} "
                         f"variant of {type(module).__name__}; build it with bn_placement='official'")
    if isinstance(module, nn.BAMChannelGate):
        return [("gate_c.gate_c_fc_0", module.fc0, False), ("gate_c.gate_c_bn_1", module.hidden_bn, False),
                ("gate_c.gate_c_fc_final", module.fc1, False)]
    if isinstance(module, nn.BAMSpatialGate):
        convs, bns = list(module.convs), list(module.hidden_bns)
        pairs = [("gate_s.gate_s_conv_reduce0", convs[0], False), ("gate_s.gate_s_bn_reduce0", bns[0], False)]
        for i in range(module.dilation_conv_num):
            pairs += [(f"gate_s.gate_s_conv_di_{i}", convs[i + 1], False),
                      (f"gate_s.gate_s_bn_di_{i}", bns[i + 1], False)]
        return pairs + [("gate_s.gate_s_conv_final", convs[-1], False)]
    raise TypeError(f"official layout: expected a CBAM, ChannelGate, SpatialGate, BAM, BAMChannelGate or "
                    f"BAMSpatialGate, got {type(module).__name__}")


def official_names(module):
    """``{official key: (our key, swap_pool_channels)}`` for every parameter and buffer of ``module``."""
    our_key = {id(layer): name for name, layer in module.named_modules()}
    names = OrderedDict()
    for official, layer, swap in _layer_pairs(module):
        prefix = our_key[id(layer)]
        for key in layer.state_dict():
            names[f"{official}.{key}"] = (f"{prefix}.{key}", swap and key == "weight")
    return names


def _swap_pool_channels(weight):
    """(1, 2, k, k) conv weight: official input order [max, mean] <-> ours [mean, max] (its own inverse)."""
    return np.ascontiguousarray(weight[:, ::-1])


def load_official(module, state_dict, prefix=""):
    """Load the official code's weights of a CBAM/BAM (or one of their gates) into ``module``, in place.

    ``state_dict``: keys as the official modules name them (e.g. ``ChannelGate.mlp.1.weight``,
    ``spatial_att.gate_s.gate_s_conv_di_0.weight``), values torch tensors or ndarrays. A leading
    ``module.`` is dropped; ``prefix`` selects one block of a whole network's checkpoint (e.g.
    ``"layer1.0.cbam."``; keys outside it are ignored). Missing, unexpected and mis-shaped keys are all
    listed in one error. Returns ``module``.
    """
    names = official_names(module)
    values = OrderedDict()
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if not key.startswith(prefix) or key.endswith(_NUM_BATCHES):
            continue
        values[key[len(prefix):]] = to_numpy(value)
    ours = module.state_dict()
    missing = [key for key in names if key not in values]
    unexpected = [key for key in values if key not in names]
    misshaped = [(key, ours[names[key][0]].shape, values[key].shape) for key in names
                 if key in values and values[key].shape != ours[names[key][0]].shape]
    if missing or unexpected or misshaped:
        raise state_dict_problems(missing, unexpected, misshaped, f"load_official({type(module).__name__})")
    module.load_state_dict(OrderedDict(
        (our, _swap_pool_channels(values[key]) if swap else values[key]) for key, (our, swap) in names.items()))
    return module


def to_official(module, as_torch=True):
    """The official code's state dict of ``module`` (torch tensors, or ndarrays with ``as_torch=False``).

    Loads into the official modules with ``load_state_dict`` (``num_batches_tracked`` is left out; torch
    fills it in). ``load_official(m, to_official(m))`` reproduces every value exactly.
    """
    ours = module.state_dict()
    out = OrderedDict(
        (key, _swap_pool_channels(ours[our]) if swap else ours[our].copy())
        for key, (our, swap) in official_names(module).items())
    if as_torch:
        import torch

        out = OrderedDict((key, torch.from_numpy(value)) for key, value in out.items())
    return out


# --------------------------------------------------------------------------
# PyTorch twins
# --------------------------------------------------------------------------
@functools.cache
def _twin_classes():
    """The torch classes that mirror our attention modules and backbones, defined on first use (torch imported then)."""
    import torch
    from torch import nn as tnn

    class TwinBase(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.config = ours.config()
            self.source_class = type(ours)  # what from_torch builds back

    class ChannelGateTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.pool_types = ours.pool_types
            self.fc0, self.fc1 = to_torch(ours.fc0), to_torch(ours.fc1)

        def logit(self, x):
            pools = {"avg": lambda: x.mean(dim=(2, 3)), "max": lambda: x.flatten(2).max(dim=2).values,
                     "lp": lambda: x.pow(2).sum(dim=(2, 3)).sqrt(),
                     "lse": lambda: torch.logsumexp(x.flatten(2), dim=2)}
            total = None
            for kind in self.pool_types:
                term = self.fc1(torch.relu(self.fc0(pools[kind]())))
                total = term if total is None else total + term
            return total

        def forward(self, x):
            return x * torch.sigmoid(self.logit(x))[:, :, None, None]

    class SpatialGateTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.compress_conv = None if ours.compress_conv is None else to_torch(ours.compress_conv)
            self.conv = to_torch(ours.conv)
            self.bn = None if ours.bn is None else to_torch(ours.bn)

        def logit(self, x):
            if self.compress_conv is None:
                compressed = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
            else:
                compressed = self.compress_conv(x)
            logit = self.conv(compressed)
            return logit if self.bn is None else self.bn(logit)

        def forward(self, x):
            return x * torch.sigmoid(self.logit(x))

    class CBAMTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.arrangement = ours.arrangement
            self.channel_gate = to_torch(ours.channel_gate)
            self.spatial_gate = None if ours.spatial_gate is None else to_torch(ours.spatial_gate)

        def forward(self, x):
            if self.spatial_gate is None:
                return self.channel_gate(x)
            if self.arrangement == "channel-spatial":
                return self.spatial_gate(self.channel_gate(x))
            if self.arrangement == "spatial-channel":
                return self.channel_gate(self.spatial_gate(x))
            return x * torch.sigmoid(self.channel_gate.logit(x)[:, :, None, None] + self.spatial_gate.logit(x))

    class BAMChannelGateTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.fc0, self.fc1 = to_torch(ours.fc0), to_torch(ours.fc1)
            self.hidden_bn = None if ours.hidden_bn is None else to_torch(ours.hidden_bn)
            self.out_bn = None if ours.out_bn is None else to_torch(ours.out_bn)

        def forward(self, x):
            hidden = self.fc0(x.mean(dim=(2, 3)))
            hidden = hidden if self.hidden_bn is None else self.hidden_bn(hidden)
            logit = self.fc1(torch.relu(hidden))
            return logit if self.out_bn is None else self.out_bn(logit)

    class BAMSpatialGateTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.convs = to_torch(ours.convs)
            self.hidden_bns = to_torch(ours.hidden_bns)
            self.out_bn = None if ours.out_bn is None else to_torch(ours.out_bn)

        def forward(self, x):
            h = x
            for index, conv in enumerate(self.convs):
                h = conv(h)
                if index < len(self.convs) - 1:
                    h = torch.relu(self.hidden_bns[index](h) if len(self.hidden_bns) else h)
            return h if self.out_bn is None else self.out_bn(h)

    class BAMTwin(TwinBase):
        def __init__(self, ours):
            super().__init__(ours)
            self.fusion = ours.fusion
            self.channel_gate = None if ours.channel_gate is None else to_torch(ours.channel_gate)
            self.spatial_gate = None if ours.spatial_gate is None else to_torch(ours.spatial_gate)

        def forward(self, x):
            logits = []
            if self.channel_gate is not None:
                logits.append(self.channel_gate(x)[:, :, None, None])
            if self.spatial_gate is not None:
                logits.append(self.spatial_gate(x))
            if len(logits) == 1:
                logit = logits[0]
            elif self.fusion == "sum":
                logit = logits[0] + logits[1]
            elif self.fusion == "product":
                logit = logits[0] * logits[1]
            else:
                logit = torch.where(logits[0] >= logits[1], logits[0], logits[1])
            return x + x * torch.sigmoid(logit)

    # The backbones: same child names as ours (stem, stages, bottlenecks, features, fc), so parameter names
    # match; every child is itself a twin or a torch layer made by to_torch. No from_torch back (no config()).
    def twin_or_none(module):
        return None if module is None else to_torch(module)

    class BasicBlockTwin(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.conv1, self.conv2 = to_torch(ours.conv1), to_torch(ours.conv2)
            self.attention, self.shortcut = twin_or_none(ours.attention), twin_or_none(ours.shortcut)

        def forward(self, x):
            out = self.conv2(torch.relu(self.conv1(x)))
            if self.attention is not None:
                out = self.attention(out)
            return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    class ResNetTwin(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.stem, self.stages = to_torch(ours.stem), to_torch(ours.stages)
            self.bottlenecks, self.fc = to_torch(ours.bottlenecks), to_torch(ours.fc)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            for index, stage in enumerate(self.stages):
                x = stage(x)
                if index < len(self.bottlenecks):
                    x = self.bottlenecks[index](x)
            return self.fc(x.mean(dim=(2, 3)))

    class DepthwiseSeparableTwin(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.depthwise, self.pointwise = to_torch(ours.depthwise), to_torch(ours.pointwise)
            self.attention = twin_or_none(ours.attention)

        def forward(self, x):
            out = torch.relu(self.pointwise(torch.relu(self.depthwise(x))))
            return out if self.attention is None else self.attention(out)

    class MobileNetTwin(tnn.Module):
        def __init__(self, ours):
            super().__init__()
            self.stem, self.features, self.fc = to_torch(ours.stem), to_torch(ours.features), to_torch(ours.fc)

        def forward(self, x):
            return self.fc(self.features(torch.relu(self.stem(x))).mean(dim=(2, 3)))

    # SE before ChannelGate: the first isinstance match wins.
    return OrderedDict([
        (nn.SE, ChannelGateTwin), (nn.ChannelGate, ChannelGateTwin), (nn.SpatialGate, SpatialGateTwin),
        (nn.CBAM, CBAMTwin), (nn.BAMChannelGate, BAMChannelGateTwin), (nn.BAMSpatialGate, BAMSpatialGateTwin),
        (nn.BAM, BAMTwin), (models.BasicBlock, BasicBlockTwin), (models.ResNet, ResNetTwin),
        (models.DepthwiseSeparable, DepthwiseSeparableTwin), (models.MobileNet, MobileNetTwin),
    ])


def _torch_dtype(dtype):
    import torch

    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def _twin_layer(module):
    """The torch.nn layer for one of our standard layers (same hyper-parameters), or None."""
    from torch import nn as tnn

    if isinstance(module, nn.Linear):
        return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d):
        return tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                          padding=module.padding, dilation=module.dilation, groups=module.groups,
                          bias=module.bias is not None)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        kind = tnn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else tnn.BatchNorm2d
        return kind(module.num_features, eps=module.eps, momentum=module.momentum)
    simple = {nn.ReLU: tnn.ReLU, nn.Sigmoid: tnn.Sigmoid, nn.Flatten: tnn.Flatten, nn.Identity: tnn.Identity}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, nn.Sequential):
        return tnn.Sequential(*(to_torch(child) for child in module))
    if isinstance(module, nn.ModuleList):
        return tnn.ModuleList([to_torch(child) for child in module])
    return None


def to_torch(module):
    """A ``torch.nn.Module`` twin of ``module``: same structure, parameter names, values, dtype and mode."""
    import torch

    twin = _twin_layer(module)
    if twin is None:
        kind = next((twin_class for ours, twin_class in _twin_classes().items() if isinstance(module, ours)), None)
        if kind is None:
            raise TypeError(f"to_torch: no PyTorch twin for {type(module).__name__}")
        twin = kind(module)
    twin.to(_torch_dtype(module.dtype))
    with torch.no_grad():
        twin.load_state_dict(OrderedDict((k, torch.from_numpy(v)) for k, v in module.state_dict().items()))
    return twin.train(module.training)


def from_torch(torch_module):
    """Our module for a twin made by :func:`to_torch` or a plain torch layer (Linear, Conv2d, BatchNorm, ...)."""
    from torch import nn as tnn

    if hasattr(torch_module, "source_class"):
        module = torch_module.source_class(**torch_module.config)
    elif isinstance(torch_module, tnn.Linear):
        module = nn.Linear(torch_module.in_features, torch_module.out_features, bias=torch_module.bias is not None)
    elif isinstance(torch_module, tnn.Conv2d):
        if torch_module.padding_mode != "zeros":
            raise ValueError(f"from_torch: only zero padding is supported, got {torch_module.padding_mode!r}")
        module = nn.Conv2d(torch_module.in_channels, torch_module.out_channels, torch_module.kernel_size,
                           torch_module.stride, torch_module.padding, torch_module.dilation, torch_module.groups,
                           bias=torch_module.bias is not None)
    elif isinstance(torch_module, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
        if not (torch_module.affine and torch_module.track_running_stats) or torch_module.momentum is None:
            raise ValueError("from_torch: BatchNorm needs affine=True, track_running_stats=True and a momentum")
        kind = nn.BatchNorm1d if isinstance(torch_module, tnn.BatchNorm1d) else nn.BatchNorm2d
        module = kind(torch_module.num_features, eps=torch_module.eps, momentum=torch_module.momentum)
    elif isinstance(torch_module, tnn.Sequential):
        module = nn.Sequential(*(from_torch(child) for child in torch_module))
    elif isinstance(torch_module, tnn.ModuleList):
        module = nn.ModuleList([from_torch(child) for child in torch_module])
    else:
        simple = {tnn.ReLU: nn.ReLU, tnn.Sigmoid: nn.Sigmoid, tnn.Flatten: nn.Flatten, tnn.Identity: nn.Identity}
        if type(torch_module) not in simple:
            raise TypeError(f"from_torch: no minitorch_attn counterpart for {type(torch_module).__name__}")
        module = simple[type(torch_module)]()
    state = torch_module.state_dict()
    floats = [v for v in state.values() if v.is_floating_point()]
    if floats:
        module.to(floats[0].detach().numpy().dtype)
    module.load_state_dict(OrderedDict((k, v) for k, v in state.items() if not k.endswith(_NUM_BATCHES)))
    return module.train(torch_module.training)



# --------------------------------------------------------------------------
# Parity with the twins: the cases the tests run and the table prints
# --------------------------------------------------------------------------
def randomize(module, seed=0):
    """Every parameter ~ N(0, 0.5²), running means ~ N(0, 0.5²), running variances ~ U(0.5, 2), in place.

    Makes each parameter matter in a comparison (default BN weights of 1 and biases of 0 would hide
    transposed or misrouted values). Returns ``module``.
    """
    rng = np.random.default_rng(seed)
    for param in module.parameters():
        param.data[...] = 0.5 * rng.standard_normal(param.shape)
    for name, buffer in module.named_buffers():
        if name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)
        else:
            buffer[...] = 0.5 * rng.standard_normal(buffer.shape)
    return module


class ParityCase:
    """One module × option of the parity table: ``build()`` makes the module; inputs are (8, C, 5, 6).

    ``ties=True`` feeds integers in [-2, 2] so that every max (over H×W or over channels) has ties.
    """

    def __init__(self, module, option, build, channels, ties=False):
        self.module, self.option, self.build, self.channels, self.ties = module, option, build, channels, ties

    @property
    def id(self):
        return f"{self.module}[{self.option}]"


PARITY_CASES = [
    ParityCase("ChannelGate", "avg+max", lambda: nn.ChannelGate(8, 4), 8),
    ParityCase("ChannelGate", "max+avg", lambda: nn.ChannelGate(8, 4, ("max", "avg")), 8),
    ParityCase("ChannelGate", "avg", lambda: nn.ChannelGate(8, 4, ("avg",)), 8),
    ParityCase("ChannelGate", "max", lambda: nn.ChannelGate(8, 4, ("max",)), 8),
    ParityCase("ChannelGate", "lp", lambda: nn.ChannelGate(8, 4, ("lp",)), 8),
    ParityCase("ChannelGate", "lse", lambda: nn.ChannelGate(8, 4, ("lse",)), 8),
    ParityCase("ChannelGate", "avg+max+lp+lse", lambda: nn.ChannelGate(8, 4, ("avg", "max", "lp", "lse")), 8),
    ParityCase("ChannelGate", "C=10, r=4 (hidden 2)", lambda: nn.ChannelGate(10, 4), 10),
    ParityCase("ChannelGate", "max ties", lambda: nn.ChannelGate(8, 4), 8, ties=True),
    ParityCase("SE", "r=4", lambda: nn.SE(8, 4), 8),
    ParityCase("SpatialGate", "pool, k=7, bn", lambda: nn.SpatialGate(7), 8),
    ParityCase("SpatialGate", "pool, k=3, bn", lambda: nn.SpatialGate(3), 8),
    ParityCase("SpatialGate", "pool, k=7, no bn (Eq. 3)", lambda: nn.SpatialGate(7, bn=False), 8),
    ParityCase("SpatialGate", "conv1x1, k=7", lambda: nn.SpatialGate(7, "conv1x1", gate_channels=8), 8),
    ParityCase("SpatialGate", "conv1x1, k=3, no bn", lambda: nn.SpatialGate(3, "conv1x1", False, 8), 8),
    ParityCase("SpatialGate", "max ties", lambda: nn.SpatialGate(7), 8, ties=True),
    ParityCase("CBAM", "channel-spatial", lambda: nn.CBAM(8, 4), 8),
    ParityCase("CBAM", "spatial-channel", lambda: nn.CBAM(8, 4, arrangement="spatial-channel"), 8),
    ParityCase("CBAM", "parallel", lambda: nn.CBAM(8, 4, arrangement="parallel"), 8),
    ParityCase("CBAM", "no_spatial", lambda: nn.CBAM(8, 4, no_spatial=True), 8),
    ParityCase("CBAM", "k=3", lambda: nn.CBAM(8, 4, kernel_size=3), 8),
    ParityCase("CBAM", "no spatial bn", lambda: nn.CBAM(8, 4, spatial_bn=False), 8),
    ParityCase("CBAM", "conv1x1 compress", lambda: nn.CBAM(8, 4, compress="conv1x1"), 8),
    ParityCase("CBAM", "avg+lse pools", lambda: nn.CBAM(8, 4, pool_types=("avg", "lse")), 8),
    ParityCase("CBAM", "C=10, r=4", lambda: nn.CBAM(10, 4), 10),
    ParityCase("CBAM", "max ties", lambda: nn.CBAM(8, 4), 8, ties=True),
    ParityCase("BAMChannelGate", "official BN", lambda: nn.BAMChannelGate(8, 4), 8),
    # The paper's final BN normalises the MLP output over the batch: with C // r = 2 ReLU units most samples
    # can give the same (all-dead) logit, whose near-zero batch variance magnifies rounding ~1000-fold in
    # both libraries. A wider hidden layer keeps the comparison well conditioned.
    ParityCase("BAMChannelGate", "paper BN, r=2", lambda: nn.BAMChannelGate(16, 2, bn_placement="paper"), 16),
    ParityCase("BAMSpatialGate", "official BN, d=4", lambda: nn.BAMSpatialGate(8, 4), 8),
    ParityCase("BAMSpatialGate", "paper BN", lambda: nn.BAMSpatialGate(8, 4, bn_placement="paper"), 8),
    ParityCase("BAMSpatialGate", "1 conv, d=1", lambda: nn.BAMSpatialGate(8, 4, 1, 1), 8),
    ParityCase("BAMSpatialGate", "no dilated conv", lambda: nn.BAMSpatialGate(8, 4, 0), 8),
    ParityCase("BAM", "sum (paper)", lambda: nn.BAM(8, 4), 8),
    ParityCase("BAM", "product (official)", lambda: nn.BAM(8, 4, fusion="product"), 8),
    ParityCase("BAM", "max", lambda: nn.BAM(8, 4, fusion="max"), 8),
    ParityCase("BAM", "channel only", lambda: nn.BAM(8, 4, branches="channel"), 8),
    ParityCase("BAM", "spatial only", lambda: nn.BAM(8, 4, branches="spatial"), 8),
    ParityCase("BAM", "sum, paper BN, r=2", lambda: nn.BAM(16, 2, bn_placement="paper"), 16),
    ParityCase("BAM", "C=10, r=4, d=2", lambda: nn.BAM(10, 4, dilation_val=2), 10),
]

#: The columns of a parity row, each the max relative error over what it names.
PARITY_QUANTITIES = ("output", "input grad", "param grads", "running stats")


def parity_errors(case, dtype, backend="numpy", seed=0, batch=8, size=(5, 6)):
    """Run ``case`` and its :func:`to_torch` twin in train mode, then in eval mode, with the same input and
    upstream gradient; return the max relative error per quantity (see :data:`PARITY_QUANTITIES`):
    outputs, input gradients, the gradient of every parameter, and the running statistics after the train step.
    The input is (batch, case.channels, *size); the CUDA simulator wants it tiny.
    """
    import torch

    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    module = randomize(case.build(), seed).to(dtype)
    twin = to_torch(module)
    shape = (batch, case.channels, *size)
    x = (rng.integers(-2, 3, shape) if case.ties else rng.standard_normal(shape)).astype(dtype)
    upstream = None
    errors = dict.fromkeys(PARITY_QUANTITIES, 0.0)

    def record(quantity, ours, theirs):
        errors[quantity] = max(errors[quantity], rel_error(ours, theirs))

    for training in (True, False):
        module.train(training).zero_grad()
        twin.train(training).zero_grad()
        ours_in, theirs_in = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
        with backends.backend(backend):
            out = module(ours_in)
            if upstream is None:  # the gates' logits are (N, C) or (N, 1, H, W)
                upstream = rng.standard_normal(out.shape).astype(dtype)
            out.backward(upstream)
        ref = twin(theirs_in)
        ref.backward(torch.from_numpy(upstream))
        record("output", out.data, ref.detach().numpy())
        record("input grad", ours_in.grad, theirs_in.grad.numpy())
        theirs_params = dict(twin.named_parameters())
        for name, param in module.named_parameters():
            their_grad = theirs_params[name].grad
            record("param grads", param.grad, np.zeros(param.shape) if their_grad is None else their_grad.numpy())
        theirs_state = twin.state_dict()
        for name, buffer in module.named_buffers():
            record("running stats", buffer, theirs_state[name].numpy())
    return errors


def parity_table(dtypes=(np.float64, np.float32), backend_names=None, cases=None):
    """Rows ``(case, dtype, {backend: errors})`` for every case × dtype on every available backend."""
    backend_names = backends.available_backends() if backend_names is None else list(backend_names)
    return [(case, np.dtype(dtype), {name: parity_errors(case, dtype, name) for name in backend_names})
            for case in (PARITY_CASES if cases is None else cases) for dtype in dtypes]


def format_parity_table(rows, detail=False):
    """A Markdown table: one row per module × option × dtype, the max relative error per backend
    (over output, input grad, every parameter grad and the running stats; ``detail`` splits them)."""
    backend_names = list(rows[0][2]) if rows else []
    columns = [f"{b}: {q}" for b in backend_names for q in PARITY_QUANTITIES] if detail else backend_names
    lines = ["| module | option | dtype | " + " | ".join(columns) + " | tolerance | ok |",
             "|" + "---|" * (len(columns) + 5)]
    for case, dtype, per_backend in rows:
        tol = TOLERANCE[dtype]
        values = ([per_backend[b][q] for b in backend_names for q in PARITY_QUANTITIES] if detail
                  else [max(per_backend[b].values()) for b in backend_names])
        worst = max(max(errors.values()) for errors in per_backend.values())
        lines.append(f"| {case.module} | {case.option} | {dtype} | " + " | ".join(f"{v:.1e}" for v in values)
                     + f" | {tol:.0e} | {'yes' if worst <= tol else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minitorch_attn.interop",
                                     description="Parity of the attention modules with their PyTorch twins.")
    parser.add_argument("--table", action="store_true", help="print the module parity table")
    parser.add_argument("--detail", action="store_true", help="one column per quantity and backend")
    parser.add_argument("--backend", action="append", help="backend(s) to run (default: every available one)")
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return 0
    rows = parity_table(backend_names=args.backend)
    print(format_parity_table(rows, detail=args.detail))
    return 0 if all(max(max(e.values()) for e in r[2].values()) <= TOLERANCE[r[1]] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
