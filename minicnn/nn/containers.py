"""Containers: ``Sequential`` runs its modules in order, and backward in reverse.

    y = f_L(... f_2(f_1(x)))          dL/dx = J_1^T (J_2^T ( ... J_L^T dL/dy))

Docs: docs/overview.md
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minicnn.nn._validate import is_positive_int
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.module import Module


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` uses the given names.

    Under :func:`no_grad`, when every child is :meth:`~Module.per_sample`, a
    batch of more than ``block_size`` samples goes through all the layers
    ``block_size`` samples at a time and the outputs are concatenated.  Each
    layer then works on arrays a fraction of the size, which the memory
    allocator hands back from block to block, and more of them stay in cache;
    the whole batch's arrays (hundreds of megabytes for 1000 MNIST images) are
    fresh memory that the operating system maps and zeroes on every call.
    Host (NumPy) arrays only: on a GPU the whole batch runs at once, which
    keeps the GPU busy, and CuPy's memory pool already reuses its arrays.
    ``block_size`` is a class attribute; set it on an instance to change it
    there, or to ``None`` to turn blocking off.
    """

    block_size = 128

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        for name, layer in items:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Sequential: a child's name must be a non-empty string without '.' "
                                 f"(state-dict keys join names with dots), got {name!r}")
            if hasattr(self, name):
                raise ValueError(f"Sequential: the child name {name!r} would hide Sequential.{name}; "
                                 f"choose another name")
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: element {name!r} is a {type(layer).__name__}, not a Module")
            setattr(self, name, layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __iter__(self):
        return iter(self._modules.values())

    def per_sample(self) -> bool:
        return all(layer.per_sample() for layer in self._modules.values())

    def forward(self, x):
        block = self.block_size
        if block is not None and not is_positive_int(block):
            raise ValueError(f"Sequential.block_size must be a positive int or None, got {block!r}")
        if (is_grad_enabled() or block is None or not isinstance(x, np.ndarray) or x.ndim < 1
                or len(x) <= block or not self.per_sample()):
            return self._forward_all(x)
        return np.concatenate([self._forward_all(x[i:i + block]) for i in range(0, len(x), block)])

    def _forward_all(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, grad_output):
        for layer in reversed(self._modules.values()):
            grad_output = layer.backward(grad_output)
        return grad_output
