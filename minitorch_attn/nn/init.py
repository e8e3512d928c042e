"""Parameter initialisation with PyTorch's default distributions, drawn from one seedable generator.

``manual_seed(s)`` then building the same modules in the same order gives the same numbers.
The draws are NumPy's, so the values differ from PyTorch's for the same seed; the distributions match.
"""
from __future__ import annotations

import math

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reset the generator every initialiser draws from."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _generator


def default_uniform(shape, fan_in, dtype=np.float32):
    r"""PyTorch's default for Linear and Conv weights and biases: :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`.

    (For weights this is ``kaiming_uniform_(a=sqrt(5))``: gain :math:`\sqrt{2/(1+5)}` times
    :math:`\sqrt{3/\text{fan\_in}}` is the same bound.)
    """
    bound = 1.0 / math.sqrt(fan_in)
    return _generator.uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal(shape, fan_out, dtype=np.float32):
    r"""He init for ReLU networks in ``mode='fan_out'`` (torchvision's ResNet convs): :math:`N(0, 2/\text{fan\_out})`."""
    return (_generator.standard_normal(shape) * math.sqrt(2.0 / fan_out)).astype(dtype)
