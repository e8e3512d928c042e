"""The official CBAM/BAM modules' structure in PyTorch, as a reference for loading official weights.

The official code (Jongchan/attention-module, ``MODELS/cbam.py`` and ``MODELS/bam.py``) is rebuilt here from
its description in the course's reference notes: the same module and layer names (so ``state_dict()`` has
the official keys), the ``[max, mean]`` channel pool, ``BasicConv``'s BatchNorm with momentum 0.01, BAM's
product fusion and its square-input channel pooling. It is written independently of
:mod:`minitorch_attn.interop`, so that loading these modules' state dicts with ``interop.load_official``
checks the key mapping (tests/test_interop.py) and lesson 8 can show each difference from the papers.

Imports torch; nothing else in the package imports this module.
"""
import torch
import torch.nn.functional as F
from torch import nn as tnn


class OfficialCBAMChannelGate(tnn.Module):
    def __init__(self, gate_channels, reduction_ratio, pool_types):
        super().__init__()
        self.mlp = tnn.Sequential(tnn.Flatten(), tnn.Linear(gate_channels, gate_channels // reduction_ratio),
                                  tnn.ReLU(), tnn.Linear(gate_channels // reduction_ratio, gate_channels))
        self.pool_types = pool_types

    def forward(self, x):
        window = (x.size(2), x.size(3))
        pools = {"avg": lambda: F.avg_pool2d(x, window, stride=window),
                 "max": lambda: F.max_pool2d(x, window, stride=window),
                 "lp": lambda: F.lp_pool2d(x, 2, window, stride=window),
                 "lse": lambda: self.logsumexp_2d(x)}
        total = None
        for kind in self.pool_types:
            raw = self.mlp(pools[kind]())
            total = raw if total is None else total + raw
        return x * torch.sigmoid(total).unsqueeze(2).unsqueeze(3).expand_as(x)

    @staticmethod
    def logsumexp_2d(x):
        flat = x.view(x.size(0), x.size(1), -1)
        peak, _ = flat.max(dim=2, keepdim=True)
        return peak + (flat - peak).exp().sum(dim=2, keepdim=True).log()


class OfficialChannelPool(tnn.Module):
    def forward(self, x):
        return torch.cat((x.max(dim=1)[0].unsqueeze(1), x.mean(dim=1).unsqueeze(1)), dim=1)


class OfficialBasicConv(tnn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, padding):
        super().__init__()
        self.conv = tnn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = tnn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class OfficialCBAMSpatialGate(tnn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        self.compress = OfficialChannelPool()
        self.spatial = OfficialBasicConv(2, 1, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x):
        return x * torch.sigmoid(self.spatial(self.compress(x)))


class OfficialCBAM(tnn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max"), no_spatial=False,
                 kernel_size=7):
        super().__init__()
        self.ChannelGate = OfficialCBAMChannelGate(gate_channels, reduction_ratio, pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = OfficialCBAMSpatialGate(kernel_size)

    def forward(self, x):
        out = self.ChannelGate(x)
        return out if self.no_spatial else self.SpatialGate(out)


class OfficialBAMChannelGate(tnn.Module):
    def __init__(self, gate_channel, reduction_ratio):
        super().__init__()
        hidden = gate_channel // reduction_ratio
        self.gate_c = tnn.Sequential()
        self.gate_c.add_module("flatten", tnn.Flatten())
        self.gate_c.add_module("gate_c_fc_0", tnn.Linear(gate_channel, hidden))
        self.gate_c.add_module("gate_c_bn_1", tnn.BatchNorm1d(hidden))
        self.gate_c.add_module("gate_c_relu_1", tnn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", tnn.Linear(hidden, gate_channel))

    def forward(self, x):
        pooled = F.avg_pool2d(x, x.size(2), stride=x.size(2))  # the official square-input assumption
        return self.gate_c(pooled).unsqueeze(2).unsqueeze(3).expand_as(x)


class OfficialBAMSpatialGate(tnn.Module):
    def __init__(self, gate_channel, reduction_ratio, dilation_conv_num, dilation_val):
        super().__init__()
        hidden = gate_channel // reduction_ratio
        self.gate_s = tnn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", tnn.Conv2d(gate_channel, hidden, kernel_size=1))
        self.gate_s.add_module("gate_s_bn_reduce0", tnn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", tnn.ReLU())
        for i in range(dilation_conv_num):
            self.gate_s.add_module(f"gate_s_conv_di_{i}", tnn.Conv2d(hidden, hidden, 3, padding=dilation_val,
                                                                      dilation=dilation_val))
            self.gate_s.add_module(f"gate_s_bn_di_{i}", tnn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", tnn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", tnn.Conv2d(hidden, 1, kernel_size=1))

    def forward(self, x):
        return self.gate_s(x).expand_as(x)


class OfficialBAM(tnn.Module):
    def __init__(self, gate_channel, reduction_ratio=16, dilation_conv_num=2, dilation_val=4):
        super().__init__()
        self.channel_att = OfficialBAMChannelGate(gate_channel, reduction_ratio)
        self.spatial_att = OfficialBAMSpatialGate(gate_channel, reduction_ratio, dilation_conv_num, dilation_val)

    def forward(self, x):
        att = 1 + torch.sigmoid(self.channel_att(x) * self.spatial_att(x))
        return att * x


def randomize_torch(module, seed):
    """Every parameter and BN statistic of a torch module random (so a misrouted value shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=gen))
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(0.5 + 1.5 * torch.rand(buffer.shape, generator=gen))
            elif name.endswith("running_mean"):
                buffer.copy_(0.5 * torch.randn(buffer.shape, generator=gen))
    return module
