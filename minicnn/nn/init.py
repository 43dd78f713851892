"""Default parameter initialisation, the same distributions as PyTorch's.

PyTorch initialises ``Conv2d`` and ``Linear`` weights with
``kaiming_uniform_(w, a=sqrt(5))``, which works out to
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases with that same bound.
``fan_in`` is ``in_features`` for Linear and ``in_channels * KH * KW`` for Conv2d.
"""
from __future__ import annotations

import math

import numpy as np


def uniform_fan_in(shape, fan_in: int, generator: np.random.Generator | None) -> np.ndarray:
    """Draw ``shape`` from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` in float64."""
    rng = generator if generator is not None else np.random.default_rng()
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape)
