"""The array-backend switch that sits below every layer.

A *backend* is a name, an array module ``xp`` (NumPy or CuPy), a device (host
memory or a GPU) and a dict of *overrides*: faster versions of some of the
reference kernels, under the reference's name.  The kernels themselves are
written once, readably, with the array module of their arguments
(:mod:`minicnn.nn.functional`, and Adam's step in :mod:`minicnn.optim.adam`);
each is marked :func:`kernel`, and one rule picks what runs for an array ``x``::

    kernels_for(x).overrides[name]   if the backend has one and takes x's dtype
    the reference                    otherwise

Layers never import NumPy-or-CuPy themselves and never branch on the backend:
they call the functions of :mod:`minicnn.nn.functional`, which follow that rule,
and ask ``get_array_module(x)`` for the array module of the data they hold.

Backends
--------
``"numpy"``  plain NumPy; no overrides, every kernel is the reference.
``"numba"``  NumPy arrays with Numba-compiled overrides (fast CPU), for
             float32 and float64 (other dtypes take the reference).
``"cupy"``   CuPy arrays and CUDA overrides (NVIDIA GPU); the other kernels
             run as written, on CuPy arrays.

The active backend is chosen, in order, by :func:`set_backend`, by the
environment variable ``MINICNN_BACKEND``, or else the first CPU backend of
``_DEFAULT_ORDER`` that loads (a one-line warning names any that did not).
"""
from __future__ import annotations

import functools
import importlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from minicnn import tracing

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "device_backend",
    "get_array_module",
    "backend_names",
    "get_backend",
    "kernel",
    "kernels_for",
    "load_backend",
    "set_backend",
    "to_numpy",
]

#: Known backends and the module that builds each one (``make_backend()``).
_REGISTRY: dict[str, str] = {
    "numpy": "minicnn.backend.numpy_backend",
    "numba": "minicnn.backend.numba_backend",
    "cupy": "minicnn.backend.cupy_backend",
}
#: The CPU backends tried, in order, when nothing is asked for.
_DEFAULT_ORDER = ("numba", "numpy")


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here (its library or device is missing)."""


#: Every kernel's reference, by name (filled by :func:`kernel`).
_REFERENCES: dict[str, Callable] = {}


@dataclass(frozen=True)
class Backend:
    """One array backend: its array module, its device and its overrides.

    ``overrides`` maps a kernel's name (``"im2col"``, ``"maxpool2d_forward"``,
    ``"adam_update"``...) to a function with the reference's signature and
    results; ``dtypes``, when given, are the only dtypes the overrides take
    (the others go to the reference).  ``backend.im2col`` is the override, or
    else the reference.  ``array_type`` is the type of a device backend's
    arrays (``cupy.ndarray``), by which the switch recognises them; None for
    the host (NumPy arrays).
    """

    name: str
    xp: Any
    device: str  # "cpu" or "cuda"
    overrides: dict = field(default_factory=dict)
    dtypes: tuple | None = None
    array_type: type | None = None

    def kernel(self, name: str, x=None) -> Callable:
        """The function that computes kernel ``name`` for the array ``x``: the override if this
        backend has one (and takes ``x``'s dtype), else the reference."""
        fast = self.overrides.get(name)
        if fast is None or (self.dtypes is not None and x is not None and x.dtype not in self.dtypes):
            return _REFERENCES[name]
        return fast

    def __getattr__(self, name):
        # Only reached for names that are no field: a kernel, by the rule of ``kernel``.
        if name in _REFERENCES or name in self.__dict__.get("overrides", {}):
            return self.kernel(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def asarray(self, a, dtype=None):
        """``a`` as an array of this backend's device (no copy when already there).

        The one place where data crosses between devices on the way in: a host
        array is copied up, an array of another device comes down first.
        """
        if self.device == "cpu":
            return np.asarray(to_numpy(a), dtype=dtype)
        return self.xp.asarray(a if device_backend(a) is self else to_numpy(a), dtype=dtype)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device!r})"


def kernel(reference: Callable) -> Callable:
    """Mark ``reference`` as a kernel a backend may override.

    Returns a function of the same signature that runs, for its first argument
    ``x`` (or the first array of ``x`` when it is a list of arrays),
    ``kernels_for(x).kernel(name, x)``: the override of the backend whose
    kernels fit ``x``, or ``reference`` itself (recorded, inside
    ``with minicnn.trace():``, see :mod:`minicnn.tracing`).  The reference
    stays reachable as ``.reference``.
    """
    name = reference.__name__
    _REFERENCES[name] = reference

    @functools.wraps(reference)
    def dispatch(x, *args, **kwargs):
        first = x[0] if isinstance(x, (list, tuple)) and x else x
        backend = kernels_for(first)
        fn = backend.kernel(name, first)
        if tracing._active:  # inside ``with minicnn.trace():`` the call is recorded
            return tracing.run_kernel(name, fn, fn is not reference, backend, (x, *args), kwargs)
        return fn(x, *args, **kwargs)

    dispatch.reference = reference
    return dispatch


_loaded: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_current: Backend | None = None


def _is_cupy(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def device_backend(a) -> Backend | None:
    """The loaded device backend whose arrays ``a`` is one of; None for host arrays (and anything else)."""
    if isinstance(a, np.ndarray):
        return None
    for backend in _loaded.values():
        if backend.array_type is not None and isinstance(a, backend.array_type):
            return backend
    if _is_cupy(a):  # a CuPy array made before the backend was asked for
        return load_backend("cupy")
    return None


def backend_names() -> list[str]:
    """Names of every known backend, whether or not it loads here."""
    return list(_REGISTRY)


def available_backends() -> list[str]:
    """Names of the backends that load on this machine."""
    names = []
    for name in _REGISTRY:
        try:
            load_backend(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def load_backend(name: str) -> Backend:
    """The backend ``name``, loaded once, without making it the active one.

    Raises ``ValueError`` for an unknown name and :class:`BackendUnavailableError`
    when it cannot load here.
    """
    if name in _loaded:
        return _loaded[name]
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backend {name!r}; the known backends are "
            f"{', '.join(repr(n) for n in _REGISTRY)}"
        )
    if name in _failures:
        raise BackendUnavailableError(_failures[name])
    try:
        module = importlib.import_module(_REGISTRY[name])
        backend = module.make_backend()
    except BackendUnavailableError as exc:
        _failures[name] = str(exc)
        raise
    except ImportError as exc:
        _failures[name] = f"backend {name!r} cannot be loaded: {exc}"
        raise BackendUnavailableError(_failures[name]) from exc
    _loaded[name] = backend
    return backend



def set_backend(name: str) -> Backend:
    """Make ``name`` the active backend and return it.

    Raises ``ValueError`` for an unknown name and
    :class:`BackendUnavailableError` when the backend cannot load here; both
    messages list the backends that do.
    """
    global _current
    if not isinstance(name, str):
        raise TypeError(f"set_backend expects a backend name (str), got {type(name).__name__}")
    key = name.strip().lower()
    try:
        backend = load_backend(key)
    except (ValueError, BackendUnavailableError) as exc:
        usable = [n for n in available_backends()]
        raise type(exc)(f"{exc}. Available here: {', '.join(usable) or 'none'}") from None
    _current = backend
    return backend


def get_backend() -> Backend:
    """The active backend (chosen on first use; see the module docstring)."""
    global _current
    if _current is None:
        requested = os.environ.get("MINICNN_BACKEND", "").strip()
        if requested:
            return set_backend(requested)
        for name in _DEFAULT_ORDER:
            try:
                _current = load_backend(name)
            except BackendUnavailableError as exc:
                if name != _DEFAULT_ORDER[-1]:
                    warnings.warn(f"{exc}; using the NumPy backend instead", RuntimeWarning, stacklevel=2)
                    continue
                raise
            break
    return _current


def get_array_module(x):
    """``cupy`` for CuPy arrays (a device backend's array module for its arrays), ``numpy`` for everything else."""
    backend = device_backend(x)
    return np if backend is None else backend.xp


def kernels_for(x) -> Backend:
    """The backend whose kernels fit the array ``x``.

    CuPy arrays get the CuPy backend; host arrays get the active backend when
    it is a CPU backend (``numpy`` or ``numba``), else the NumPy backend.
    """
    backend = device_backend(x)
    if backend is not None:
        return backend
    current = get_backend()
    return current if current.device == "cpu" else load_backend("numpy")


def to_numpy(a) -> np.ndarray:
    """``a`` as a NumPy array on the host (CuPy arrays and tensors are copied down)."""
    if isinstance(a, np.ndarray):
        return a
    if device_backend(a) is not None:
        return a.get()
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a PyTorch tensor, duck-typed
        return a.detach().cpu().numpy()
    return np.asarray(a)
