"""A test backend that behaves like CuPy where host/device mixing breaks code, and runs on the CPU.

Its arrays, :class:`DeviceArray`, hold a NumPy array out of reach: like a
``cupy.ndarray`` they refuse to become a NumPy array implicitly
(``np.asarray(a)`` raises, as ``__array__`` does in CuPy), refuse NumPy
arrays as operands (``a + np.ones(3)`` raises, as in CuPy), and work with
NumPy's functions and operators through ``__array_ufunc__`` and
``__array_function__``, returning device arrays again.  Crossing to the host
must be said out loud: ``a.get()``, ``fakecupy.asnumpy(a)`` or
``minicnn.backend.to_numpy(a)``; crossing to the device with
``fakecupy.asarray(host_array)``.  Reading a scalar (``float(a)``,
``int(a)``, ``bool(a)``, ``a.item()``, formatting) is allowed, as in CuPy,
but each one would wait for the GPU there, so every crossing is counted in
:data:`transfers` and a test can bound how often a training loop crosses.

``xp`` (this module's :data:`xp`) is the array module: ``xp.zeros``,
``xp.exp``, ... are NumPy's, taking and returning device arrays.  The backend
overrides no kernel, so every kernel is the reference, written with the array
module of its arguments and run on device arrays through ``xp``.
"""
from __future__ import annotations

import collections
import functools

import numpy as np

from minicnn.backend import Backend

#: Crossings counted since the last reset: "to_host" (.get(), asnumpy), "to_device"
#: (asarray of a host array), "scalar" (float(a), int(a), bool(a), item(), formatting).
transfers = collections.Counter()

_NOT_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
                 "Please use `.get()` to construct a NumPy array explicitly.")


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}: a host NumPy array cannot be mixed with device "
                     f"arrays; move it first with asarray()")


def _unwrap(value):
    """DeviceArray -> its data (recursively in lists, tuples and dicts); a host array is an error."""
    if isinstance(value, DeviceArray):
        return value._data
    if isinstance(value, np.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    """NumPy arrays and scalars -> DeviceArray (recursively in tuples and lists).

    A reduction gives a 0-d device array, as in CuPy, not a host scalar.
    """
    if isinstance(value, np.ndarray):
        return DeviceArray(value)
    if isinstance(value, np.generic):
        return DeviceArray(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array on the pretend device (see the module docstring)."""

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray):
        object.__setattr__(self, "_data", data)

    # --- crossings ---------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_NOT_IMPLICIT)

    def get(self) -> np.ndarray:
        transfers["to_host"] += 1
        return self._data.copy()

    def _scalar(self):
        transfers["scalar"] += 1
        return self._data

    def __float__(self):
        return float(self._scalar())

    def __int__(self):
        return int(self._scalar())

    def __bool__(self):
        return bool(self._scalar())

    def __format__(self, spec):
        return format(self._scalar(), spec)

    def item(self):
        return self._scalar().item()

    def tolist(self):
        transfers["to_host"] += 1
        return self._data.tolist()

    # --- NumPy's protocols -------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:  # in place (a += b): the very arrays that were written
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # --- the ndarray interface, on the data ---------------------------------
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    itemsize = property(lambda self: self._data.itemsize)
    flags = property(lambda self: self._data.flags)
    T = property(lambda self: DeviceArray(self._data.T))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self._data, name)
        if not callable(attribute):
            return _wrap(attribute)

        @functools.wraps(attribute)
        def method(*args, **kwargs):
            return _wrap(attribute(*_unwrap(args), **_unwrap(kwargs)))

        return method

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot set {name!r} of a DeviceArray")

    @staticmethod
    def _index(key):
        if isinstance(key, np.ndarray):  # CuPy copies a host index array to the device
            transfers["to_device"] += 1
            return key
        if isinstance(key, tuple):
            return tuple(DeviceArray._index(k) for k in key)
        return _unwrap(key)

    def __getitem__(self, key):
        return _wrap(self._data[self._index(key)])

    def __setitem__(self, key, value):
        self._data[self._index(key)] = _unwrap(value)

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (_wrap(row) for row in self._data)

    def __copy__(self):
        return DeviceArray(self._data.copy())

    def __deepcopy__(self, memo):
        return DeviceArray(self._data.copy())

    def __reduce__(self):
        raise TypeError("a DeviceArray cannot be pickled; .get() it to the host first")

    def __repr__(self):
        return f"DeviceArray({self._data!r})"


class _ArrayModule:
    """``xp`` for DeviceArrays: NumPy's functions, unwrapping their arguments and wrapping results."""

    __name__ = "fakecupy"
    ndarray = DeviceArray

    def asarray(self, a, dtype=None, order=None):
        if isinstance(a, DeviceArray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        if isinstance(a, np.ndarray):
            transfers["to_device"] += 1
        return DeviceArray(np.array(a, dtype=dtype, order=order or "K"))

    def array(self, a, dtype=None, copy=True, order="K"):
        if isinstance(a, DeviceArray):
            return DeviceArray(np.array(a._data, dtype=dtype, copy=True, order=order))
        return self.asarray(np.array(a, dtype=dtype, copy=True, order=order))

    def ascontiguousarray(self, a, dtype=None):
        return DeviceArray(np.ascontiguousarray(_unwrap(a), dtype=dtype))

    def asnumpy(self, a):
        return a.get() if isinstance(a, DeviceArray) else np.asarray(a)

    def get_array_module(self, *args):
        return self

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if isinstance(attribute, np.ufunc) or not callable(attribute) or isinstance(attribute, type):
            return attribute  # ufuncs dispatch through __array_ufunc__; dtypes and constants are NumPy's

        @functools.wraps(attribute)
        def function(*args, **kwargs):
            return _wrap(attribute(*_unwrap(args), **_unwrap(kwargs)))

        return function

    def __repr__(self):
        return "<module 'fakecupy' (NumPy behind device arrays, for tests)>"


xp = _ArrayModule()


def make_backend() -> Backend:
    # No overrides: every kernel is the reference, run on DeviceArrays through ``xp``, as the kernels
    # the CuPy backend does not override run on CuPy arrays.
    return Backend(name="fakecupy", xp=xp, device="fake", array_type=DeviceArray)
