"""A lightweight MobileNet-style family (depthwise-separable convs, width multiplier α) for small inputs."""
from __future__ import annotations

from .. import nn, ops
from ..nn.layers import check_input
from . import common
from .common import check_attention, classify, conv_bn, make_attention

#: (output channels at α = 1, stride) of each depthwise-separable block: MobileNet's pattern, shortened
#: for 32×32 to 48×48 inputs (three downsamplings).
SMALL_CONFIG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))


class DepthwiseSeparable(nn.Module):
    r"""A 3×3 depthwise conv-BN-ReLU then a 1×1 pointwise conv-BN-ReLU, then the block's attention A:

    :math:`y = A(\mathrm{ReLU}(\mathrm{BN}(W_{pw} \ast \mathrm{ReLU}(\mathrm{BN}(W_{dw} \ast_{groups=C} x)))))`
    (MobileNet has no residual, so the attention refines the block output, as CBAM does "at every block").
    """

    def __init__(self, in_channels, out_channels, stride=1, attention=None):
        super().__init__()
        self.in_channels = in_channels
        self.depthwise = conv_bn(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = conv_bn(in_channels, out_channels, 1)
        self.attention = attention

    def forward(self, x):
        x = check_input(self, x, (4,), self.in_channels)
        out = ops.relu(self.pointwise(ops.relu(self.depthwise(x))))
        return out if self.attention is None else self.attention(out)


def scaled(channels, width_multiplier):
    """Channels × α, at least 8 (so r = 8 still leaves one hidden unit)."""
    return max(8, int(channels * width_multiplier))


class MobileNet(nn.Module):
    """MobileNet-style classifier: 3×3 stem (stride 1), depthwise-separable blocks, global pool, FC.

    ``width_multiplier`` α scales every width (CBAM Table 5 uses 1 and 0.7); ``config``: (channels, stride) per
    block. ``attention``: None, ``"se"`` / ``"cbam"`` after every block, or ``"bam"`` at each bottleneck, i.e.
    on the input of every block that downsamples (``bam_in_every_block=True``: after every block instead).
    """

    def __init__(self, width_multiplier=1.0, num_classes=10, in_channels=3, config=SMALL_CONFIG, stem_channels=32,
                 attention=None, attention_options=None, bam_in_every_block=False, zero_init_spatial_bn=False):
        super().__init__()
        check_attention(attention, "MobileNet")
        if not width_multiplier > 0:
            raise ValueError(f"MobileNet: width_multiplier must be > 0, got {width_multiplier!r}")
        options = dict(attention_options or {})
        in_block = attention in ("se", "cbam") or (attention == "bam" and bam_in_every_block)
        self.in_channels, self.attention_kind, self.width_multiplier = in_channels, attention, width_multiplier
        channels = scaled(stem_channels, width_multiplier)
        self.stem = conv_bn(in_channels, channels, 3)
        layers = []
        for out, stride in config:
            if attention == "bam" and not in_block and stride != 1:
                layers.append(make_attention("bam", channels, options))
            out = scaled(out, width_multiplier)
            layers.append(DepthwiseSeparable(channels, out, stride,
                                             make_attention(attention, out, options) if in_block else None))
            channels = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        if zero_init_spatial_bn:
            common.zero_init_spatial_bn(self)

    def forward(self, x):
        x = check_input(self, x, (4,), self.in_channels)
        return classify(self.features(ops.relu(self.stem(x))), self.fc)

    def extra_repr(self):
        return f"width_multiplier={self.width_multiplier}, attention={self.attention_kind!r}"
