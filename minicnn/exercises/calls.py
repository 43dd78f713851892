"""Calling a learner's functions: what they raise and what they return, said in one line.

Every function of a learner goes through :func:`wrap` before a check calls it:

    raises NotImplementedError    NotImplementedYet  "relu_backward is not implemented yet (...)"
    raises anything else          LearnerError       "relu_backward raised IndexError: ... (relu.py, line 12: ...)"
    returns the wrong kind        LearnerError       "conv2d_backward returned None; expected (dx, dweight, dbias)"

The line quoted is the innermost one of the learner's own code, never one of minicnn's or NumPy's.
What a function returns is named by its exercise: an array for most names, a number for ``loss``,
anything at all for what a forward pass keeps for its backward (``cache``, ``mask``), and nothing
for a function that works in place (``adam_step``; what it returns is ignored).

Docs: docs/exercises.md
"""
from __future__ import annotations

import linecache
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: Returned values a check does not look at by themselves: the learner's own record for the backward pass.
ANYTHING = {"cache", "mask"}
#: Returned values that are one number.
NUMBERS = {"loss"}

_MINICNN = Path(__file__).resolve().parents[1]
_STDLIB = Path(os.__file__).resolve().parent


class LearnerError(ValueError):
    """A learner's function raised, or returned something other than what its exercise asks for."""


class NotImplementedYet(LearnerError):
    """A learner's function (or one it builds on) still raises NotImplementedError."""


def _is_learners(filename: str) -> bool:
    """Whether code from ``filename`` is the learner's: not minicnn's, Python's or an installed package's.

    Folders are compared by their parts, not as text: in a clone, ./minicnn-exercises lies beside the package
    folder minicnn/, and its name begins with the package's.
    """
    if filename.startswith("<"):  # <frozen ...>, <string>, <stdin>: a file of the learner's has a path
        return not filename.startswith("<frozen")
    path = Path(filename).resolve()
    return not (path.is_relative_to(_MINICNN) or path.is_relative_to(_STDLIB)
                or {"site-packages", "dist-packages"} & set(path.parts))


def _learner_frame(exc: BaseException):
    """(file, line) of the innermost frame of ``exc`` in the learner's code, or None."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_learners(filename):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _name(filename: str) -> str:
    return filename if filename.startswith("<") else Path(filename).name


def learner_line(exc: BaseException) -> str:
    """`` (relu.py, line 12: `return dy[y > 0]`)``: where in the learner's code ``exc`` was raised ('' if not there)."""
    found = _learner_frame(exc)
    if found is None:
        return ""
    filename, line = found
    source = re.sub(r"\s+#.*$", "", linecache.getline(filename, line).strip())  # the code, not its comment
    return f" ({_name(filename)}, line {line}" + (f": `{source}`)" if source else ")")


def _advice(exc: BaseException) -> str:
    text = str(exc)
    if "read-only" in text:
        return ": it wrote into one of its inputs, which it must only read (build a new array, or work on a copy)"
    if "matmul" in text and "mismatch" in text:
        return (" (a product (a, b) @ (b, c) needs its inner sizes equal: check each operand's shape, and whether "
                "one of them needs .T)")
    if "could not be broadcast" in text:
        return " (keepdims=True keeps a summed axis, so that the result broadcasts against the array it came from)"
    return ""


def _what(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _checked(function: str, name: str, value, expected: str):
    """``value`` as the check compares it, or LearnerError saying what it is and what was expected."""
    if name in ANYTHING:
        return value
    if name in NUMBERS:
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
                or isinstance(value, np.ndarray) and value.ndim == 0:
            return np.asarray(float(value))  # as the reference's losses: a Python float
        raise LearnerError(f"{function} returned {_what(value)} for {name}; expected a number{expected}")
    if not isinstance(value, np.ndarray):
        hint = " (a missing return?)" if value is None else ""
        raise LearnerError(f"{function} returned {_what(value)} for {name}; expected a NumPy array{expected}{hint}")
    return value


def wrap(function: str, fn, returns: tuple):
    """``fn`` as the checks call it: its errors and returned values turned into one-line LearnerErrors."""
    if not callable(fn):
        raise LearnerError(f"{function} is {_what(fn)}, not a function")

    def call(*args, **kwargs):
        try:
            with np.errstate(all="ignore"):
                out = fn(*args, **kwargs)
        except LearnerError:
            raise
        except NotImplementedError as exc:
            found, own = _learner_frame(exc), getattr(getattr(fn, "__code__", None), "co_filename", None)
            if found is None:
                raise NotImplementedYet(f"{function} is not implemented yet (it raises NotImplementedError)") from None
            where = f"{_name(found[0])}, line {found[1]}"
            if own and found[0] != own:  # raised in a file this one builds on
                raise NotImplementedYet(f"{function} calls {_name(found[0])}, which is not implemented yet "
                                        f"({where} raises NotImplementedError)") from None
            raise NotImplementedYet(f"{function} is not implemented yet: {where} raises NotImplementedError") \
                from None
        except Exception as exc:  # the learner's code can raise anything: each is one line
            raise LearnerError(f"{function} raised {type(exc).__name__}: {exc}{_advice(exc)}"
                               f"{learner_line(exc)}") from None
        if not returns:
            return None
        if len(returns) == 1:
            return _checked(function, returns[0], out, "")
        listed = f" ({', '.join(returns)})"
        if not isinstance(out, (tuple, list)) or len(out) != len(returns):
            got = f"{len(out)} values" if isinstance(out, (tuple, list)) else _what(out)
            raise LearnerError(f"{function} returned {got}; expected {len(returns)} values{listed}"
                               + (" (a missing return?)" if out is None else ""))
        return tuple(_checked(function, name, value, listed) for name, value in zip(returns, out))

    call.__name__ = function
    return call


def wrap_all(exercise, functions) -> SimpleNamespace:
    """The exercise's functions, taken from ``functions`` (a module or namespace) by name, each wrapped."""
    missing = [name for name in exercise.functions if not hasattr(functions, name)]
    if missing:
        raise LearnerError(f"no function named {', '.join(missing)} (exercise {exercise.name} needs "
                           f"{', '.join(exercise.functions)})")
    return SimpleNamespace(**{name: wrap(name, getattr(functions, name), returns)
                              for name, returns in exercise.functions.items()})


def error_in(exc: BaseException) -> str:
    """One line for an exception raised outside a wrapped call (while a file is imported, say)."""
    return f"{type(exc).__name__}: {exc}{learner_line(exc)}"

