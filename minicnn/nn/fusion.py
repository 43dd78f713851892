"""``fuse(model)``: the explicit step that puts a fused module in the place of each layer run it can.

A network runs the layers it is written with, one by one.  A backend with fused
kernels (Numba) computes a Conv2d -> ReLU -> MaxPool2d run, or a Conv2d -> ReLU
pair, in one pass (see minicnn/nn/fused.py), but only for a module that asks
for it.  ``fuse`` returns a copy of the model in which each such run of a
Sequential is one :class:`~minicnn.nn.fused.ConvReLUMaxPool2d` (or
:class:`~minicnn.nn.fused.ConvReLU`) under the convolution's name::

    (conv1): Conv2d(1, 32, ...)
    (relu1): ReLU()               ->  (conv1): ConvReLUMaxPool2d(Conv2d(1, 32, ...) -> ReLU() -> MaxPool2d(...))
    (pool1): MaxPool2d(...)

The copy holds the model's own Parameter objects (an optimizer of either trains
both) and the same state-dict keys, so weights saved from one load into the
other.  ``print(fused)`` shows what runs.  The command line fuses where the
backend has fused kernels (:func:`fuse_for`), says so in one line, and runs
the layers one by one with ``--no-fuse``.

Docs: docs/backends.md#fusion
"""
from __future__ import annotations

import copy
from collections import OrderedDict

from minicnn.nn.activation import ReLU
from minicnn.nn.containers import Sequential
from minicnn.nn.conv import Conv2d
from minicnn.nn.fused import ConvReLU, ConvReLUMaxPool2d
from minicnn.nn.module import Module
from minicnn.nn.pooling import MaxPool2d

__all__ = ["FUSED_KERNELS", "describe", "fuse", "fuse_for", "fuses"]

#: The runs fused, longest first: the layer types, exactly (a subclass may compute something else).
RUNS = (((Conv2d, ReLU, MaxPool2d), ConvReLUMaxPool2d), ((Conv2d, ReLU), ConvReLU))
#: The kernels of the fused modules: a backend that overrides one of them gains by fusing.
FUSED_KERNELS = ("conv2d_relu", "conv2d_relu_backward", "conv2d_relu_maxpool2d", "conv2d_relu_maxpool2d_train",
                 "conv2d_relu_maxpool2d_backward")


def _fused_run(names, layers):
    """The fused module for the run at the start of ``layers``, and its length; (None, 1) if none."""
    for kinds, fused in RUNS:
        n = len(kinds)
        if len(layers) >= n and all(type(m) is kind for m, kind in zip(layers, kinds)):
            return fused(*layers[:n], names=names[:n]), n
    return None, 1


def fuse(model: Module) -> Module:
    """A copy of ``model`` with each Conv2d -> ReLU -> MaxPool2d run and each Conv2d -> ReLU pair of its
    Sequentials (nested ones too) replaced by one fused module under the convolution's name.

    The copy shares the model's parameters, buffers and every other layer; ``model`` is unchanged.
    A module that is not a Sequential runs its children in an order of its own, so it is returned as
    it is (nothing inside it is fused)."""
    if not isinstance(model, Sequential):
        return model
    fused = copy.copy(model)  # same class and attributes; its tables of children are built below
    for table in ("_parameters", "_buffers"):
        object.__setattr__(fused, table, OrderedDict(getattr(model, table)))
    object.__setattr__(fused, "_modules", OrderedDict())
    names, layers = list(model._modules), list(model._modules.values())
    for name in names:
        del fused.__dict__[name]
    i = 0
    while i < len(layers):
        module, length = _fused_run(names[i:], layers[i:])
        setattr(fused, names[i], module if module is not None else fuse(layers[i]))
        i += length
    return fused


def describe(model: Module) -> list[str]:
    """One entry per fused module of ``model``: the layers it stands for, by name, and its class."""
    return [f"{' -> '.join(m.names)} as {type(m).__name__}" for m in model.modules() if isinstance(m, ConvReLU)]


def fuses(backend) -> bool:
    """Whether ``backend`` has kernels of its own for the fused modules (fusing on the others would
    run the same references, the layers' functions one after the other, and hide the layers)."""
    return any(name in backend.overrides for name in FUSED_KERNELS)


def fuse_for(model: Module, backend, enabled: bool = True):
    """``(model to run, line)``: the model fused where ``backend`` has fused kernels and ``enabled``,
    else ``model`` itself; ``line`` says what was fused (None where nothing was)."""
    if not enabled or not fuses(backend):
        return model, None
    fused = fuse(model)
    runs = describe(fused)
    if not runs:
        return model, None
    return fused, (f"Fused for the {backend.name} backend: {', '.join(runs)}; --no-fuse runs the layers "
                   f"one by one")
