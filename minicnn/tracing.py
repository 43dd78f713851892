"""What ran for ``model(x)``: every module call and every kernel call, in order, with the time each took.

    with minicnn.trace(model) as t:
        loss(model(x), y)
        model.backward(loss.backward())
    print(t.table())

Each record is one :class:`Call`: a module's ``forward``, ``backward`` or ``parameter_backward``
(the modules of ``model``, named as ``model.named_modules()`` names them), or a kernel (a function
of :mod:`minicnn.nn.functional`, :mod:`minicnn.nn.fused` or Adam's step, marked
:func:`minicnn.backend.kernel`), with what ran for it: the backend's override, or the reference.
An override that can take several paths names the one it took (``direct``, ``rows``,
``winograd``...), or says why it handed the call to the reference (``reference: pool 3x3, not
2x2``).  Calls made inside another call are indented under it.  The times are wall-clock seconds
of each call, its inner calls included; the records themselves cost a few microseconds each.

The module records come from wrappers put on the modules of ``model`` (instance attributes, as
:func:`minicnn.summary.summary` records shapes) for the ``with`` block only; the kernel records,
from one check in :func:`minicnn.backend.kernel`'s dispatch.  ``trace()`` without a model records
the kernels alone.

Docs: docs/backends.md#what-runs-when-i-call-modelx
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

__all__ = ["Call", "Trace", "note", "trace"]

#: The traces being recorded (innermost last); empty, as almost always, the dispatch costs one check.
_active: list["Trace"] = []


@dataclass
class Call:
    """One call: ``kind`` is "forward", "backward", "parameter_backward" or "kernel"; ``ran`` is the
    module's class, or for a kernel "<backend> override" or "reference"; ``path`` the override's path
    (or None); ``inputs`` the shapes of the array arguments, ``output`` of the array results."""

    kind: str
    name: str
    ran: str
    depth: int
    inputs: list = field(default_factory=list)
    output: list = field(default_factory=list)
    path: str | None = None
    seconds: float = 0.0


class Trace:
    """The calls recorded by one ``with minicnn.trace():`` block, in the order they started."""

    def __init__(self):
        self.calls: list[Call] = []
        self._open: list[Call] = []  # the calls running now, outermost first

    def _record(self, kind, name, ran, args, run):
        call = Call(kind, name, ran, len(self._open), _shapes(args))
        self.calls.append(call)
        self._open.append(call)
        start = time.perf_counter()
        try:
            out = run()
        finally:
            call.seconds = time.perf_counter() - start
            self._open.pop()
        call.output = _shapes(out if isinstance(out, tuple) else (out,))
        return out

    def table(self) -> str:
        """The calls as a table: one line each, inner calls indented, times in milliseconds."""
        rows = [("call", "ran", "path", "in", "out", "ms")]
        for c in self.calls:
            label = ("  " * c.depth + (c.name if c.kind == "kernel" else f"{c.name}.{c.kind}"))
            rows.append((label, c.ran, c.path or "", " ".join(map(_shape_text, c.inputs)),
                         " ".join(map(_shape_text, c.output)), f"{c.seconds * 1e3:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(v.rjust(w) if i == 5 else v.ljust(w) for i, (v, w) in
                                   enumerate(zip(r, widths))).rstrip() for r in rows)


def _shapes(values) -> list:
    """The shapes of the arrays among ``values`` (and inside lists of arrays, such as Adam's); scalars
    (Adam's learning rate and betas, 0-d) are left out."""
    shapes = []
    for v in values:
        if hasattr(v, "shape") and hasattr(v, "dtype") and v.shape != ():
            shapes.append(tuple(v.shape))
        elif isinstance(v, (list, tuple)) and v and all(hasattr(a, "shape") for a in v):
            shapes.append(f"{len(v)} arrays")
    return shapes


def _shape_text(shape) -> str:
    return shape if isinstance(shape, str) else "(" + ",".join(map(str, shape)) + ")"


def run_kernel(name, fn, is_override, backend, args, kwargs):
    """``fn(*args, **kwargs)`` recorded in the innermost trace (called by the kernels' dispatch)."""
    ran = f"{backend.name} override" if is_override else "reference"
    return _active[-1]._record("kernel", name, ran, args, lambda: fn(*args, **kwargs))


def note(path: str) -> None:
    """Name the path the running override took (or why it handed the call to the reference)."""
    if _active and _active[-1]._open:
        _active[-1]._open[-1].path = path


@contextlib.contextmanager
def trace(model=None):
    """Record every kernel call, and every forward and backward of ``model``'s modules, in the block."""
    t = Trace()
    wrapped = []  # (module, method name, the instance's own method before, if it had one)
    if model is not None:
        for name, module in model.named_modules():
            for kind in ("forward", "backward", "parameter_backward"):
                wrapped.append((module, kind, module.__dict__.get(kind)))
                object.__setattr__(module, kind, _recording(t, kind, name or type(module).__name__,
                                                            type(module).__name__, getattr(module, kind)))
    _active.append(t)
    try:
        yield t
    finally:
        _active.remove(t)
        for module, kind, own in reversed(wrapped):
            if own is None:
                module.__dict__.pop(kind, None)
            else:
                object.__setattr__(module, kind, own)


def _recording(t: Trace, kind, name, ran, method):
    def record(*args):
        return t._record(kind, name, ran, args, lambda: method(*args))
    return record
