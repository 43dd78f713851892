"""Exercise relu: ReLU, forward and backward.

    y  = max(x, 0)            element by element
    dx = dy * [y > 0]         the gradient passes where the output is positive

The learner writes ``relu_forward(x)`` and ``relu_backward(grad_output, y)``, the signatures of
:func:`minicnn.nn.functional.relu_forward` and :func:`minicnn.nn.functional.relu_backward`.  The
backward pass is given the reference's y, so that a mistake in the forward pass is not counted
twice.  The inputs stay away from 0, the kink, where a central difference measures 1/2
(docs/gradcheck.md#ties-and-kinks).

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences
from minicnn.nn import functional as F

REFERENCE = SimpleNamespace(relu_forward=F.relu_forward, relu_backward=F.relu_backward)


def run(f, c):
    y = REFERENCE.relu_forward(c.x)
    return {"y": f.relu_forward(c.x), "dx": f.relu_backward(c.dy, y)}


def cases():
    rng = np.random.default_rng(0)
    return [Case(x=array(rng, (3, 4), "nonzero"), dy=array(rng, (3, 4))),
            Case(x=array(rng, (2, 3, 4, 4), "nonzero"), dy=array(rng, (2, 3, 4, 4)))]


def draw(d):
    shape = tuple(d.integer(1, 4) for _ in range(d.integer(1, 4)))
    return Case(x=d.array(shape, "nonzero"), dy=d.array(shape))


def gradients(f, c):
    analytic = {"dx": f.relu_backward(c.dy, f.relu_forward(c.x))}
    return analytic, central_differences(f.relu_forward, c.dy, x=c.x)


MISTAKES = (
    Mistake("dx is the mask [y > 0] alone: multiply it by dy (the chain rule: dx = dy * dy/dx)",
            lambda c: {"dx": (c.x > 0).astype(c.dy.dtype)}),
    Mistake("dx = dy * y: what passes the gradient is the mask [y > 0], not the value of y",
            lambda c: {"dx": c.dy * np.maximum(c.x, 0)}),
    Mistake("dx = dy everywhere: the gradient stops where y = 0 (where x < 0 the output does not move)",
            lambda c: {"dx": c.dy}),
    Mistake("dx passes where y = 0 and stops where y > 0: the mask is [y > 0]",
            lambda c: {"dx": c.dy * (c.x <= 0)}),
    Mistake("y = |x|: ReLU keeps the positive entries and puts 0 in place of the negative ones",
            lambda c: {"y": np.abs(c.x)}),
)

HINTS = (
    "Where does ReLU's output change when x changes a little, and where does it not move at all?",
    "y = max(x, 0) (np.maximum); its slope is 1 where x > 0 and 0 elsewhere, so dx = dy * (y > 0). "
    "A bool array times a float array is a float array of the float's dtype.",
    "x, y, dy, mask = (y > 0) and dx all have one shape: (N, C, H, W) after a convolution, (N, F) after a "
    "Linear. The mask is bool; y and dx have x's dtype.",
)

STARTER = '''"""Exercise relu: ReLU, forward and backward.

    y  = max(x, 0)            element by element
    dx = dy * [y > 0]         the gradient passes where the output is positive ([True] = 1, [False] = 0)

x, y, dy (grad_output) and dx all have one shape (any shape) and x's dtype: float32 in, float32 out.
Neither function may change its inputs: the layer before may still hold x.

The math:  {docs}
Check:     minicnn exercise check relu          A hint:  minicnn exercise hint relu
"""
import numpy as np


def relu_forward(x):
    """y = max(x, 0), a new array of x's shape and dtype."""
    raise NotImplementedError("relu_forward: replace this line with your code")


def relu_backward(grad_output, y):
    """dx = grad_output * [y > 0], from the forward pass's output y (y > 0 exactly where x > 0)."""
    raise NotImplementedError("relu_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="relu", title="ReLU forward and backward",
    functions={"relu_forward": ("y",), "relu_backward": ("dx",)}, reference=REFERENCE,
    run=run, cases=cases, draw=draw, gradients=gradients, gradient_cases=lambda: cases()[:1],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/layers.md#relu")
