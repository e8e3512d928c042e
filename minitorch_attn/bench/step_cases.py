"""The training-step cases: one SGD-momentum step of a whole small backbone, ours against its PyTorch twin.

A step is what a training loop does per batch: forward, softmax cross-entropy, backward, and
``SGD(lr, momentum)``. The networks are the course's ``models`` on 1×32×32 inputs, batch 64, float32, in
train mode; the PyTorch side is ``interop.to_torch`` of the same model (same structure, parameter values,
buffers and data), stepped by ``torch.optim.SGD`` with the same hyper-parameters.
"""
from __future__ import annotations

import numpy as np

from .. import models, ops
from ..nn import SGD, init
from ..tensor import Tensor

BATCH, IMAGE_SIZE, IN_CHANNELS, CLASSES = 64, 32, 1, 10
LR, MOMENTUM = 0.01, 0.9
RESNET_WIDTHS = (16, 32, 64, 128)
#: MobileNet-style at width 0.25: stem 8, then depthwise-separable blocks of 16 to 128 channels.
MOBILENET_WIDTH = 0.25

#: name -> (constructor, attention): CBAM in every block, BAM at the bottlenecks between stages.
STEP_CASES = {
    "resnet10-cbam": ("resnet10", "cbam"),
    "resnet10-bam": ("resnet10", "bam"),
    "mobilenet-cbam": ("mobilenet", "cbam"),
}


def describe(name):
    """The network of a case in words, for the reports."""
    network, attention = STEP_CASES[name]
    if network == "resnet10":
        built = f"models.resnet10(widths={RESNET_WIDTHS}, in_channels={IN_CHANNELS}, attention={attention!r})"
    else:
        built = f"models.MobileNet({MOBILENET_WIDTH}, in_channels={IN_CHANNELS}, attention={attention!r})"
    return f"{built}, batch {BATCH} of {IN_CHANNELS}×{IMAGE_SIZE}×{IMAGE_SIZE}, SGD momentum {MOMENTUM}"


def input_shape():
    return (BATCH, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)


def build_model(name, dtype, seed):
    if name not in STEP_CASES:
        raise ValueError(f"step case: unknown name {name!r}; expected one of {sorted(STEP_CASES)}")
    network, attention = STEP_CASES[name]
    init.manual_seed(seed)
    if network == "resnet10":
        model = models.resnet10(widths=RESNET_WIDTHS, in_channels=IN_CHANNELS, num_classes=CLASSES,
                                attention=attention)
    else:
        model = models.MobileNet(MOBILENET_WIDTH, in_channels=IN_CHANNELS, num_classes=CLASSES, attention=attention)
    return model.to(np.dtype(dtype)).train()


class OursStep:
    """Our model, data and optimizer; ``step()`` is one training step and returns the loss."""

    def __init__(self, name, dtype, seed):
        rng = np.random.default_rng(seed)
        self.model = build_model(name, dtype, seed)
        self.images = rng.standard_normal(input_shape()).astype(dtype)
        self.labels = rng.integers(0, CLASSES, BATCH)
        self.optimizer = SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)

    def forward_loss(self):
        return ops.cross_entropy(self.model(Tensor(self.images)), self.labels)

    def step(self):
        self.optimizer.zero_grad()
        loss = self.forward_loss()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def gradients(self):
        """{name: gradient} of the last step."""
        return {name: p.grad for name, p in self.model.named_parameters()}


class TorchStep:
    """The PyTorch twin of an :class:`OursStep`, made before any step (same starting parameters and data)."""

    def __init__(self, ours):
        import torch

        from ..interop import to_torch

        self.model = to_torch(ours.model)
        self.images = torch.from_numpy(ours.images.copy())
        self.labels = torch.from_numpy(ours.labels)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)

    def step(self):
        import torch.nn.functional as F

        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def gradients(self):
        return {name: p.grad.numpy() for name, p in self.model.named_parameters()}
