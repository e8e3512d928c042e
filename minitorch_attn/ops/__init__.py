"""Differentiable ops: one ``Function`` per formula (its docstring states it), each with a checked entry point.

Layers: ops (this package) -> ``minitorch_attn.nn`` modules -> ``minitorch_attn.models``.
Every op calls its kernels through ``minitorch_attn.backends`` and nothing else.
"""
from .arith import Add, Concat, Mul, Reshape, Sum, add, concat, flatten, mean, mul, reshape, sum
from .attention import (
    ChannelSpatialGate,
    GatedChannelPool,
    ResidualGate,
    channel_spatial_gate,
    gated_channel_pool,
    residual_gate,
)
from .conv import Conv2d, conv2d, same_padding
from .dense import Linear, ReLU, Sigmoid, linear, relu, sigmoid
from .loss import SoftmaxCrossEntropy, cross_entropy
from .norm import BatchNorm, batch_norm, update_running_stats
from .pooling import (
    GLOBAL_POOLS,
    ChannelMax,
    ChannelMean,
    GlobalAvgMaxPool,
    GlobalAvgPool,
    GlobalLPPool,
    GlobalLSEPool,
    GlobalMaxPool,
    channel_max,
    channel_mean,
    global_avg_max_pool,
    global_avg_pool,
    global_lp_pool,
    global_lse_pool,
    global_max_pool,
)
