r"""CBAM (Woo et al., ECCV 2018): channel attention, spatial attention and their composition; SE as its baseline.

Eq. 1 of the paper: :math:`F' = M_c(F) \otimes F`, :math:`F'' = M_s(F') \otimes F'`, with
:math:`M_c \in \mathbb{R}^{C\times1\times1}` and :math:`M_s \in \mathbb{R}^{1\times H\times W}` broadcast.

Where the official code (Jongchan/attention-module, ``MODELS/cbam.py``) departs from the paper, both are
reachable here:

* the shared MLP has biases in the official code (the paper writes W0, W1 only): we follow the code;
* the official channel pool stacks ``[max, mean]``; we use the paper's ``[mean; max]``
  (:func:`minitorch_attn.interop.load_official` swaps the conv's two input channels);
* the official spatial gate puts a BatchNorm2d(1, momentum=0.01) between the conv and the sigmoid
  (``bn=True``, the default); ``bn=False`` is Eq. 3 as written;
* the official code also offers ``lp`` and ``lse`` pooling for the channel gate.
"""
from __future__ import annotations

from .. import ops
from ..exercise import exercise
from .layers import BatchNorm2d, Conv2d, Identity, Linear, check_input, check_positive_int
from .module import Module

POOL_TYPES = ("avg", "max", "lp", "lse")
ARRANGEMENTS = ("channel-spatial", "spatial-channel", "parallel")
COMPRESSIONS = ("pool", "conv1x1")


def hidden_size(channels, reduction_ratio, owner):
    """The MLP's hidden width C // r, as the official code (C need not be divisible by r); it must be >= 1."""
    channels = check_positive_int(channels, "gate_channels", owner)
    reduction_ratio = check_positive_int(reduction_ratio, "reduction_ratio", owner)
    if channels // reduction_ratio < 1:
        raise ValueError(f"{owner}: reduction_ratio={reduction_ratio} is larger than gate_channels={channels}; "
                         f"the hidden layer would have C // r = 0 units")
    return channels // reduction_ratio


def expand_channels(values):
    """(N, C) -> (N, C, 1, 1), ready to broadcast over H×W."""
    return ops.reshape(values, values.shape + (1, 1))


# --------------------------------------------------------------------------
# Channel attention
# --------------------------------------------------------------------------
@exercise("2.2", "CBAM channel attention logit: the shared MLP W1 ReLU(W0 d + b0) + b1 summed over the "
                 "pooled descriptors d (lesson 2)")
def channel_attention_logit(descriptors, w0, b0, w1, b1):
    r"""The argument of σ in Eq. 2: :math:`\sum_{d} \mathrm{MLP}(d)` with one MLP shared by every descriptor,

    .. math:: \mathrm{MLP}(d) = W_1\,\mathrm{ReLU}(W_0 d + b_0) + b_1,
              \qquad M_c(F) = \sigma\Big(\sum_{d \in \{F^c_{avg}, F^c_{max}, \dots\}} \mathrm{MLP}(d)\Big)

    descriptors: sequence of (N, C) tensors (AvgPool(F), MaxPool(F), ...); w0 (C/r, C), b0 (C/r,),
    w1 (C, C/r), b1 (C,) -> (N, C). The terms are added in the order given (the official code's order).
    The biases are the official code's; the paper's Eq. 2 writes W0 and W1 only.
    """
    # BEGIN SOLUTION
    logit = None
    for descriptor in descriptors:
        term = ops.linear(ops.relu(ops.linear(descriptor, w0, b0)), w1, b1)
        logit = term if logit is None else ops.add(logit, term)
    return logit
    # END SOLUTION


class ChannelGate(Module):
    r"""CBAM channel attention: :math:`F' = M_c(F) \otimes F` (Eq. 2, see :func:`channel_attention_logit`).

    ``pool_types``: any non-empty subset of ``"avg"``, ``"max"``, ``"lp"`` (p = 2), ``"lse"`` (log-sum-exp),
    in the order the MLP outputs are summed. ``fc0`` is W0 (C -> C // r), ``fc1`` is W1 (C // r -> C).
    Input (N, C, H, W) -> output of the same shape.
    """

    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max")):
        super().__init__()
        owner = type(self).__name__
        hidden = hidden_size(gate_channels, reduction_ratio, owner)
        pool_types = (pool_types,) if isinstance(pool_types, str) else tuple(pool_types)
        unknown = [p for p in pool_types if p not in POOL_TYPES]
        if not pool_types or unknown or len(set(pool_types)) != len(pool_types):
            raise ValueError(f"{owner}: pool_types must be a non-empty subset of {POOL_TYPES} without repeats, "
                             f"got {pool_types!r}")
        self.gate_channels, self.reduction_ratio, self.pool_types = gate_channels, reduction_ratio, pool_types
        self.fc0 = Linear(gate_channels, hidden)
        self.fc1 = Linear(hidden, gate_channels)
        # Computes nothing: the logit passes through it so that a forward hook sees it
        # (explain.capture_attention, models.model_report), whichever path of cbam_attention ran.
        self.logit_out = Identity()

    def config(self):
        return dict(gate_channels=self.gate_channels, reduction_ratio=self.reduction_ratio,
                    pool_types=self.pool_types)

    def descriptors(self, x):
        """The pooled (N, C) descriptors, in ``pool_types`` order (avg and max in one fused pass)."""
        if sorted(self.pool_types) == ["avg", "max"]:
            avg, peak = ops.global_avg_max_pool(x)
            return (avg, peak) if self.pool_types[0] == "avg" else (peak, avg)
        return tuple(ops.GLOBAL_POOLS[p](x) for p in self.pool_types)

    def logit(self, x):
        """(N, C, H, W) -> the channel-attention logit (N, C), before the sigmoid."""
        x = check_input(self, x, (4,), self.gate_channels)
        return self.logit_out(channel_attention_logit(self.descriptors(x), self.fc0.weight, self.fc0.bias,
                                                      self.fc1.weight, self.fc1.bias))

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channels)
        return ops.mul(x, expand_channels(ops.sigmoid(self.logit(x))))

    def extra_repr(self):
        return f"{self.gate_channels}, reduction_ratio={self.reduction_ratio}, pool_types={self.pool_types}"


class SE(ChannelGate):
    r"""Squeeze-and-Excitation, the papers' baseline: channel attention from average pooling only,
    :math:`F' = \sigma(W_1\,\mathrm{ReLU}(W_0\,\mathrm{AvgPool}(F) + b_0) + b_1) \otimes F`
    (CBAM's Table 1 row "AvgPool (SE)"; the same computation as ``ChannelGate(pool_types=("avg",))``).
    """

    def __init__(self, channels, reduction_ratio=16):
        super().__init__(channels, reduction_ratio, pool_types=("avg",))

    def config(self):
        return dict(channels=self.gate_channels, reduction_ratio=self.reduction_ratio)

    def extra_repr(self):
        return f"{self.gate_channels}, reduction_ratio={self.reduction_ratio}"


# --------------------------------------------------------------------------
# Spatial attention
# --------------------------------------------------------------------------
def channel_pool(x):
    r"""The paper's channel pool :math:`[F^s_{avg}; F^s_{max}]`: (N, C, H, W) -> (N, 2, H, W), mean first.

    (The official ``ChannelPool`` stacks ``[max, mean]``.)
    """
    return ops.concat([ops.channel_mean(x), ops.channel_max(x)])


@exercise("3.4", "CBAM spatial attention logit: k×k conv (no bias, padding (k-1)/2) of the compressed map, "
                 "then the BatchNorm if one is given (lesson 3)")
def spatial_attention_logit(compressed, weight, bn=None):
    r"""The argument of σ in Eq. 3, :math:`M_s(F) = \sigma(f^{k\times k}([F^s_{avg}; F^s_{max}]))`,
    with the official code's BatchNorm when ``bn`` is given: :math:`\mathrm{BN}(f^{k\times k}(\cdot))`.

    compressed (N, C', H, W): the channel pool (C' = 2) or a learned 1×1 conv (C' = 1);
    weight (1, C', k, k) with k odd, padded by (k - 1)/2 so H×W is kept; bn: a BatchNorm2d(1) or None.
    -> (N, 1, H, W).
    """
    # BEGIN SOLUTION
    k = weight.shape[-1]
    logit = ops.conv2d(compressed, weight, None, padding=(k - 1) // 2)
    return logit if bn is None else bn(logit)
    # END SOLUTION


class SpatialGate(Module):
    r"""CBAM spatial attention: :math:`F' = M_s(F) \otimes F` (Eq. 3, see :func:`spatial_attention_logit`).

    ``compress="pool"`` is the paper's channel pool [mean; max] (works for any C); ``"conv1x1"`` is the
    Table 2 alternative, a learned 1×1 conv C -> 1 with bias (it needs ``gate_channels``).
    ``kernel_size``: odd (the paper compares 3 and 7). ``bn=True``: the official code's
    BatchNorm2d(1, momentum=0.01) after the conv; ``bn=False``: Eq. 3 as written.
    Input (N, C, H, W) -> output of the same shape.
    """

    def __init__(self, kernel_size=7, compress="pool", bn=True, gate_channels=None):
        super().__init__()
        owner = type(self).__name__
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{owner}: kernel_size must be an odd positive int (the paper uses 3 and 7) so that "
                             f"padding (k-1)/2 keeps H×W, got {kernel_size!r}")
        if compress not in COMPRESSIONS:
            raise ValueError(f"{owner}: compress must be one of {COMPRESSIONS}, got {compress!r}")
        if gate_channels is not None:
            gate_channels = check_positive_int(gate_channels, "gate_channels", owner)
        elif compress == "conv1x1":
            raise ValueError(f"{owner}: compress='conv1x1' learns a 1×1 conv C -> 1, so it needs gate_channels")
        self.kernel_size, self.compress_mode, self.gate_channels = kernel_size, compress, gate_channels
        self.compress_conv = Conv2d(gate_channels, 1, 1) if compress == "conv1x1" else None
        self.conv = Conv2d(2 if compress == "pool" else 1, 1, kernel_size, padding=(kernel_size - 1) // 2,
                           bias=False)
        self.bn = BatchNorm2d(1, momentum=0.01) if bn else None
        self.logit_out = Identity()  # as ChannelGate's: a forward hook sees the logit here

    def config(self):
        return dict(kernel_size=self.kernel_size, compress=self.compress_mode, bn=self.bn is not None,
                    gate_channels=self.gate_channels)

    def compress(self, x):
        """(N, C, H, W) -> (N, 2, H, W) channel pool, or (N, 1, H, W) from the learned 1×1 conv."""
        return channel_pool(x) if self.compress_conv is None else self.compress_conv(x)

    def logit_of_compressed(self, compressed):
        return self.logit_out(spatial_attention_logit(compressed, self.conv.weight, self.bn))

    def logit(self, x):
        """(N, C, H, W) -> the spatial-attention logit (N, 1, H, W), before the sigmoid."""
        x = check_input(self, x, (4,), self.gate_channels)
        return self.logit_of_compressed(self.compress(x))

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channels)
        return ops.mul(x, ops.sigmoid(self.logit(x)))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, compress={self.compress_mode!r}"


# --------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------
@exercise("4.1", "CBAM block: compose channel and spatial attention in the three arrangements of Table 3 "
                 "(lesson 4)")
def cbam_attention(x, channel_gate, spatial_gate, arrangement="channel-spatial"):
    r"""Eq. 1 and the paper's Table 3 arrangements; x (N, C, H, W) -> (N, C, H, W).

    * ``"channel-spatial"`` (Eq. 1): :math:`F' = M_c(F) \otimes F`, :math:`F'' = M_s(F') \otimes F'`;
    * ``"spatial-channel"``: :math:`F' = M_s(F) \otimes F`, :math:`F'' = M_c(F') \otimes F'`;
    * ``"parallel"``: the two logits are added, then one sigmoid:
      :math:`F' = \sigma(\mathrm{logit}_c(F) + \mathrm{logit}_s(F)) \otimes F`.

    ``spatial_gate=None`` is channel attention alone (``no_spatial``). ``channel_gate`` / ``spatial_gate``
    are a :class:`ChannelGate` and a :class:`SpatialGate` (their ``logit`` methods hold Eqs. 2 and 3).
    The channel-first path with the channel pool never stores F': one op pools it (:func:`ops.gated_channel_pool`),
    one forms F'' = M_s ⊗ (M_c ⊗ F) (:func:`ops.channel_spatial_gate`), each in one pass over F.
    """
    # BEGIN SOLUTION
    if spatial_gate is None:
        return channel_gate(x)
    if arrangement == "spatial-channel":
        return channel_gate(spatial_gate(x))
    if arrangement == "parallel":
        both = ops.add(expand_channels(channel_gate.logit(x)), spatial_gate.logit(x))
        return ops.mul(x, ops.sigmoid(both))
    gate = ops.sigmoid(channel_gate.logit(x))
    if spatial_gate.compress_mode == "pool":
        pooled = ops.gated_channel_pool(x, gate)
        return ops.channel_spatial_gate(x, gate, ops.sigmoid(spatial_gate.logit_of_compressed(pooled)))
    return spatial_gate(ops.mul(x, expand_channels(gate)))
    # END SOLUTION


class CBAM(Module):
    r"""Convolutional Block Attention Module: :math:`F' = M_c(F) \otimes F`, :math:`F'' = M_s(F') \otimes F'`
    (see :func:`cbam_attention` for the arrangements).

    ``gate_channels``, ``reduction_ratio``, ``pool_types``: the :class:`ChannelGate`'s;
    ``kernel_size``, ``spatial_bn``, ``compress``: the :class:`SpatialGate`'s (``spatial_bn=False`` and
    ``compress="conv1x1"`` build the paper's Table 2 variants); ``no_spatial=True`` drops the spatial gate;
    ``arrangement``: ``"channel-spatial"`` (the paper's and official order), ``"spatial-channel"`` or
    ``"parallel"`` (Table 3). Input (N, C, H, W) -> output of the same shape.
    """

    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max"), no_spatial=False,
                 arrangement="channel-spatial", kernel_size=7, spatial_bn=True, compress="pool"):
        super().__init__()
        if arrangement not in ARRANGEMENTS:
            raise ValueError(f"CBAM: arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
        self.arrangement, self.no_spatial = arrangement, bool(no_spatial)
        self.channel_gate = ChannelGate(gate_channels, reduction_ratio, pool_types)
        self.spatial_gate = None if no_spatial else SpatialGate(
            kernel_size, compress, spatial_bn, gate_channels if compress == "conv1x1" else None)
        self.spatial_options = dict(kernel_size=kernel_size, spatial_bn=spatial_bn, compress=compress)

    @property
    def gate_channels(self):
        return self.channel_gate.gate_channels

    def config(self):
        return dict(**self.channel_gate.config(), no_spatial=self.no_spatial, arrangement=self.arrangement,
                    **self.spatial_options)

    def forward(self, x):
        x = check_input(self, x, (4,), self.gate_channels)
        return cbam_attention(x, self.channel_gate, self.spatial_gate, self.arrangement)

    def extra_repr(self):
        return f"arrangement={self.arrangement!r}" + (", no_spatial=True" if self.no_spatial else "")
