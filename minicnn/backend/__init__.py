"""The array-backend switch that sits below every layer.

A *backend* is three things: an array module ``xp`` (NumPy or CuPy), a device
(host memory or a GPU) and a set of hot kernels (im2col, col2im, max-pooling,
and the axis swap around Conv2d's matrix products).
Layers never import NumPy-or-CuPy themselves and never branch on the backend:
they ask ``get_array_module(x)`` for the array module of the data they hold and
``kernels_for(x)`` for the kernels that fit it.

Backends
--------
``"numpy"``  plain NumPy; the kernels are the readable reference
             (:mod:`minicnn.backend.numpy_kernels`).
``"numba"``  NumPy arrays with Numba-compiled kernels (fast CPU).
``"cupy"``   CuPy arrays and CUDA kernels (NVIDIA GPU).

The active backend is chosen, in order, by :func:`set_backend`, by the
environment variable ``MINICNN_BACKEND``, or else the first CPU backend of
``_DEFAULT_ORDER`` that loads (a one-line warning names any that did not).
"""
from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "device_backend",
    "get_array_module",
    "get_backend",
    "kernels_for",
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


@dataclass(frozen=True)
class Backend:
    """One array backend: its array module, its device and its kernels.

    Kernels (all take and return arrays of ``xp``; see
    :mod:`minicnn.backend.numpy_kernels` for their exact contracts):

    ``im2col(x, kernel_size, stride, padding, pad_value=0)``
    ``col2im(col, x_shape, kernel_size, stride, padding)``
    ``maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True)``
    ``maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding)``
    ``transpose01(a, bias=None)``  (A, B, P) -> (B, A, P), plus ``bias`` over A
    ``relu_forward(x)``, ``relu_backward(grad_output, y)``  max(x, 0) and its gradient
    ``adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, 1 - beta1, beta2, 1 - beta2, eps,
    correction1, correction2)``  one Adam step, in place
    ``adam_update_many(params, grads, exp_avgs, exp_avg_sqs, lr, ..., correction2, weight_decay)``
    the same for lists of same-dtype arrays at once (None where a backend has no fused kernel)
    """

    name: str
    xp: Any
    device: str  # "cpu" or "cuda"
    im2col: Callable
    col2im: Callable
    maxpool2d_forward: Callable
    maxpool2d_backward: Callable
    transpose01: Callable
    relu_forward: Callable
    relu_backward: Callable
    adam_update: Callable
    extras: dict = field(default_factory=dict)
    adam_update_many: Callable | None = None
    #: The array type of a device backend (``cupy.ndarray``); None for the host (NumPy arrays).
    array_type: type | None = None

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
        return _load("cupy")
    return None


def available_backends() -> list[str]:
    """Names of the backends that load on this machine."""
    names = []
    for name in _REGISTRY:
        try:
            _load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def _load(name: str) -> Backend:
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
        backend = _load(key)
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
                _current = _load(name)
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

    CuPy arrays get the CuPy kernels; host arrays get the active backend's
    kernels when it is a CPU backend (``numpy`` or ``numba``), else NumPy's.
    """
    backend = device_backend(x)
    if backend is not None:
        return backend
    current = get_backend()
    return current if current.device == "cpu" else _load("numpy")


def to_numpy(a) -> np.ndarray:
    """``a`` as a NumPy array on the host (CuPy arrays and tensors are copied down)."""
    if isinstance(a, np.ndarray):
        return a
    if device_backend(a) is not None:
        return a.get()
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a PyTorch tensor, duck-typed
        return a.detach().cpu().numpy()
    return np.asarray(a)
