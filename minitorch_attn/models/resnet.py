"""A small ResNet family (BasicBlock) for 32×32 to 48×48 inputs, with SE / CBAM / BAM where the papers put them."""
from __future__ import annotations

from .. import nn, ops
from ..nn.layers import check_input
from . import common
from .common import check_attention, classify, conv_bn, make_attention


class BasicBlock(nn.Module):
    r"""Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut:

    :math:`y = \mathrm{ReLU}(A(\mathrm{BN}(W_2 \ast \mathrm{ReLU}(\mathrm{BN}(W_1 \ast x)))) + \mathrm{shortcut}(x))`

    where A is the block's attention module (identity without one): CBAM and SE sit on the residual branch
    before the addition (CBAM Fig. 3, the official ``model_resnet.py``); so does BAM in BAM-C (BAM Table 2).
    """

    def __init__(self, in_channels, out_channels, stride=1, attention=None):
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = conv_bn(in_channels, out_channels, 3, stride)
        self.conv2 = conv_bn(out_channels, out_channels, 3)
        self.attention = attention
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, 1, stride) if needs_projection else None

    def forward(self, x):
        x = check_input(self, x, (4,), self.in_channels)
        out = self.conv2(ops.relu(self.conv1(x)))
        if self.attention is not None:
            out = self.attention(out)
        return ops.relu(ops.add(out, x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """ResNet-style classifier: 3×3 stem, stages of BasicBlocks (stride 2 from the second stage), global pool, FC.

    ``depths``: blocks per stage ((1, 1, 1, 1) is ResNet-10-like, (2, 2, 2, 2) ResNet-18-like); ``widths``:
    channels per stage. ``attention``: None, ``"se"`` or ``"cbam"`` (in every block), or ``"bam"`` (at each
    bottleneck between stages, as the BAM paper and the official code: after every stage but the last;
    ``bam_in_every_block=True`` puts it in every block instead, BAM-C of Table 2). ``attention_options`` go to
    the attention modules. ``zero_init_spatial_bn``: the official CBAM init of the spatial-gate BN weight.
    """

    def __init__(self, depths=(2, 2, 2, 2), widths=(16, 32, 64, 128), num_classes=10, in_channels=3,
                 attention=None, attention_options=None, bam_in_every_block=False, zero_init_spatial_bn=False):
        super().__init__()
        check_attention(attention, "ResNet")
        if len(depths) != len(widths) or not depths or min(depths) < 1:
            raise ValueError(f"ResNet: depths and widths need one positive entry per stage, got depths={depths}, "
                             f"widths={widths}")
        options = dict(attention_options or {})
        in_block = attention in ("se", "cbam") or (attention == "bam" and bam_in_every_block)
        self.in_channels, self.attention_kind = in_channels, attention
        self.stem = conv_bn(in_channels, widths[0], 3)
        stages, bottlenecks, channels = [], [], widths[0]
        for index, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for block in range(depth):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride,
                                         make_attention(attention, width, options) if in_block else None))
                channels = width
            stages.append(nn.Sequential(*blocks))
            if attention == "bam" and not in_block and index < len(depths) - 1:
                bottlenecks.append(make_attention("bam", width, options))
        self.stages = nn.ModuleList(stages)
        self.bottlenecks = nn.ModuleList(bottlenecks)
        self.fc = nn.Linear(channels, num_classes)
        if zero_init_spatial_bn:
            common.zero_init_spatial_bn(self)

    def forward(self, x):
        x = check_input(self, x, (4,), self.in_channels)
        x = ops.relu(self.stem(x))
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < len(self.bottlenecks):
                x = self.bottlenecks[index](x)
        return classify(x, self.fc)

    def extra_repr(self):
        return f"attention={self.attention_kind!r}"


def resnet10(**options):
    """ResNet-10-like: one BasicBlock per stage."""
    return ResNet(depths=(1, 1, 1, 1), **options)


def resnet18(**options):
    """ResNet-18-like: two BasicBlocks per stage."""
    return ResNet(depths=(2, 2, 2, 2), **options)
