"""Learn by writing it: exercises in which a learner writes each layer's math and is told what is wrong.

    minicnn exercise list              the exercises in the suggested order, what each builds on, which are done
    minicnn exercise start relu        writes minicnn-exercises/relu.py: signatures, shapes, formulas, no solution
    minicnn exercise check relu        the checks in order, stopping at the first failure, with a diagnosis
    minicnn exercise hint relu         the next of three hints: a question, the key formula, the shapes
    minicnn exercise train             MnistCNN from the learner's layers, trained beside the reference

The same checks from Python or a notebook::

    from minicnn.exercises import check
    check("conv2d_backward", my_conv2d_backward)     # a Result: print it; bool(result) says if it passed
    check("relu", relu_forward, relu_backward)       # several functions in the exercise's order
    check("relu", "minicnn-exercises/relu.py")       # a workspace file

What is where:

    catalog/       the exercises, one module each: the reference, the cases, the planted mistakes and the
                   diagnoses they get, the hints, the starter file
    exercise.py    the Exercise and Case records
    checking.py    the stages of a check, and what a failure prints
    calls.py       a learner's exceptions and returned values, in one line
    compare.py     relative errors, the table of errors per tensor, patterns (transpose, factor, sign)
    drawing.py     drawn cases: shapes, strides, paddings, ties (hypothesis shrinks a failing one)
    gradients.py   central differences, for the gradient checks
    layers.py      the layers and optimizers that call a learner's functions
    network.py     which exercise runs in which layer; one step beside the reference
    workspace.py   the workspace folder: starter files, importing them, progress, hints
    sandbox.py     a check in a child process, with a time limit per stage
    finale.py      minicnn exercise train

Docs: docs/exercises.md
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from minicnn.exercises.catalog import EXERCISES
from minicnn.exercises.checking import Result

__all__ = ["EXERCISES", "Result", "check", "get"]


def get(name: str):
    """The exercise called ``name``."""
    try:
        return EXERCISES[name]
    except (KeyError, TypeError):
        raise ValueError(f"no exercise {name!r}; the exercises are {', '.join(EXERCISES)}") from None


def check(name: str, *functions, examples: int = 25, **by_name) -> Result:
    """Run the checks of exercise ``name`` on the learner's functions; return the :class:`Result`.

    ``functions``: the exercise's functions in its order (``check("relu", relu_forward, relu_backward)``),
    or one module or namespace holding them by name, or the path of a workspace file; functions may
    also be named (``check("relu", relu_forward=f, relu_backward=g)``).
    """
    from minicnn.exercises import checking, workspace

    exercise = get(name)
    if len(functions) == 1 and isinstance(functions[0], (str, Path)) and not by_name:
        path = Path(functions[0])
        checked = workspace.fingerprint(exercise, path.parent)  # before: an edit saved during the check is not checked
        with workspace.imported(exercise, path) as module:
            result = checking.check(exercise, module, examples=examples)
        if result.passed and path.stem == exercise.name:
            workspace.record_pass(exercise, path.parent, checked)
        return result
    if len(functions) == 1 and not callable(functions[0]) and not by_name:
        return checking.check(exercise, functions[0], examples=examples)
    names = list(exercise.functions)
    if len(functions) > len(names):
        raise ValueError(f"{name} takes {len(names)} function(s) ({', '.join(names)}), got {len(functions)}")
    given = {**dict(zip(names, functions)), **by_name}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{name} has no function {', '.join(unknown)}; its functions are {', '.join(names)}")
    return checking.check(exercise, SimpleNamespace(**given), examples=examples)
