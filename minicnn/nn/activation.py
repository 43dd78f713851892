"""Element-wise and normalising activations: ReLU, LogSoftmax, Softmax.

ReLU
    y = max(x, 0)                  dx = dy * [x > 0]
    (the subgradient at exactly 0 is taken to be 0, as in PyTorch)

LogSoftmax along ``dim``
    y_i = x_i - log sum_j exp(x_j)        computed as x_i - m - log sum_j exp(x_j - m),
                                          m = max_j x_j, so exp never overflows
    dx_i = dy_i - softmax(x)_i * sum_j dy_j

Softmax along ``dim``
    s_i = exp(x_i - m) / sum_j exp(x_j - m)
    dx_i = s_i * (dy_i - sum_j dy_j s_j)

Docs: docs/layers.md#relu, docs/losses.md#logsoftmax
"""
from __future__ import annotations

import numpy as np

from minicnn.nn import functional as F
from minicnn.nn.module import Module


class ReLU(Module):
    """``max(x, 0)``, element-wise."""

    def forward(self, x):
        if not hasattr(x, "dtype"):
            raise ValueError(f"ReLU: expected an array, got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"ReLU: expected a floating-point array, got dtype {x.dtype}")
        y = F.relu_forward(x)                       # max(x, 0), in x's dtype
        self.save_for_backward(y, output=y)         # y > 0 exactly where x > 0, so backward needs only y
        return y

    def backward(self, grad_output):
        (y,) = self.saved_tensors(grad_output)
        return F.relu_backward(grad_output, y)      # dy * [y > 0]


class _AlongDim(Module):
    """A normalisation along ``dim`` (LogSoftmax, Softmax): ``forward_fn(x, dim)`` and
    ``backward_fn(dy, y, dim)`` from :mod:`minicnn.nn.functional`, whose backward needs only ``y``."""

    forward_fn = backward_fn = None

    def __init__(self, dim=1):
        super().__init__()
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise ValueError(f"{type(self).__name__}: dim must be an int, got {dim!r}")
        self.dim = int(dim)

    def forward(self, x):
        if not hasattr(x, "ndim") or x.ndim < 1 or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{self!r}: expected a floating-point array with at least one dimension, "
                             f"got {getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', None)}")
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self!r}: dim={self.dim} is out of range for an input of shape {tuple(x.shape)}")
        y = self.forward_fn(x, self.dim)
        self.save_for_backward(y, output=y)
        return y

    def backward(self, grad_output):
        (y,) = self.saved_tensors(grad_output)
        return self.backward_fn(grad_output, y, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(_AlongDim):
    """``log(softmax(x))`` along ``dim``, by the log-sum-exp trick:
    ``y = x - m - log sum exp(x - m)``, ``dx = dy - exp(y) * sum dy``."""

    forward_fn, backward_fn = staticmethod(F.log_softmax), staticmethod(F.log_softmax_backward)


class Softmax(_AlongDim):
    """``exp(x) / sum(exp(x))`` along ``dim``: ``s = exp(x - m) / sum exp(x - m)``, ``dx = s * (dy - sum dy s)``."""

    forward_fn, backward_fn = staticmethod(F.softmax), staticmethod(F.softmax_backward)
