"""What the backbones share: building the attention module of a block, the official spatial-BN init, the head."""
from __future__ import annotations

from .. import nn, ops

ATTENTIONS = (None, "se", "cbam", "bam")


def check_attention(attention, owner):
    if attention not in ATTENTIONS:
        raise ValueError(f"{owner}: attention must be one of {ATTENTIONS}, got {attention!r}")


def make_attention(attention, channels, options):
    """The attention module for a block or bottleneck of ``channels`` channels (None for ``attention=None``).

    ``options`` go to the module's constructor: e.g. ``reduction_ratio`` for all three, ``arrangement`` /
    ``kernel_size`` / ``pool_types`` for CBAM, ``fusion`` / ``dilation_val`` for BAM.
    """
    if attention is None:
        return None
    build = {"se": nn.SE, "cbam": nn.CBAM, "bam": nn.BAM}[attention]
    return build(channels, **options)


def zero_init_spatial_bn(model):
    """The official CBAM code's init: every spatial-gate BN weight starts at 0, so M_s starts at σ(0) = 0.5."""
    for module in model.modules():
        if isinstance(module, nn.SpatialGate) and module.bn is not None:
            module.bn.weight.data[...] = 0


def conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1):
    """Conv (no bias: the BN's β replaces it) followed by BatchNorm2d."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                                   groups=groups, bias=False), nn.BatchNorm2d(out_channels))


def classify(features, fc):
    """Global average pool, then the linear classifier: (N, C, H, W) -> (N, num_classes)."""
    return fc(ops.global_avg_pool(features))
