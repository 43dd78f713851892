"""The checks of one exercise, in order, stopping at the first that fails.

    shapes and dtypes   the first fixed case, in float32 and in float64: every returned value is an
                        array of the expected shape, and float32 stays float32
    fixed inputs        the fixed cases in float64 against the reference, within the stated tolerance
                        (a hand-picked tie, overlapping windows, a stride, a padding)
    drawn cases         shapes, strides, paddings and ties drawn at random; the smallest failing case
    gradient check      a backward pass against central differences of its forward pass
    in the network      the exercise's functions inside MnistCNN for one training step, against the reference

Where a tensor differs, the check prints the case, the tolerance, the error of every tensor with
the worst entry (index, expected, computed) and a diagnosis: the common mistake whose output
equals the learner's (each exercise lists its own), else a pattern (a transpose, a constant
factor, the opposite sign).  Everything the learner's code raises or returns wrongly is one line
(calls.py).  :func:`check` runs the checks on functions already in hand; the command line runs
them on a file in a child process with a time limit (sandbox.py).

Docs: docs/exercises.md
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

import minicnn
from minicnn.exercises import network
from minicnn.exercises.calls import LearnerError, wrap_all
from minicnn.exercises.compare import Tolerance, close, compare, failed, pattern, table
from minicnn.exercises.drawing import first_failure, hypothesis_available

#: float64 cases against the reference: both compute the same math, so only rounding differs.
TOLERANCE = Tolerance(tol=1e-7, floor=1e-6)
#: A backward pass against central differences (step 1e-6 in float64).
GRADIENT_TOLERANCE = Tolerance(tol=1e-5, floor=1e-3)
STAGES = ("shapes and dtypes", "fixed inputs", "drawn cases", "gradient check", "in the network")


class Mismatch(Exception):
    """Some tensors differ from the expected ones: the lines that say how."""

    def __init__(self, lines):
        super().__init__(lines[0])
        self.lines = lines


@dataclass
class Stage:
    name: str
    ok: bool
    lines: list  # the first one is the summary


@dataclass
class Result:
    """What a check found, stage by stage; ``bool(result)`` is whether it passed, ``str(result)`` the report."""

    exercise: object
    stages: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages)

    def __bool__(self) -> bool:
        return self.passed

    def lines(self) -> list[str]:
        out = [format_stage(s) for s in self.stages]
        name = self.exercise.name
        if self.passed:
            out.append(f"{name}: passed ({len(self.stages)} checks)")
        else:
            out.append(f"{name}: not yet. The math: {self.exercise.docs}; a hint: minicnn exercise hint {name}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__


def format_stage(stage: Stage) -> str:
    head = f"  {'ok  ' if stage.ok else 'FAIL'}  {stage.name}: {stage.lines[0]}"
    return "\n".join([head] + [f"        {line}" for line in stage.lines[1:]])


# --- what the stages share ------------------------------------------------------------

def _diagnoses(exercise, case, wrong, tolerance) -> list[str]:
    """The mistakes whose variant equals one of the learner's wrong tensors; else the patterns they show.

    A mistake whose variant is within ``tolerance`` of the reference on this case (eps inside the square root,
    where eps is 1e-8) would not fail the check: it explains no error here, though any small one lies near it.
    """
    found = []
    for mistake in exercise.mistakes:
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                variant = mistake.variant(case.copy())
        except Exception:  # a mistake that cannot be made on this case (shapes that do not fit)
            continue
        if any(r.name in variant and close(r.computed, variant[r.name])
               and failed(compare({r.name: r.expected}, {r.name: variant[r.name]}, tolerance), tolerance)
               for r in wrong):
            found.append(mistake.diagnosis)
    return found or [p for r in wrong if (p := pattern(r))]


def _mismatch(exercise, case, rows, tolerance, heading) -> Mismatch | None:
    """The lines that say how the tensors of ``rows`` (from :func:`compare`) differ, or None if none does."""
    wrong = failed(rows, tolerance)
    if not wrong:
        return None
    names = ", ".join(r.name for r in wrong)
    lines = [f"{names} {'differs' if len(wrong) == 1 else 'differ'} from the reference ({heading})",
             f"case: {case.describe()}", f"tolerance: {tolerance}"]
    lines += table(rows, tolerance, exercise.shapes)
    lines += [f"diagnosis: {d}" for d in _diagnoses(exercise, case, wrong, tolerance)]
    return Mismatch(lines)


def _dtype_advice(expected, computed) -> str:
    if expected.kind == "i":
        return "indices: an integer array (np.argmax gives one)"
    if expected == np.float32 and computed == np.float64:
        return ("a float64 array or number mixed in (np.zeros without dtype=, generator.random(...), "
                "np.float64): make arrays with dtype=x.dtype, or cast with .astype(x.dtype)")
    return f"keep the inputs' dtype, {expected}"


# --- the stages ------------------------------------------------------------------------

def shapes_and_dtypes(exercise, f) -> str:
    first = exercise.cases()[0]
    for dtype in (np.float32, np.float64):
        case = first.astype(dtype)
        expected = exercise.run(exercise.reference, case.copy())
        computed = exercise.run(f, case.copy())
        rows = compare(expected, computed, TOLERANCE)
        for row in rows:
            if not row.same_shape:
                symbolic = f" = {exercise.shapes[row.name]}" if row.name in exercise.shapes else ""
                lines = [f"{row.name} from {exercise.returns_of(row.name)} has shape {tuple(row.computed.shape)}; "
                         f"expected {tuple(row.expected.shape)}{symbolic}", f"case: {case.describe()}"]
                lines += [f"diagnosis: {d}" for d in _diagnoses(exercise, case, [row], TOLERANCE)]
                raise Mismatch(lines)
            e, c = row.expected.dtype, row.computed.dtype
            if e != c and not (e.kind == c.kind == "i"):
                raise Mismatch([f"{row.name} from {exercise.returns_of(row.name)} is {c} for {np.dtype(dtype)} "
                                f"inputs; expected {e}: {_dtype_advice(e, c)}", f"case: {case.describe()}"])
    return ", ".join(f"{name} {tuple(np.shape(v))}" for name, v in expected.items()) + \
        " (float32 stays float32, float64 stays float64)"


def fixed_inputs(exercise, f) -> str:
    cases = exercise.cases()
    worst = 0.0
    for number, case in enumerate(cases, start=1):
        expected = exercise.run(exercise.reference, case.copy())
        rows = compare(expected, exercise.run(f, case.copy()), TOLERANCE)
        problem = _mismatch(exercise, case, rows, TOLERANCE, f"fixed case {number} of {len(cases)}")
        if problem:
            raise problem
        worst = max([worst] + [r.max_rel() for r in rows])
    return f"{len(cases)} cases, largest relative error {worst:.1e} (at most {TOLERANCE.tol:g})"


def drawn_cases(exercise, f, examples: int) -> str:
    shrunk = hypothesis_available()
    heading = "the smallest failing case hypothesis found" if shrunk else \
        "a drawn case; pip install 'minicnn[exercises]' (hypothesis) to get the smallest failing one"

    def test(case):
        expected = exercise.run(exercise.reference, case.copy())
        rows = compare(expected, exercise.run(f, case.copy()), TOLERANCE)
        problem = _mismatch(exercise, case, rows, TOLERANCE, heading)
        if problem:
            raise problem

    failure = first_failure(exercise.draw, test, examples)
    if failure is None:
        return f"{examples} cases drawn by {'hypothesis' if shrunk else 'NumPy'}: {exercise.drawn}"
    if isinstance(failure, Mismatch):
        raise failure
    case = getattr(failure, "case", None)
    where = f" ({heading}: {case.describe()})" if case is not None else ""
    if isinstance(failure, LearnerError):
        raise LearnerError(f"{failure}{where}")
    raise LearnerError(f"the drawn cases stopped: {type(failure).__name__}: {failure}{where}")


def gradient_check(exercise, f) -> str:
    worst = {}
    for case in exercise.gradient_cases():
        analytic, numeric = exercise.gradients(f, case.copy())
        rows = compare(numeric, analytic, GRADIENT_TOLERANCE)
        wrong = failed(rows, GRADIENT_TOLERANCE)
        if wrong:
            lines = [f"{', '.join(r.name for r in wrong)} against central differences of the forward pass",
                     f"case: {case.describe()}", f"tolerance: {GRADIENT_TOLERANCE}"]
            lines += table(rows, GRADIENT_TOLERANCE, exercise.shapes)
            raise Mismatch(lines)
        for r in rows:
            worst[r.name] = max(worst.get(r.name, 0.0), r.max_rel())
    return ", ".join(f"{name} {value:.1e}" for name, value in worst.items()) + \
        f" (relative error, at most {GRADIENT_TOLERANCE.tol:g})"


def in_the_network(exercise, f) -> str:
    what, rows = network.one_step(exercise, f)
    wrong = failed(rows, network.TOLERANCE)
    if wrong:
        lines = [f"{len(wrong)} of {len(rows)} values differ from the reference network's ({what})",
                 f"tolerance: {network.TOLERANCE}"]
        lines += table(wrong, network.TOLERANCE)
        lines.append("every check above passed, so look for what is different in a network: a batch of 8, "
                     "several calls in a row (state kept between them), an array changed in place after it was "
                     "returned")
        raise Mismatch(lines)
    gradients = sum(r.name.endswith(".grad") for r in rows)
    return f"{what}: the loss, {gradients} gradients, the parameters after the last step and the output in eval " \
           f"mode are the reference's"


# --- the whole check ------------------------------------------------------------------------

@contextmanager
def numpy_backend():
    """The NumPy backend inside the block, the active one put back after: the references the checks compare
    with are the readable NumPy kernels, and nothing waits for a compiler."""
    previous = minicnn.get_backend()
    try:
        yield minicnn.set_backend("numpy")
    finally:
        minicnn.set_backend(previous.name)


def check(exercise, functions, examples: int = 25, say=None, begin=None) -> Result:
    """Run the stages on ``functions`` (a module or namespace holding the exercise's functions).

    ``begin(name)`` is called as each stage begins and ``say(stage)`` with each :class:`Stage` as it
    ends (the command line prints it then, and stops a stage that runs too long).
    """
    result = Result(exercise)
    f = wrap_all(exercise, functions)
    f.label = getattr(functions, "label", None) or "yours"
    stages = [(STAGES[0], lambda: shapes_and_dtypes(exercise, f)),
              (STAGES[1], lambda: fixed_inputs(exercise, f)),
              (STAGES[2], lambda: drawn_cases(exercise, f, examples))]
    if exercise.gradients is not None:
        stages.append((STAGES[3], lambda: gradient_check(exercise, f)))
    stages.append((STAGES[4], lambda: in_the_network(exercise, f)))
    for name, run in stages:
        if begin is not None:
            begin(name)
        try:
            with numpy_backend(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stage = Stage(name, True, [run()])
        except Mismatch as exc:
            stage = Stage(name, False, exc.lines)
        except LearnerError as exc:
            stage = Stage(name, False, [str(exc)])
        result.stages.append(stage)
        if say is not None:
            say(stage)
        if not stage.ok:
            break
    return result
