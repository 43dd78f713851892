"""``Parameter``: a learnable array and the gradient accumulated for it.

A backward pass *adds* ``dL/dtheta`` into ``grad`` (``accumulate_grad``), so
gradients of a parameter used twice sum, and ``zero_grad`` starts afresh.
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_backend


class Parameter:
    """A learnable array and the gradient accumulated for it.

    ``data`` keeps the dtype and device of the array it was made from;
    ``grad`` is ``None`` until a backward pass writes it (and again after
    ``zero_grad``), then an array of ``data``'s shape and dtype.
    """

    def __init__(self, data):
        if not hasattr(data, "dtype") or not hasattr(data, "shape"):
            data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter data must be a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    def accumulate_grad(self, g) -> None:
        """``grad += g`` (``grad = g`` the first time); ``g`` must have the parameter's shape."""
        if tuple(g.shape) != tuple(self.data.shape):
            raise ValueError(f"Parameter.accumulate_grad: gradient of shape {tuple(g.shape)} for a parameter of "
                             f"shape {tuple(self.data.shape)}; a gradient has its parameter's shape (a bias's "
                             f"gradient is summed over the batch)")
        if self.grad is None:
            self.grad = g.astype(self.data.dtype, copy=True)
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype})"


def float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype; it must be floating point."""
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"a module's dtype must be floating point, got {dt}")
    return dt


def default_float():
    """The dtype layers use when none is given."""
    return np.float32


def new_parameter(array, dtype) -> Parameter:
    """A Parameter of ``array`` cast to ``dtype`` on the active backend's device."""
    return Parameter(get_backend().asarray(array, dtype=float_dtype(dtype)))
