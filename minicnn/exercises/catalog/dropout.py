"""Exercise dropout: inverted dropout, in training and in evaluation.

    keep = generator.random(x.shape) < 1 - p          each entry kept with probability q = 1 - p
    training:   y = x * keep / q,   dx = dy * keep / q       (scaled now: E[y] = x)
    evaluation: y = x,              dx = dy

The learner writes ``dropout_forward(x, p, generator, training=True) -> (y, mask)`` and
``dropout_backward(grad_output, mask)``; ``mask`` is whatever the forward pass keeps for its
backward (the reference keeps its :class:`minicnn.nn.Dropout` layer).  The draw is fixed, one
``generator.random(x.shape)``, so that the check can replay it from the same seed: the learner's
mask must be the reference's, entry for entry.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import nn
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences


def dropout_forward(x, p, generator, training=True):
    layer = nn.Dropout(p, generator=generator).train(training)
    return layer(x), layer  # the layer keeps its mask for its backward pass


def dropout_backward(grad_output, mask):
    return mask.backward(grad_output)


REFERENCE = SimpleNamespace(dropout_forward=dropout_forward, dropout_backward=dropout_backward)


def run(f, c):
    out = {}
    for training, mode in ((True, ""), (False, " (eval)")):
        y, mask = f.dropout_forward(c.x, c.p, np.random.default_rng(c.seed), training)
        out[f"y{mode}"], out[f"dx{mode}"] = y, f.dropout_backward(c.dy, mask)
    return out


def _case(rng, shape, p, seed):
    return Case(x=array(rng, shape), dy=array(rng, shape), p=p, seed=seed)


def cases():
    rng = np.random.default_rng(10)
    return [_case(rng, (4, 5), 0.5, 1), _case(rng, (2, 3, 4, 4), 0.25, 2)]


def draw(d):
    shape = tuple(d.integer(1, 4) for _ in range(d.integer(1, 4)))
    return _case(np.random.default_rng(d.integer(0, 2**16)), shape, d.pick((0.0, 0.1, 0.5, 0.9)), d.integer(0, 99))


def gradients(f, c):
    mask = f.dropout_forward(c.x, c.p, np.random.default_rng(c.seed), True)[1]
    numeric = central_differences(lambda x: f.dropout_forward(x, c.p, np.random.default_rng(c.seed), True),
                                  c.dy, x=c.x)
    return {"dx": f.dropout_backward(c.dy, mask)}, numeric


def _draw(c):
    """The uniform numbers of the draw, replayed from the case's seed, and q = 1 - p."""
    return np.random.default_rng(c.seed).random(c.x.shape), 1.0 - c.p


def _unscaled(c):
    r, q = _draw(c)
    return {"y": c.x * (r < q), "dx": c.dy * (r < q)}


MISTAKES = (
    Mistake("dropout not scaled: divide the kept entries by q = 1 - p (inverted dropout), so that E[y] = x and "
            "evaluation needs no rescaling", _unscaled),
    Mistake("scaled by 1/p: the keep probability is q = 1 - p, so divide by 1 - p",
            lambda c: {"y": c.x * (_draw(c)[0] < _draw(c)[1]) / c.p}),
    Mistake("kept where the random number is below p: an entry is kept with probability 1 - p, "
            "keep = generator.random(x.shape) < 1 - p", lambda c: {"y": c.x * (_draw(c)[0] < c.p) / _draw(c)[1]}),
    Mistake("a draw other than the reference's: keep exactly where generator.random(x.shape) < 1 - p, so that "
            "the check (and a seeded run) can replay your mask", lambda c: {
                "y": c.x * (_draw(c)[0] >= c.p) / _draw(c)[1]}),
    Mistake("in evaluation dropout is the identity: y = x, no mask and no scaling",
            lambda c: {"y (eval)": c.x * (_draw(c)[0] < _draw(c)[1]) / _draw(c)[1]}),
    Mistake("evaluation multiplies by 1 - p (the original dropout): inverted dropout scales in training and "
            "leaves evaluation alone, y = x", lambda c: {"y (eval)": c.x * _draw(c)[1]}),
    Mistake("dx is not masked: the dropped entries had no effect on y, so their gradient is 0, "
            "dx = dy * keep / (1 - p)", lambda c: {"dx": c.dy}),
    Mistake("dx is masked but not scaled: y = x * keep / q, so dx = dy * keep / q",
            lambda c: {"dx": c.dy * (_draw(c)[0] < _draw(c)[1])}),
    Mistake("in evaluation the backward pass is the identity too: dx = dy",
            lambda c: {"dx (eval)": c.dy * (_draw(c)[0] < _draw(c)[1]) / _draw(c)[1]}),
)

HINTS = (
    "If each entry is kept with probability 1 - p and zeroed otherwise, what is the expected value of x * keep? "
    "What factor makes it x again, and where must the same factor appear in the backward pass?",
    "keep = generator.random(x.shape) < 1 - p;  mask = keep.astype(x.dtype) / (1 - p);  y = x * mask;  "
    "dx = dy * mask;  in evaluation y = x and dx = dy (return a mask that says so, None say).",
    "x, y, dy, dx, keep and mask all have x's shape; keep is bool; mask has x's dtype "
    "(generator.random gives float64: cast before dividing, or y turns float64).",
)

STARTER = '''"""Exercise dropout: inverted dropout, in training and in evaluation.

With q = 1 - p, the probability of keeping an entry:
    keep = generator.random(x.shape) < 1 - p        exactly this draw, so that the check can replay it
    training:   y  = x * keep / q                   (scaled now, so that E[y] = x)
                dx = dy * keep / q
    evaluation: y = x,  dx = dy

The forward pass returns (y, mask): mask is what your backward pass needs (any value you like).
x, y, dy and dx share one shape and x's dtype: float32 in, float32 out.

The math:  {docs}
Check:     minicnn exercise check dropout          A hint:  minicnn exercise hint dropout
"""
import numpy as np


def dropout_forward(x, p, generator, training=True):
    """(y, mask): x with each entry zeroed with probability p, the kept ones divided by 1 - p (training)."""
    raise NotImplementedError("dropout_forward: replace this line with your code")


def dropout_backward(grad_output, mask):
    """dx from grad_output = dy and the mask your forward pass returned."""
    raise NotImplementedError("dropout_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="dropout", title="Dropout (inverted scaling)",
    functions={"dropout_forward": ("y", "mask"), "dropout_backward": ("dx",)}, reference=REFERENCE,
    run=run, cases=cases, draw=draw, gradients=gradients, gradient_cases=lambda: cases()[:1],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/regularisation.md#dropout",
    network="MnistBNCNN", drawn="shapes, drop probabilities (0 included), seeds")
