"""Exercise log_softmax_nll: LogSoftmax, the NLL loss, and why their gradient is softmax minus one-hot.

    y  = x - m - log sum_j exp(x_j - m)         along dim, m = max_j x_j (so exp never overflows)
    dx = dy - exp(y) * sum_j dy_j               exp(y) = softmax(x)
    L  = -(1/N) sum_n z[n, t_n]                 z = log-probabilities (N, C), t = targets (N,)
    dz = -(1/N) onehot(t)
    together: dL/dlogits = (softmax(logits) - onehot(t)) / N

The learner writes ``log_softmax(x, dim)`` and ``log_softmax_backward(grad_output, y, dim)`` (the
signatures of :func:`minicnn.nn.functional.log_softmax` and its backward), ``nll_loss(log_probs,
target)`` and ``nll_loss_backward(log_probs, target)``; the loss's reference is
:class:`minicnn.nn.NLLLoss`.  The tensor ``dlogits`` is the learner's two backward passes chained,
the headline fact of docs/losses.md.  The first case has a row of logits near 1000, where an
unshifted exp overflows.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import nn
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences
from minicnn.nn import functional as F


def nll_loss(log_probs, target):
    return nn.NLLLoss()(log_probs, target)


def nll_loss_backward(log_probs, target):
    loss = nn.NLLLoss()
    loss(log_probs, target)
    return loss.backward()


REFERENCE = SimpleNamespace(log_softmax=F.log_softmax, log_softmax_backward=F.log_softmax_backward,
                            nll_loss=nll_loss, nll_loss_backward=nll_loss_backward)


def run(f, c):
    y, z = F.log_softmax(c.x, c.dim), F.log_softmax(c.logits, 1)  # the backward passes get the reference's
    return {"y": f.log_softmax(c.x, c.dim), "dx": f.log_softmax_backward(c.dy, y, c.dim),
            "loss": f.nll_loss(z, c.target), "dlog_probs": f.nll_loss_backward(z, c.target),
            "dlogits": f.log_softmax_backward(f.nll_loss_backward(z, c.target), z, 1)}


def _case(rng, shape, dim, N, C, large=False):
    x, logits = array(rng, shape), array(rng, (N, C))
    if large:
        x[0] += 1000.0
        logits[0] += 1000.0
    return Case(x=x, dim=dim, dy=array(rng, shape), logits=logits, target=rng.integers(0, C, size=N))


def cases():
    rng = np.random.default_rng(2)
    return [_case(rng, (3, 5), 1, 3, 5, large=True), _case(rng, (2, 4, 3), 1, 4, 3)]


def draw(d):
    shape = tuple(d.integer(1, 4) for _ in range(d.integer(1, 3)))
    dim = d.integer(-len(shape), len(shape) - 1)
    return _case(np.random.default_rng(d.integer(0, 2**16)), shape, dim, d.integer(1, 4), d.integer(1, 5))


def gradients(f, c):
    y, z = f.log_softmax(c.x, c.dim), f.log_softmax(c.logits, 1)
    analytic = {"dx": f.log_softmax_backward(c.dy, y, c.dim), "dlog_probs": f.nll_loss_backward(z, c.target),
                "dlogits": f.log_softmax_backward(f.nll_loss_backward(z, c.target), z, 1)}
    numeric = {**central_differences(lambda x: f.log_softmax(x, c.dim), c.dy, x=c.x),
               **central_differences(lambda log_probs: f.nll_loss(log_probs, c.target), None, log_probs=z),
               **central_differences(lambda logits: f.nll_loss(f.log_softmax(logits, 1), c.target), None,
                                     logits=c.logits)}
    return analytic, numeric


def _onehot(c):
    onehot = np.zeros(c.logits.shape)
    onehot[np.arange(len(c.target)), c.target] = 1
    return onehot


MISTAKES = (
    Mistake("exp overflows to inf for large inputs (exp(1000)): subtract m = the max along dim first, "
            "y = x - m - log sum exp(x - m); m cancels in the math",
            lambda c: {"y": c.x - np.log(np.exp(c.x).sum(axis=c.dim, keepdims=True))}),
    Mistake("y is the softmax itself: log-softmax is its log, x - m - log sum exp(x - m)",
            lambda c: {"y": F.softmax(c.x, c.dim)}),
    Mistake("the sum runs along the wrong axis: along dim, the classes, and nowhere else",
            lambda c: {"y": F.log_softmax(c.x, 0 if c.dim % c.x.ndim else -1)}),
    Mistake("dx = dy - softmax: the softmax term is multiplied by the sum of dy along dim, dx = dy - exp(y) * sum(dy)",
            lambda c: {"dx": c.dy - F.softmax(c.x, c.dim)}),
    Mistake("dx = dy * softmax: every y_i depends on every x_j of its row, so dx = dy - exp(y) * sum_j dy_j",
            lambda c: {"dx": c.dy * F.softmax(c.x, c.dim)}),
    Mistake("the loss is the sum over the batch: NLL is the mean, divide by N",
            lambda c: {"loss": -F.log_softmax(c.logits, 1)[np.arange(len(c.target)), c.target].sum()}),
    Mistake("the loss lacks its minus sign: L = -(1/N) sum_n z[n, t_n], a log-probability is negative",
            lambda c: {"loss": F.log_softmax(c.logits, 1)[np.arange(len(c.target)), c.target].mean()}),
    Mistake("log_probs[:, target] takes every row's entries of every target, (N, N): pick one entry per row, "
            "log_probs[np.arange(N), target]",
            lambda c: {"loss": -F.log_softmax(c.logits, 1)[:, c.target].mean()}),
    Mistake("dlog_probs lacks the 1/N of the mean: dz[n, t_n] = -1/N",
            lambda c: {"dlog_probs": -_onehot(c), "dlogits": F.softmax(c.logits, 1) - _onehot(c)}),
    Mistake("dlog_probs has the wrong sign: dz[n, t_n] = -1/N (raising the target's log-probability lowers L)",
            lambda c: {"dlog_probs": _onehot(c) / len(c.target)}),
    Mistake("grad[:, target] writes every row's target columns: one entry per row, grad[np.arange(N), target]",
            lambda c: {"dlog_probs": -(_onehot(c).any(axis=0) * np.ones(c.logits.shape)) / len(c.target)}),
)

HINTS = (
    "Which exp can overflow, and what number can you subtract from every x of a row without changing the "
    "softmax? For the loss: which one entry of each row of log_probs does it read?",
    "y = x - m - log(exp(x - m).sum(axis=dim, keepdims=True)) with m = x.max(axis=dim, keepdims=True); "
    "dx = dy - exp(y) * dy.sum(axis=dim, keepdims=True); L = -log_probs[np.arange(N), target].mean(); "
    "dz = zeros, dz[np.arange(N), target] = -1/N. Chained: dlogits = (softmax - onehot) / N.",
    "x, y, dy, dx: one shape; m, the sums: that shape with a 1 along dim (keepdims=True, so they broadcast); "
    "log_probs and dz (N, C); target (N,) integers; np.arange(N) (N,); the loss one number.",
)

STARTER = '''"""Exercise log_softmax_nll: LogSoftmax, the NLL loss, and why their gradient is softmax minus one-hot.

LogSoftmax along dim (the class axis), with m = max_j x_j along dim so that exp never overflows:
    y_i  = x_i - m - log sum_j exp(x_j - m)
    dx_i = dy_i - exp(y_i) * sum_j dy_j           exp(y) is the softmax

The NLL loss of log-probabilities z (N, C) and class indices t (N,), a mean over the batch:
    L = -(1/N) sum_n z[n, t_n]
    dz[n, c] = -(1/N) [c == t_n]                  -1/N at each target, 0 elsewhere

Chained, dL/dlogits = (softmax(logits) - onehot(t)) / N: the check shows this too (dlogits).
x, y, dy and dx share one shape (any number of axes); float32 in, float32 out; the loss is one number.

The math:  {docs}
Check:     minicnn exercise check log_softmax_nll          A hint:  minicnn exercise hint log_softmax_nll
"""
import numpy as np


def log_softmax(x, dim):
    """y = log(softmax(x)) along axis dim, by the log-sum-exp trick."""
    raise NotImplementedError("log_softmax: replace this line with your code")


def log_softmax_backward(grad_output, y, dim):
    """dx = grad_output - exp(y) * (sum of grad_output along dim), from the forward's output y."""
    raise NotImplementedError("log_softmax_backward: replace this line with your code")


def nll_loss(log_probs, target):
    """L = -(1/N) * sum over n of log_probs[n, target[n]], a number; log_probs (N, C), target (N,) ints."""
    raise NotImplementedError("nll_loss: replace this line with your code")


def nll_loss_backward(log_probs, target):
    """dL/dlog_probs, (N, C): -1/N at [n, target[n]], 0 elsewhere, in log_probs's dtype."""
    raise NotImplementedError("nll_loss_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="log_softmax_nll", title="LogSoftmax and NLL: softmax minus one-hot",
    functions={"log_softmax": ("y",), "log_softmax_backward": ("dx",), "nll_loss": ("loss",),
               "nll_loss_backward": ("dlog_probs",)},
    reference=REFERENCE, run=run, cases=cases, draw=draw, gradients=gradients, gradient_cases=lambda: cases()[1:],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/losses.md#why-the-gradient-is-softmax-minus-one-hot",
    shapes={"dlog_probs": "(N, C)", "dlogits": "(N, C)", "loss": "() (a number)"})
