"""Small backbones (ResNet-style, MobileNet-style) with SE / CBAM / BAM inserted where the papers put them."""
from .mobilenet import DepthwiseSeparable, MobileNet
from .report import format_report, model_report
from .resnet import BasicBlock, ResNet, resnet10, resnet18

__all__ = ["ResNet", "BasicBlock", "resnet10", "resnet18", "MobileNet", "DepthwiseSeparable",
           "model_report", "format_report"]
