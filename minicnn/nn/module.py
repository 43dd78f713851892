"""``Module``: the base class every layer and model builds on.

A module computes ``y = f(x; theta)`` in :meth:`Module.forward` and, given
``dL/dy``, returns ``dL/dx`` from :meth:`Module.backward` while *adding*
``dL/dtheta`` into each parameter's ``.grad``.  ``forward`` saves exactly what
``backward`` needs (:meth:`Module.save_for_backward`), so a forward must
precede each backward; :meth:`Module.saved_tensors` gives it back after the
checks every backward needs.  Inside ``with no_grad():`` nothing is kept.

Names, signatures and state-dict layouts follow PyTorch, so a minicnn model
and the equivalent ``torch.nn`` model can exchange weights by name.

Docs: docs/overview.md
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from minicnn.nn import state
from minicnn.nn._validate import check_grad
from minicnn.nn.grad_mode import is_grad_enabled, no_grad  # noqa: F401  (also importable from here)
from minicnn.nn.parameter import Parameter
from minicnn.nn.state import StateDictError, dotted  # noqa: F401  (StateDictError: also importable from here)

class Module:
    """Base class of all layers and models.

    Subclasses assign :class:`Parameter` and :class:`Module` attributes in
    ``__init__`` (they are registered automatically, in order), register
    non-learnable state with :meth:`register_buffer`, and implement
    ``forward`` and ``backward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)  # what forward saved for backward

    # --- registration -------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value
            return
        own = None  # the table that will hold ``value``
        if isinstance(value, Parameter):
            own = self._parameters
        elif isinstance(value, Module):
            own = self._modules
        for table in (self._parameters, self._buffers, self._modules):
            if table is not own:
                table.pop(name, None)
        if own is not None:
            own[name] = value  # a replaced entry keeps its place (a Sequential keeps its order)
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: buffers live in _buffers alone.
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """State saved in ``state_dict`` but not trained (BatchNorm's running statistics)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    # --- the computation ----------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def parameter_backward(self, grad_output) -> None:
        """The parameters' part of :meth:`backward` alone, for a module whose input needs no gradient
        (the first layer of a network: nothing is upstream of the images).  By default the whole
        backward, its ``dL/dx`` dropped; a layer where ``dL/dx`` costs work (Conv2d) skips it."""
        self.backward(grad_output)

    def __call__(self, *inputs):
        out = self.forward(*inputs)
        if not is_grad_enabled():
            self._forget()
        return out

    def save_for_backward(self, *tensors, output=None) -> None:
        """Keep ``tensors`` for :meth:`backward`, and the shape of ``output`` (the forward's result)
        as the shape its ``grad_output`` must have.  Under :func:`no_grad` nothing is kept."""
        shape = None if output is None else tuple(output.shape)
        object.__setattr__(self, "_cache", (shape, tensors) if is_grad_enabled() else None)

    def saved_tensors(self, grad_output=None) -> tuple:
        """What forward saved, after the checks every backward needs: that a forward ran (and kept
        something), and that ``grad_output`` is a floating array of the forward output's shape."""
        if self._cache is None:
            raise RuntimeError(f"{self._label()}: backward called before forward (a forward inside no_grad() "
                               f"keeps nothing for backward)")
        shape, tensors = self._cache
        if shape is not None:
            check_grad(grad_output, shape, self._label())
        return tensors

    def _label(self) -> str:
        """How errors name this module: its repr when that says more than the class name."""
        return repr(self) if self.extra_repr() else type(self).__name__

    def _forget(self) -> None:
        """Drop what forward saved for backward."""
        object.__setattr__(self, "_cache", None)

    # --- traversal ----------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(dotted(prefix, name))

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                yield dotted(prefix, name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for key, m, name, is_param in state.entries(self):
            if not is_param:
                yield key, m._buffers[name]

    # --- modes and gradients ------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget accumulated gradients (``grad = None``, as PyTorch's default)."""
        for p in self.parameters():
            p.grad = None

    # --- state --------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters then buffers of every module, by dotted name, in registration order.

        The arrays are the module's own (not copies), on the module's device.
        """
        return OrderedDict((key, m._parameters[name].data if is_param else m._buffers[name])
                           for key, m, name, is_param in state.entries(self))

    def load_state_dict(self, state_dict, strict: bool = True) -> "Module":
        """Copy arrays from ``state_dict`` into this module; see :func:`minicnn.nn.state.load_state_dict`."""
        return state.load_state_dict(self, state_dict, strict)

    def to(self, target) -> "Module":
        """Convert parameters and floating buffers in place to a floating dtype or a backend's
        device; returns ``self``.  See :func:`minicnn.nn.state.convert`."""
        return state.convert(self, target)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
