"""Drawn cases: shapes, strides, paddings and ties chosen at random, and the smallest one that fails.

An exercise draws a case from a :class:`Draw`: integers (shapes, strides, paddings, a dim) and
arrays of a kind.  The integers come from hypothesis when it is installed, which then shrinks a
failing case to the smallest it can find before the check reports it (minitorch's property tests
do the same); otherwise from a seeded NumPy generator.  The array values come from a generator
seeded by one more drawn integer, so that a case is a handful of numbers to shrink.

Kinds of array
    normal       standard normal
    ties         small integers (as floats): windows with several equal maxima
    distinct     no two entries closer than 0.1 (max-pooling's gradient check: no ties, no near-ties)
    nonzero      |x| >= 0.1 (ReLU's gradient check: away from its kink at 0)

Docs: docs/exercises.md
"""
from __future__ import annotations

import importlib.util

import numpy as np


class Draw:
    """Integers from ``integer(low, high)`` (both ends included), arrays from a seed drawn among them."""

    def __init__(self, integer):
        self.integer = integer

    def pick(self, options):
        return options[self.integer(0, len(options) - 1)]

    def array(self, shape, kind="normal", dtype=np.float64) -> np.ndarray:
        return array(np.random.default_rng(self.integer(0, 2**16)), shape, kind, dtype)


def array(rng: np.random.Generator, shape, kind="normal", dtype=np.float64) -> np.ndarray:
    """An array of ``kind`` (see the module docstring) from ``rng``."""
    shape = tuple(shape)
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "ties":
        a = rng.integers(-2, 3, size=shape).astype(np.float64)
    elif kind == "distinct":
        a = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2).reshape(shape) * 0.1 \
            + rng.uniform(-0.02, 0.02, size=shape)
    elif kind == "nonzero":
        a = rng.uniform(0.1, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    else:
        raise ValueError(f"unknown kind of array {kind!r}")
    return a.astype(dtype)


def hypothesis_available() -> bool:
    return importlib.util.find_spec("hypothesis") is not None


def first_failure(draw_case, test, examples: int):
    """Run ``test(case)`` on ``examples`` drawn cases; the exception of the smallest failing case, or None.

    ``test`` raises to fail; the exception carries its case as ``exc.case``.
    """
    if hypothesis_available():
        return _with_hypothesis(draw_case, test, examples)
    rng = np.random.default_rng(0)
    for _ in range(examples):
        case = draw_case(Draw(lambda low, high: int(rng.integers(low, high + 1))))
        try:
            test(case)
        except Exception as exc:
            exc.case = case
            return exc
    return None


def _with_hypothesis(draw_case, test, examples: int):
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, verbosity=Verbosity.quiet,
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(st.data())
    def run(data):
        case = draw_case(Draw(lambda low, high: data.draw(st.integers(low, high))))
        try:
            test(case)
        except Exception as exc:
            exc.case = case
            raise

    try:
        run()
    except Exception as exc:
        return _unwrap(exc)
    return None


def _unwrap(exc):
    """The learner's failure inside whatever hypothesis wrapped it in (a group, a flaky report)."""
    while not hasattr(exc, "case"):
        inner = getattr(exc, "exceptions", None)
        if not inner:
            return exc
        exc = inner[0]
    return exc
