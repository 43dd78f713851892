"""Inverted dropout.

Training, with keep probability q = 1 - p and mask m_i ~ Bernoulli(q)
    y  = x * m / q          (scaled now, so evaluation needs no rescaling)
    dx = dy * m / q
Evaluation
    y = x,  dx = dy

Docs: docs/regularisation.md#dropout
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.nn.module import Module
from minicnn.validate import check_generator, is_real, satisfies


class Dropout(Module):
    """Zero each element with probability ``p`` during training; identity in eval mode.

    The mask is drawn from ``generator`` (a ``numpy.random.Generator``; a
    fresh unseeded one when omitted) so that runs can be reproduced.
    """

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not (is_real(p) and satisfies(p, "in [0, 1)")):
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        check_generator(generator, "Dropout")
        self.p = float(p)
        self.generator = generator if generator is not None else np.random.default_rng()

    def forward(self, x):
        if not hasattr(x, "dtype") or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"Dropout: expected a floating-point array, got {getattr(x, 'dtype', type(x).__name__)}")
        if not self.training or self.p == 0.0:
            self.save_for_backward(None, output=x)  # passed through unchanged: no mask
            return x
        xp = get_array_module(x)
        keep = 1.0 - self.p
        # Drawn on the host from the seeded generator, then moved to x's device.
        mask = xp.asarray(self.generator.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
        self.save_for_backward(mask, output=x)
        return x * mask

    def backward(self, grad_output):
        (mask,) = self.saved_tensors(grad_output)
        if mask is None:  # eval mode (or p == 0)
            return grad_output
        return grad_output * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
