"""Parameter initialisation: PyTorch's default, and Keras's.

PyTorch initialises ``Conv2d`` and ``Linear`` weights with
``kaiming_uniform_(w, a=sqrt(5))``, which works out to
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases with that same bound.
``fan_in`` is ``in_features`` for Linear and ``in_channels * KH * KW`` for Conv2d.
This is what every layer draws when it is built.

Keras initialises ``Conv2D`` and ``Dense`` weights with Glorot (Xavier)
uniform and biases with zeros::

    W ~ U(-b, b),   b = sqrt(6 / (fan_in + fan_out))

with ``fan_out = out_features`` for Linear and ``out_channels * KH * KW`` for
Conv2d. Its variance b^2 / 3 = 2 / (fan_in + fan_out) is 3x PyTorch's
1 / (3 fan_in) when fan_in = fan_out, so the weights start larger and an
optimizer's step of a given size changes them relatively less.
:func:`glorot_uniform_` re-draws a built model's weights so.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn.backend import get_array_module


def uniform_fan_in(shape, fan_in: int, generator: np.random.Generator | None) -> np.ndarray:
    """Draw ``shape`` from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` in float64."""
    rng = generator if generator is not None else np.random.default_rng()
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape)


def glorot_uniform_(model, generator: np.random.Generator | None = None):
    """Re-draw every Conv2d and Linear weight of ``model`` as Keras does; biases become 0.

    The layers are those of ``model.modules()`` whose ``weight`` has 2 dimensions (Linear:
    fan_in = in_features, fan_out = out_features) or 4 (Conv2d: times KH * KW); BatchNorm2d's
    1-dimensional weight is left alone.  Weights are drawn in float64 from ``U(-b, b)``,
    ``b = sqrt(6 / (fan_in + fan_out))``, in that order, then cast to each weight's dtype in place.
    Returns ``model``.
    """
    rng = generator if generator is not None else np.random.default_rng()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is None or weight.data.ndim not in (2, 4):
            continue
        w = weight.data
        receptive = int(np.prod(w.shape[2:]))  # KH * KW for Conv2d, 1 for Linear
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w[...] = get_array_module(w).asarray(rng.uniform(-bound, bound, size=w.shape), dtype=w.dtype)
        if getattr(module, "bias", None) is not None:
            module.bias.data[...] = 0
    return model
