r"""BAM (Park et al., BMVC 2018): a channel branch and a spatial branch, fused into one residual attention map.

.. math:: M(F) = \sigma(M_c(F) + M_s(F)), \qquad F' = F + F \otimes M(F)

where :math:`M_c \in \mathbb{R}^{C\times1\times1}` and :math:`M_s \in \mathbb{R}^{1\times H\times W}` are broadcast
to C×H×W before the sum. Where the official code (``MODELS/bam.py``) departs from the paper, both are reachable:

* fusion: the paper sums the branch logits (``fusion="sum"``, default); the official code multiplies them,
  :math:`F' = (1 + \sigma(M_c \cdot M_s)) \otimes F` (``fusion="product"``, needed for its released weights);
  ``"max"`` is the paper's third Table 1(b) option;
* BN placement (``bn_placement``): the official code puts a BN after every hidden layer and none at the end
  (``"official"``, default); the paper's equations put one BN at the end of each branch,
  :math:`M_c = \mathrm{BN}(\mathrm{MLP}(\mathrm{AvgPool}(F)))`, :math:`M_s = \mathrm{BN}(f_3(f_2(f_1(f_0(F)))))`
  (``"paper"``: ReLU after the hidden layers, no BN there);
* the official channel branch pools with ``avg_pool2d(x, H, stride=H)``, which assumes H = W; here the pool
  is over the whole H×W for any shape.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..exercise import exercise
from ..tensor import Tensor
from .cbam import expand_channels, hidden_size
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Linear, check_input, check_positive_int
from .module import Module, ModuleList

FUSIONS = ("sum", "product", "max")
BRANCHES = ("both", "channel", "spatial")
BN_PLACEMENTS = ("official", "paper")


def _check_bn_placement(bn_placement, owner):
    if bn_placement not in BN_PLACEMENTS:
        raise ValueError(f"{owner}: bn_placement must be one of {BN_PLACEMENTS}, got {bn_placement!r}")


class BAMChannelGate(Module):
    r"""BAM's channel branch, the logit :math:`M_c(F)` (N, C) from (N, C, H, W):

    official: :math:`W_1\,\mathrm{ReLU}(\mathrm{BN}(W_0\,\mathrm{AvgPool}(F) + b_0)) + b_1`;
    paper: :math:`\mathrm{BN}(W_1\,\mathrm{ReLU}(W_0\,\mathrm{AvgPool}(F) + b_0) + b_1)`.
    ``fc0``: C -> C // r, ``fc1``: C // r -> C; ``hidden_bn`` is BatchNorm1d(C // r), ``out_bn`` BatchNorm1d(C).
    ``forward`` returns the logit (the fusion happens in :class:`BAM`).
    """

    def __init__(self, gate_channel, reduction_ratio=16, bn_placement="official"):
        super().__init__()
        owner = type(self).__name__
        hidden = hidden_size(gate_channel, reduction_ratio, owner)
        _check_bn_placement(bn_placement, owner)
        self.gate_channel, self.reduction_ratio, self.bn_placement = gate_channel, reduction_ratio, bn_placement
        self.fc0 = Linear(gate_channel, hidden)
        self.hidden_bn = BatchNorm1d(hidden) if bn_placement == "official" else None
        self.fc1 = Linear(hidden, gate_channel)
        self.out_bn = BatchNorm1d(gate_channel) if bn_placement == "paper" else None

    def config(self):
        return dict(gate_channel=self.gate_channel, reduction_ratio=self.reduction_ratio,
                    bn_placement=self.bn_placement)

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channel)
        hidden = self.fc0(ops.global_avg_pool(x))
        if self.hidden_bn is not None:
            hidden = self.hidden_bn(hidden)
        logit = self.fc1(ops.relu(hidden))
        return logit if self.out_bn is None else self.out_bn(logit)

    def extra_repr(self):
        return f"{self.gate_channel}, reduction_ratio={self.reduction_ratio}, bn_placement={self.bn_placement!r}"


@exercise("6.1", "BAM spatial branch: 1×1 reduce, dilated 3×3 convs (padding = dilation), 1×1 to one channel, "
                 "with the given norms and ReLUs (lesson 6)")
def bam_spatial_logit(x, convs, norms, dilation):
    r"""BAM's spatial-branch logit, :math:`f_3^{1\times1}(f_2^{3\times3}(f_1^{3\times3}(f_0^{1\times1}(F))))`
    with a norm (if any) and a ReLU after every conv but the last, and the last conv's norm (if any) at the end:

    official: :math:`h \leftarrow \mathrm{ReLU}(\mathrm{BN}(f_i(h)))` for the hidden convs, then :math:`f_{last}(h)`;
    paper: :math:`h \leftarrow \mathrm{ReLU}(f_i(h))`, then :math:`\mathrm{BN}(f_{last}(h))`.

    x (N, C, H, W); convs: [(W, b), ...]: the 1×1 reduce C -> C/r, then 3×3 convs C/r -> C/r with dilation d and
    padding d (H×W kept), then the 1×1 conv C/r -> 1; norms: one callable or None per conv; -> (N, 1, H, W).
    """
    # BEGIN SOLUTION
    last = len(convs) - 1
    h = x
    for index, ((weight, bias), norm) in enumerate(zip(convs, norms)):
        dilated = 0 < index < last
        h = ops.conv2d(h, weight, bias, padding=dilation if dilated else 0, dilation=dilation if dilated else 1)
        if norm is not None:
            h = norm(h)
        if index < last:
            h = ops.relu(h)
    return h
    # END SOLUTION


class BAMSpatialGate(Module):
    r"""BAM's spatial branch, the logit :math:`M_s(F)` (N, 1, H, W) from (N, C, H, W) (see :func:`bam_spatial_logit`).

    ``convs``: [1×1 C -> C // r, ``dilation_conv_num`` × 3×3 (dilation ``dilation_val``), 1×1 C // r -> 1], all with
    bias; ``hidden_bns``: one BatchNorm2d(C // r) per hidden conv (official placement); ``out_bn``:
    BatchNorm2d(1) (paper placement). ``forward`` returns the logit.
    """

    def __init__(self, gate_channel, reduction_ratio=16, dilation_conv_num=2, dilation_val=4,
                 bn_placement="official"):
        super().__init__()
        owner = type(self).__name__
        hidden = hidden_size(gate_channel, reduction_ratio, owner)
        _check_bn_placement(bn_placement, owner)
        if not isinstance(dilation_conv_num, int) or dilation_conv_num < 0:
            raise ValueError(f"{owner}: dilation_conv_num must be an int >= 0, got {dilation_conv_num!r}")
        dilation_val = check_positive_int(dilation_val, "dilation_val", owner)
        self.gate_channel, self.reduction_ratio, self.bn_placement = gate_channel, reduction_ratio, bn_placement
        self.dilation_conv_num, self.dilation_val = dilation_conv_num, dilation_val
        self.convs = ModuleList(
            [Conv2d(gate_channel, hidden, 1)]
            + [Conv2d(hidden, hidden, 3, padding=dilation_val, dilation=dilation_val)
               for _ in range(dilation_conv_num)]
            + [Conv2d(hidden, 1, 1)]
        )
        official = bn_placement == "official"
        self.hidden_bns = ModuleList([BatchNorm2d(hidden) for _ in range(dilation_conv_num + 1)] if official else [])
        self.out_bn = None if official else BatchNorm2d(1)

    def config(self):
        return dict(gate_channel=self.gate_channel, reduction_ratio=self.reduction_ratio,
                    dilation_conv_num=self.dilation_conv_num, dilation_val=self.dilation_val,
                    bn_placement=self.bn_placement)

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channel)
        hidden_norms = list(self.hidden_bns) or [None] * (len(self.convs) - 1)
        return bam_spatial_logit(x, [(conv.weight, conv.bias) for conv in self.convs],
                                 hidden_norms + [self.out_bn], self.dilation_val)

    def extra_repr(self):
        return (f"{self.gate_channel}, reduction_ratio={self.reduction_ratio}, dilation_conv_num="
                f"{self.dilation_conv_num}, dilation_val={self.dilation_val}, bn_placement={self.bn_placement!r}")


def maximum(a, b):
    """Element-wise max(a, b) with broadcasting; at ties the gradient goes to ``a`` (like ``torch.where(a >= b, a, b)``).

    Built from ``mul``/``add`` with a constant 0/1 mask, so the selected values pass through exactly.
    """
    take_a = np.greater_equal(a.data, b.data)
    return ops.add(ops.mul(a, Tensor(take_a.astype(a.dtype))), ops.mul(b, Tensor((~take_a).astype(b.dtype))))


@exercise("7.2", "BAM: fuse the branch logits (sum / product / max, or a single branch), sigmoid, and the "
                 "residual F + F ⊗ M(F) (lesson 7)")
def bam_fuse(x, channel_logit, spatial_logit, fusion="sum"):
    r""":math:`F' = F + F \otimes M(F)` with the branch logits fused as

    * ``"sum"`` (paper): :math:`M = \sigma(M_c + M_s)` (the fused ``residual_gate`` op);
    * ``"product"`` (official code): :math:`M = \sigma(M_c \cdot M_s)`;
    * ``"max"``: :math:`M = \sigma(\max(M_c, M_s))` (ties: gradient to :math:`M_c`);
    * one branch (the other logit None, Table 1(b)): :math:`M = \sigma(M_c)` or :math:`\sigma(M_s)`.

    x (N, C, H, W); channel_logit (N, C) or None; spatial_logit (N, 1, H, W) or None; both broadcast to C×H×W.
    """
    # BEGIN SOLUTION
    if channel_logit is not None and spatial_logit is not None and fusion == "sum":
        return ops.residual_gate(x, channel_logit, spatial_logit)
    if spatial_logit is None:
        logit = expand_channels(channel_logit)
    elif channel_logit is None:
        logit = spatial_logit
    elif fusion == "product":
        logit = ops.mul(expand_channels(channel_logit), spatial_logit)
    else:
        logit = maximum(expand_channels(channel_logit), spatial_logit)
    return ops.add(x, ops.mul(x, ops.sigmoid(logit)))
    # END SOLUTION


class BAM(Module):
    r"""Bottleneck Attention Module: :math:`F' = F + F \otimes \sigma(M_c(F) + M_s(F))` (see :func:`bam_fuse`).

    ``fusion``: ``"sum"`` (paper), ``"product"`` (official code) or ``"max"``; ``branches``: ``"both"``,
    ``"channel"`` or ``"spatial"`` (Table 1(b)); ``reduction_ratio`` r, ``dilation_val`` d and
    ``dilation_conv_num`` as the official defaults (16, 4, 2); ``bn_placement``: ``"official"`` or ``"paper"``.
    Input (N, C, H, W) -> output of the same shape.
    """

    def __init__(self, gate_channel, reduction_ratio=16, dilation_conv_num=2, dilation_val=4, fusion="sum",
                 branches="both", bn_placement="official"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"BAM: fusion must be one of {FUSIONS}, got {fusion!r}")
        if branches not in BRANCHES:
            raise ValueError(f"BAM: branches must be one of {BRANCHES}, got {branches!r}")
        gate_channel = check_positive_int(gate_channel, "gate_channel", "BAM")
        self.fusion, self.branches = fusion, branches
        self.channel_gate = BAMChannelGate(gate_channel, reduction_ratio, bn_placement) \
            if branches in ("both", "channel") else None
        self.spatial_gate = BAMSpatialGate(gate_channel, reduction_ratio, dilation_conv_num, dilation_val,
                                           bn_placement) if branches in ("both", "spatial") else None
        self.options = dict(gate_channel=gate_channel, reduction_ratio=reduction_ratio,
                            dilation_conv_num=dilation_conv_num, dilation_val=dilation_val,
                            bn_placement=bn_placement)

    @property
    def gate_channel(self):
        return self.options["gate_channel"]

    def config(self):
        return dict(**self.options, fusion=self.fusion, branches=self.branches)

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channel)
        channel_logit = None if self.channel_gate is None else self.channel_gate(x)
        spatial_logit = None if self.spatial_gate is None else self.spatial_gate(x)
        return bam_fuse(x, channel_logit, spatial_logit, self.fusion)

    def extra_repr(self):
        return f"fusion={self.fusion!r}, branches={self.branches!r}"
