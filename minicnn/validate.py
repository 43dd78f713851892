"""One vocabulary of argument checks, shared by the layers, the optimizers and the command line.

Predicates say what kind of value an argument is::

    is_real(v)            a real number (Python or NumPy), not a bool
    is_finite_real(v)     ... and finite
    is_int(v, minimum)    an int (Python or NumPy), not a bool, >= minimum
    is_positive_int(v)    is_int(v, 1): a size or a count

and a *rule* names the range a number must lie in, as the error messages
say it: ``">= 0"``, ``"> 0"``, ``"in [0, 1)"``, ``"in [0, 1]"``;
``satisfies(v, rule)`` tests it.  Each caller raises its own one-line error,
naming its owner, the argument, what was expected and what it got.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

RULES = {
    ">= 0": lambda v: v >= 0,
    "> 0": lambda v: v > 0,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
}


def is_real(value) -> bool:
    """A real number (Python or NumPy, not a bool): a rate, a probability, a tolerance."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_finite_real(value) -> bool:
    """A real number that is neither infinite nor NaN."""
    return is_real(value) and math.isfinite(value)


def is_int(value, minimum: int) -> bool:
    """An int (Python or NumPy, not a bool) of at least ``minimum``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= minimum


def is_positive_int(value) -> bool:
    """An int (Python or NumPy, not a bool) of at least 1: a size or a count."""
    return is_int(value, 1)


def satisfies(value, rule: str) -> bool:
    """Whether the number ``value`` lies in the range ``rule`` names (a key of :data:`RULES`)."""
    return RULES[rule](value)


def check_generator(generator, owner: str) -> None:
    """``generator`` must be a ``numpy.random.Generator`` or None (a fresh unseeded one)."""
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"{owner}: generator must be a numpy.random.Generator or None, got "
                        f"{type(generator).__name__} {generator!r}; for a seed, pass np.random.default_rng(seed)")
