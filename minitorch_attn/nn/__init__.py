"""Layers with PyTorch's habits (``Module``, ``Parameter``, state dicts, train/eval) and the attention modules.

Modules call :mod:`minitorch_attn.ops` only, so they run on whichever backend is current.
"""
from . import init
from .init import manual_seed
from .bam import BAM, BAMChannelGate, BAMSpatialGate
from .cbam import CBAM, SE, ChannelGate, SpatialGate
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Identity, Linear, ReLU, Sigmoid
from .module import Module, ModuleList, Parameter, Sequential, StateDictError
from .optim import SGD, Adam, CosineAnnealingLR, Optimizer, StepLR

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "StateDictError",
    "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "Sigmoid", "Flatten", "Identity",
    "ChannelGate", "SpatialGate", "CBAM", "SE", "BAMChannelGate", "BAMSpatialGate", "BAM",
    "Optimizer", "SGD", "Adam", "StepLR", "CosineAnnealingLR", "init", "manual_seed",
]
