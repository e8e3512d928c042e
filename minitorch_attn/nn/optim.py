"""Plain SGD with momentum and weight decay (PyTorch's update rule), for training the backbones."""
from __future__ import annotations

import numpy as np


class SGD:
    r"""One step per call, for every parameter p with a gradient:

    .. math:: d = \nabla p + \lambda p, \qquad v \leftarrow \mu v + d \ (v = d \text{ at the first step}),
              \qquad p \leftarrow p - \eta v

    (λ = ``weight_decay``, μ = ``momentum``, η = ``lr``; the same rule as ``torch.optim.SGD`` without dampening.)
    """

    def __init__(self, parameters, lr, momentum=0.0, weight_decay=0.0):
        self.parameters = list(parameters)
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"SGD: {name} must be a number >= 0, got {value!r}")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = [None] * len(self.parameters)

    def zero_grad(self):
        for param in self.parameters:
            param.grad = None

    def step(self):
        for index, param in enumerate(self.parameters):
            if param.grad is None:
                continue
            direction = param.grad + self.weight_decay * param.data if self.weight_decay else param.grad
            if self.momentum:
                previous = self.velocity[index]
                direction = np.array(direction) if previous is None else self.momentum * previous + direction
                self.velocity[index] = direction
            param.data -= (self.lr * direction).astype(param.dtype)
