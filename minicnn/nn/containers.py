"""Containers: ``Sequential`` runs its modules in order, and backward in reverse.

    y = f_L(... f_2(f_1(x)))          dL/dx = J_1^T (J_2^T ( ... J_L^T dL/dy))

``model(x)`` runs exactly the modules ``print(model)`` shows; a faster run of several layers in one
pass is the explicit step :func:`minicnn.nn.fuse`, which puts a fused module in their place.

Docs: docs/overview.md
"""
from __future__ import annotations

from collections import OrderedDict

from minicnn.nn.module import Module


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` uses the given names.

    For inference on a large batch, :func:`minicnn.training.forward_in_blocks`
    runs it a block of samples at a time.
    """

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

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, grad_output):
        for layer in reversed(self._modules.values()):
            grad_output = layer.backward(grad_output)
        return grad_output

    def parameter_backward(self, grad_output) -> None:
        """:meth:`backward` without ``dL/dx``: the first layer with parameters gets ``parameter_backward``.

        The layers before it (a Rescaling of the images, say) have nothing to learn and nothing upstream
        that does, so their backward is not run at all.
        """
        layers = list(self._modules.values())
        first = next((i for i, layer in enumerate(layers) if next(layer.parameters(), None) is not None),
                     len(layers))
        for layer in reversed(layers[first + 1:]):
            grad_output = layer.backward(grad_output)
        if first < len(layers):
            layers[first].parameter_backward(grad_output)
