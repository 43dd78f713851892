"""``Module``, ``Parameter`` and ``Sequential``: the containers every layer builds on.

A module computes ``y = f(x; theta)`` in :meth:`Module.forward` and, given
``dL/dy``, returns ``dL/dx`` from :meth:`Module.backward` while *adding*
``dL/dtheta`` into each parameter's ``.grad``.  ``forward`` caches exactly what
``backward`` needs, so a forward must precede each backward.  Inside
``with no_grad():`` nothing is kept (inference: less memory, and a
:class:`Sequential` may run a large batch a block at a time).

Names, signatures and state-dict layouts follow PyTorch, so a minicnn model
and the equivalent ``torch.nn`` model can exchange weights by name.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Iterator

import numpy as np

from minicnn.backend import _REGISTRY, _load, get_array_module, get_backend, to_numpy
from minicnn.nn._validate import is_positive_int


_grad_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside a :func:`no_grad` block of the calling thread, else True."""
    return getattr(_grad_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Forward passes for inference only: modules keep nothing for ``backward``.

    Inside ``with no_grad():`` (or in a function decorated ``@no_grad()``),
    every module drops what its forward cached for backward as soon as the
    forward returns, so memory holds only the arrays in flight, and a
    :class:`Sequential` whose layers treat samples independently runs a host
    batch of more than ``block_size`` samples ``block_size`` at a time (the
    same outputs up to rounding, since BLAS may sum a smaller matrix product
    in another order; faster: see :class:`Sequential`).  Max-pooling also skips
    recording its argmax.  A ``backward`` after such a forward raises, as if
    no forward had run.  Blocks nest; leaving one restores the previous
    state.  The state is per thread.
    """
    previous = is_grad_enabled()
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = previous


def backward_before_forward(name: str) -> RuntimeError:
    """The error every module raises when ``backward`` finds nothing cached by a forward."""
    return RuntimeError(f"{name}: backward called before forward (a forward inside no_grad() "
                        f"keeps nothing for backward)")


class StateDictError(ValueError):
    """A state dict does not fit the module it is loaded into."""


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


def _fits_dtype(incoming: np.ndarray, dtype) -> bool:
    """Whether ``incoming`` converts to ``dtype`` without losing what it means: integers or
    floats into a floating entry; integers, or floats with whole values, into an integer one."""
    if incoming.dtype.kind in "iu":
        return True
    if incoming.dtype.kind != "f":
        return False  # complex, bool, strings, objects
    return np.dtype(dtype).kind == "f" or bool((incoming == np.round(incoming)).all())


def _canonical_dtype(dtype):
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"a module's dtype must be floating point, got {dt}")
    return dt


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

    def _buffer(self, name):
        return self._buffers[name]

    # --- the computation ----------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *inputs):
        out = self.forward(*inputs)
        if not is_grad_enabled():
            self._forget()
        return out

    def per_sample(self) -> bool:
        """True if each output sample depends on the same input sample alone (in the current mode).

        Then a batch may be computed in parts along its first axis with the
        same result (up to rounding), which :class:`Sequential` does under :func:`no_grad`.
        False unless a subclass says otherwise (BatchNorm2d in training mode,
        for one, mixes the samples through the batch statistics).
        """
        return False

    def _forget(self) -> None:
        """Drop what forward cached for backward."""
        if "_cache" in self.__dict__:
            object.__setattr__(self, "_cache", None)

    # --- traversal ----------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

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
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for prefix, m in self.named_modules():
            for name in m._buffers:
                yield (f"{prefix}.{name}" if prefix else name), m._buffer(name)

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
        state = OrderedDict()
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                state[f"{prefix}.{name}" if prefix else name] = p.data
            for name in m._buffers:
                state[f"{prefix}.{name}" if prefix else name] = m._buffer(name)
        return state

    def _state_slots(self):
        """(dotted name, owner module, attribute, is_parameter) for every state entry."""
        for prefix, m in self.named_modules():
            for name in m._parameters:
                yield (f"{prefix}.{name}" if prefix else name), m, name, True
            for name in m._buffers:
                yield (f"{prefix}.{name}" if prefix else name), m, name, False

    def load_state_dict(self, state_dict, strict: bool = True) -> "Module":
        """Copy arrays from ``state_dict`` into this module.

        Each array is copied, cast to the dtype and device of the entry it replaces.
        Raises :class:`StateDictError` naming every missing or unexpected key
        (when ``strict``), every shape mismatch and every entry that would not
        convert faithfully (complex, bool or text arrays, a fractional counter,
        values beyond the dtype's range); nothing is changed then.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{type(self).__name__}.load_state_dict expects a mapping of names to arrays "
                            f"(such as model.state_dict()), got {type(state_dict).__name__}")
        slots = {name: (m, attr, is_param) for name, m, attr, is_param in self._state_slots()}
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        staged = []
        for key, (m, attr, is_param) in slots.items():
            if key not in state_dict:
                continue
            current = m._parameters[attr].data if is_param else m._buffer(attr)
            try:
                incoming = to_numpy(state_dict[key])
            except (ValueError, TypeError) as exc:
                problems.append(f"{key}: not an array ({exc})")
                continue
            if not _fits_dtype(incoming, current.dtype):
                wanted = "an integer" if current.dtype.kind in "iu" else "an integer or floating-point"
                problems.append(f"{key}: expected {wanted} array for a {current.dtype} entry, "
                                f"got dtype {incoming.dtype}")
                continue
            if tuple(incoming.shape) != tuple(current.shape):
                problems.append(
                    f"{key}: expected shape {tuple(current.shape)}, got {tuple(incoming.shape)}"
                )
                continue
            xp = get_array_module(current)
            # A copy: the module must not share memory with the caller's arrays (or tensors).
            with np.errstate(over="ignore"):  # an overflow is reported just below, with the key
                value = xp.array(incoming, dtype=current.dtype)
            if current.dtype.kind == "f" and bool(np.isfinite(incoming).all()) and not bool(xp.isfinite(value).all()):
                problems.append(f"{key}: holds values beyond the range of {current.dtype}")
                continue
            staged.append((m, attr, is_param, value))
        if problems:
            raise StateDictError(
                f"state dict does not fit {type(self).__name__}: " + "; ".join(problems)
                + f". Expected keys: {', '.join(slots)}"
            )
        for m, attr, is_param, value in staged:
            if is_param:
                m._parameters[attr].data = value
                m._parameters[attr].grad = None
            else:
                setattr(m, attr, value)
        return self

    # --- dtype and device ---------------------------------------------
    def to(self, target) -> "Module":
        """Convert parameters and floating buffers in place; returns ``self``.

        ``target`` is a floating dtype (``np.float64``, ``"float32"``) or a
        backend name (``"numpy"``, ``"numba"``, ``"cupy"``) whose device the
        arrays move to.  Gradients are dropped.
        """
        if isinstance(target, str) and target.lower() in _REGISTRY:
            backend = _load(target.lower())
            convert = backend.asarray
        else:
            understood = target is not None  # np.dtype(None) would be float64
            try:
                np.dtype(target)
            except TypeError:
                understood = False
            if not understood:
                raise TypeError(f"Module.to: expected a floating dtype (np.float32, 'float64') or a backend name "
                                f"({', '.join(repr(n) for n in _REGISTRY)}), got {target!r}")
            dtype = _canonical_dtype(target)

            def convert(a):
                if not np.issubdtype(a.dtype, np.floating):
                    return a  # counters such as num_batches_tracked stay integers
                return a.astype(dtype, copy=False)

        for _, m, attr, is_param in list(self._state_slots()):
            if is_param:
                p = m._parameters[attr]
                p.data = convert(p.data)
                p.grad = None
            else:
                setattr(m, attr, convert(m._buffer(attr)))
        for m in self.modules():
            m._after_to()
        return self

    def _after_to(self) -> None:
        """Hook for modules that keep derived state (drop caches)."""
        self._forget()

    # --- printing -----------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


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


def default_float():
    """The dtype layers use when none is given."""
    return np.float32


def new_parameter(array, dtype) -> Parameter:
    """A Parameter of ``array`` cast to ``dtype`` on the active backend's device."""
    return Parameter(get_backend().asarray(array, dtype=_canonical_dtype(dtype)))
