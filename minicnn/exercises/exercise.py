"""What an exercise is made of: the functions a learner writes, and the data its checks run on.

An :class:`Exercise` is a record; every module of :mod:`minicnn.exercises.catalog` fills one:

    functions    what the learner writes: name -> the names of what it returns,
                 {"conv2d_backward": ("dx", "dweight", "dbias")}
    reference    the package's own functions under those names and signatures
    run(f, c)    the tensors compared: calls the functions of ``f`` (the learner's or the
                 reference's) on the inputs of case ``c`` -> {tensor name: array}
    cases()      fixed small cases, picked by hand: a tie, overlapping windows, a stride, a padding
    draw(d)      one drawn case: shapes, strides, paddings and ties from ``d`` (drawing.py)
    gradients    for a backward pass: gradients(f, c) -> (the learner's gradients, central differences),
                 on the cases of gradient_cases() (small; no ties, away from kinks)
    mistakes     common wrong versions, each the tensors it would produce, computed from the reference
    hints        three tiers: a question, the key formula, the shapes of every intermediate array
    starter      the text of the workspace file: signatures, shapes, formulas, NotImplementedError

A :class:`Case` holds one set of inputs by name.  Its arrays are read-only, unless named in
``writable`` (what a function updates in place: an optimizer's parameter, BatchNorm's running
statistics), so a function that writes into an input it should only read fails at that line.

Docs: docs/exercises.md
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class Case:
    """One set of inputs: arrays and settings by name (``case.x``, ``case.stride``)."""

    def __init__(self, writable=(), **values):
        self._writable = tuple(writable)
        self._values = values
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                value = value.copy()
                value.setflags(write=name in self._writable)
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            raise AttributeError("a Case is fixed once made")
        object.__setattr__(self, name, value)

    def copy(self) -> "Case":
        """Fresh arrays, so that one run's in-place updates never reach the next."""
        return Case(self._writable, **self._values)

    def astype(self, dtype) -> "Case":
        """The case with its floating-point arrays in ``dtype`` (integer arrays, such as targets, stay)."""
        cast = {k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
                for k, v in self._values.items()}
        return Case(self._writable, **cast)

    def describe(self) -> str:
        """``x (2, 3, 5, 5), weight (4, 3, 3, 3), stride (2, 1), padding (1, 0)``."""
        return ", ".join(f"{name} {tuple(value.shape)}" if isinstance(value, np.ndarray) else f"{name} {value!r}"
                         for name, value in self._values.items())


@dataclass(frozen=True)
class Mistake:
    """A common wrong version: what the learner's tensors are if they made it, and what to say then.

    ``variant(case)`` computes, from the reference, the tensors the mistake changes
    ({"dweight": dweight / N}); a learner's tensor equal to it gets ``diagnosis``.
    """

    diagnosis: str
    variant: Callable


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    functions: dict
    reference: object
    run: Callable
    cases: Callable
    draw: Callable
    mistakes: tuple
    hints: tuple
    starter: str
    docs: str
    builds_on: tuple = ()
    gradients: Callable | None = None
    gradient_cases: Callable | None = None
    shapes: dict = field(default_factory=dict)
    network: str = "MnistCNN"
    drawn: str = "shapes"  # what the drawn cases vary, as the check's line says it

    def returns_of(self, tensor: str) -> str:
        """The function that returns ``tensor`` (``dweight`` -> ``conv2d_backward``, and ``y (eval)`` ->
        the function that returns ``y``); the first function when none does."""
        base = tensor.split(" ")[0]
        for function, returns in self.functions.items():
            if base in returns:
                return function
        return next(iter(self.functions))
