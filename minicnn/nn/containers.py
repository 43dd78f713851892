"""Containers: ``Sequential`` runs its modules in order, and backward in reverse.

    y = f_L(... f_2(f_1(x)))          dL/dx = J_1^T (J_2^T ( ... J_L^T dL/dy))

With gradients on, a Conv2d -> ReLU -> MaxPool2d run (or a Conv2d -> ReLU pair) is one fused step
forward and backward; under no_grad (inference) a Conv2d -> ReLU -> MaxPool2d run is one fused call:
see minicnn/nn/fusion.py.

Docs: docs/overview.md
"""
from __future__ import annotations

from collections import OrderedDict

from minicnn.nn import fusion
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.module import Module


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=..., relu=...))`` uses the given names.

    With gradients on, each Conv2d -> ReLU -> MaxPool2d run, and each Conv2d ->
    ReLU pair no MaxPool2d follows, is one fused step (forward and backward);
    under :func:`minicnn.no_grad` each Conv2d -> ReLU -> MaxPool2d run is one
    fused kernel call (:mod:`minicnn.nn.fusion`). For inference on a large
    batch, :func:`minicnn.training.forward_in_blocks` runs it a block of
    samples at a time.
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
        layers = list(self._modules.values())
        steps, i = [], 0  # what backward runs in reverse: the layers, or a fused pair in their place
        while i < len(layers):
            if not is_grad_enabled() and fusion.fusable(layers[i:i + 3]):
                x = fusion.conv_relu_pool(*layers[i:i + 3], x)  # inference: Conv2d -> ReLU -> MaxPool2d in one pass
                steps += layers[i:i + 3]
                i += 3
            elif is_grad_enabled() and fusion.fusable(layers[i:i + 3]):
                steps.append(fusion.ConvReLUPool(*layers[i:i + 3]))  # training: Conv2d -> ReLU -> MaxPool2d
                x = steps[-1](x)
                i += 3
            elif is_grad_enabled() and fusion.fusable(layers[i:i + 2], fusion.PAIR):
                steps.append(fusion.ConvReLU(*layers[i:i + 2]))  # training: Conv2d -> ReLU as one step
                x = steps[-1](x)
                i += 2
            else:
                steps.append(layers[i])
                x = layers[i](x)
                i += 1
        object.__setattr__(self, "_steps", steps)
        return x

    def _backward_steps(self) -> list:
        """The steps of the last forward (before any: the layers, whose backward then says so)."""
        return getattr(self, "_steps", None) or list(self._modules.values())

    def backward(self, grad_output):
        for step in reversed(self._backward_steps()):
            grad_output = step.backward(grad_output)
        return grad_output

    def parameter_backward(self, grad_output) -> None:
        """:meth:`backward` without ``dL/dx``: the first step with parameters gets ``parameter_backward``.

        The steps before it (a Rescaling of the images, say) have nothing to learn and nothing upstream
        that does, so their backward is not run at all.
        """
        steps = self._backward_steps()
        first = next((i for i, step in enumerate(steps) if not _parameterless(step)), len(steps))
        for step in reversed(steps[first + 1:]):
            grad_output = step.backward(grad_output)
        if first < len(steps):
            steps[first].parameter_backward(grad_output)


def _parameterless(step) -> bool:
    """A layer with no parameters (a fused step always has its convolution's)."""
    return isinstance(step, Module) and next(step.parameters(), None) is None
