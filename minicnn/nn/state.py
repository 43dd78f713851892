"""A module's state: its entries by dotted name, loading a state dict into it, converting its arrays.

``Module.state_dict`` and ``Module.named_buffers`` walk :func:`entries`;
``Module.load_state_dict`` and ``Module.to`` are :func:`load_state_dict` and
:func:`convert`: both check everything first and change nothing when
something does not fit.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from minicnn.backend import backend_names, get_array_module, load_backend, to_numpy
from minicnn.nn.parameter import float_dtype


class StateDictError(ValueError):
    """A state dict does not fit the module it is loaded into."""


def dotted(prefix: str, name: str) -> str:
    """``"0.weight"`` from ``("0", "weight")``; the name alone at the top."""
    return f"{prefix}.{name}" if prefix else name


def entries(module):
    """``(dotted name, owner module, attribute, is_parameter)`` for every state entry of ``module``:
    module by module (:meth:`Module.named_modules`), each one's parameters, then its buffers."""
    for prefix, m in module.named_modules():
        for name in m._parameters:
            yield dotted(prefix, name), m, name, True
        for name in m._buffers:
            yield dotted(prefix, name), m, name, False


def _fits_dtype(incoming: np.ndarray, dtype) -> bool:
    """Whether ``incoming`` converts to ``dtype`` without losing what it means: integers or
    floats into a floating entry; integers, or floats with whole values, into an integer one."""
    if incoming.dtype.kind in "iu":
        return True
    if incoming.dtype.kind != "f":
        return False  # complex, bool, strings, objects
    return np.dtype(dtype).kind == "f" or bool((incoming == np.round(incoming)).all())


def load_state_dict(module, state_dict, strict: bool = True):
    """Copy arrays from ``state_dict`` into ``module`` (:meth:`Module.load_state_dict`); returns ``module``.

    Each array is copied, cast to the dtype and device of the entry it replaces.
    Raises :class:`StateDictError` naming every missing or unexpected key
    (when ``strict``), every shape mismatch and every entry that would not
    convert faithfully (complex, bool or text arrays, a fractional counter,
    values beyond the dtype's range); nothing is changed then.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{type(module).__name__}.load_state_dict expects a mapping of names to arrays "
                        f"(such as model.state_dict()), got {type(state_dict).__name__}")
    slots = {name: (m, attr, is_param) for name, m, attr, is_param in entries(module)}
    missing = [k for k in slots if k not in state_dict]
    unexpected = [k for k in state_dict if k not in slots]
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if strict and unexpected:
        # A key of another type (an int) is named as Python writes it: 0, not "0".
        problems.append(f"unexpected keys: {', '.join(k if isinstance(k, str) else repr(k) for k in unexpected)}")
    staged = []
    for key, (m, attr, is_param) in slots.items():
        if key not in state_dict:
            continue
        current = m._parameters[attr].data if is_param else m._buffers[attr]
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
        # A copy: the module must not share memory with the caller's arrays (or tensors); in C order,
        # as the module's own arrays are (the fast kernels take C-contiguous arrays).
        with np.errstate(over="ignore"):  # an overflow is reported just below, with the key
            value = xp.array(incoming, dtype=current.dtype, order="C")
        if current.dtype.kind == "f" and bool(np.isfinite(incoming).all()) and not bool(xp.isfinite(value).all()):
            problems.append(f"{key}: holds values beyond the range of {current.dtype}")
            continue
        staged.append((m, attr, is_param, value))
    if problems:
        raise StateDictError(
            f"state dict does not fit {type(module).__name__}: " + "; ".join(problems)
            + f". Expected keys: {', '.join(slots)}"
        )
    for m, attr, is_param, value in staged:
        if is_param:
            m._parameters[attr].data = value
            m._parameters[attr].grad = None
        else:
            setattr(m, attr, value)
    return module


def convert(module, target):
    """Convert ``module``'s parameters and floating buffers in place (:meth:`Module.to`); returns ``module``.

    ``target`` is a floating dtype (``np.float64``, ``"float32"``) or a
    backend name (``"numpy"``, ``"numba"``, ``"cupy"``) whose device the
    arrays move to.  Gradients are dropped.
    """
    if isinstance(target, str) and target.lower() in backend_names():
        convert = load_backend(target.lower()).asarray
    else:
        understood = target is not None  # np.dtype(None) would be float64
        try:
            np.dtype(target)
        except TypeError:
            understood = False
        if not understood:
            raise TypeError(f"Module.to: expected a floating dtype (np.float32, 'float64') or a backend name "
                            f"({', '.join(repr(n) for n in backend_names())}), got {target!r}")
        dtype = float_dtype(target)

        def convert(a):
            if not np.issubdtype(a.dtype, np.floating):
                return a  # counters such as num_batches_tracked stay integers
            return a.astype(dtype, copy=False)

    for _, m, attr, is_param in list(entries(module)):
        if is_param:
            p = m._parameters[attr]
            p.data = convert(p.data)
            p.grad = None
        else:
            setattr(m, attr, convert(m._buffers[attr]))
    for m in module.modules():
        m._forget()  # what a forward saved has the old dtype or device
    return module
