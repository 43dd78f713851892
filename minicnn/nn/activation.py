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

from minicnn.backend import get_array_module, kernels_for
from minicnn.nn._validate import check_grad
from minicnn.nn.module import Module, backward_before_forward


def _need_cache(layer, grad_output):
    """The cached forward output, once ``grad_output`` is checked against its shape."""
    if layer._cache is None:
        raise backward_before_forward(type(layer).__name__)
    check_grad(grad_output, layer._cache.shape, type(layer).__name__)
    return layer._cache


class ReLU(Module):
    """``max(x, 0)``, element-wise."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def per_sample(self) -> bool:
        return True

    def forward(self, x):
        if not hasattr(x, "dtype"):
            raise ValueError(f"ReLU: expected an array, got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"ReLU: expected a floating-point array, got dtype {x.dtype}")
        y = kernels_for(x).relu_forward(x)  # reference: xp.maximum(x, 0), in x's dtype
        self._cache = y  # y > 0 exactly where x > 0, so backward needs only y
        return y

    def backward(self, grad_output):
        return kernels_for(grad_output).relu_backward(grad_output, _need_cache(self, grad_output))  # dy * [y > 0]


def _dim_arg(layer, dim) -> int:
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise ValueError(f"{layer}: dim must be an int, got {dim!r}")
    return int(dim)


def _check_dim(layer, x, dim):
    if not hasattr(x, "ndim") or x.ndim < 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{layer}: expected a floating-point array with at least one dimension, "
                         f"got {getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', None)}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{layer}: dim={dim} is out of range for an input of shape {tuple(x.shape)}")


class LogSoftmax(Module):
    """``log(softmax(x))`` along ``dim``, by the log-sum-exp trick."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = _dim_arg("LogSoftmax", dim)
        self._cache = None

    def per_sample(self) -> bool:
        return self.dim > 0  # a negative dim names axis 0 when the input has -dim axes

    def forward(self, x):
        _check_dim(f"LogSoftmax(dim={self.dim})", x, self.dim)
        xp = get_array_module(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        self._cache = y
        return y

    def backward(self, grad_output):
        y = _need_cache(self, grad_output)
        xp = get_array_module(y)
        return grad_output - xp.exp(y) * grad_output.sum(axis=self.dim, keepdims=True)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` along ``dim``."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = _dim_arg("Softmax", dim)
        self._cache = None

    def per_sample(self) -> bool:
        return self.dim > 0  # a negative dim names axis 0 when the input has -dim axes

    def forward(self, x):
        _check_dim(f"Softmax(dim={self.dim})", x, self.dim)
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        s = e / e.sum(axis=self.dim, keepdims=True)
        self._cache = s
        return s

    def backward(self, grad_output):
        s = _need_cache(self, grad_output)
        return s * (grad_output - (grad_output * s).sum(axis=self.dim, keepdims=True))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
