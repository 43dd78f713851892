"""Rescaling: a fixed affine map of every input value, with no parameters.

    y  = scale * x + offset
    dx = scale * dy

A network that wants its input in other units than the data pipeline gives
puts it first (Keras has the same layer, under the same name).  minicnn's
pipeline standardises pixels, x = (p - 0.1307) / 0.3081 for p in [0, 1];
``Rescaling(0.3081, 0.1307)`` turns that back into p, so the background is 0
again, equal to the zero padding of the convolutions that follow:
MnistDeepCNN starts with it because the Keras notebook it follows scales
its pixels to [0, 1].

Docs: docs/layers.md#rescaling
"""
from __future__ import annotations

import numpy as np

from minicnn.nn.module import Module
from minicnn.validate import is_finite_real


class Rescaling(Module):
    """``scale * x + offset``, element-wise, in the input's dtype; nothing to train."""

    def __init__(self, scale: float, offset: float = 0.0):
        super().__init__()
        for name, value in (("scale", scale), ("offset", offset)):
            if not is_finite_real(value):
                raise ValueError(f"Rescaling: {name} must be a finite number, got {value!r}")
        if scale == 0:
            raise ValueError("Rescaling: scale must not be 0 (every input would map to the offset, "
                             "and no gradient would pass)")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x):
        if not hasattr(x, "dtype") or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"Rescaling: expected a floating-point array, got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        y = x * x.dtype.type(self.scale) + x.dtype.type(self.offset)  # stays in x's dtype
        self.save_for_backward(output=y)  # backward needs nothing but the scale
        return y

    def backward(self, grad_output):
        self.saved_tensors(grad_output)
        return grad_output * grad_output.dtype.type(self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, offset={self.offset:g}"
