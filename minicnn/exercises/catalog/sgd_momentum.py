"""Exercise sgd_momentum: one step of SGD with momentum, PyTorch's way.

    b_1 = g                                  the buffer starts as the first gradient
    b_t = momentum * b_{t-1} + g             it holds gradients, not steps
    p   = p - lr * b_t

The learner writes ``sgd_momentum_step(param, grad, momentum_buffer, lr, momentum)``, which
updates param in place and returns the new buffer (``momentum_buffer`` is None at the first step),
as PyTorch's functional SGD does; the reference is :class:`minicnn.optim.SGD` itself.  The
learning rate is halved at the third step, as a schedule would: that is where the classical form
(the learning rate inside the buffer) and PyTorch's part ways.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import optim
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.nn import Parameter


def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum):
    p = Parameter(param.copy())
    optimizer = optim.SGD([p], lr=lr, momentum=momentum)
    if momentum_buffer is not None:
        optimizer.state[p] = {"momentum_buffer": momentum_buffer.copy()}
    p.grad = grad.copy()
    optimizer.step()
    param[...] = p.data
    return optimizer.state[p]["momentum_buffer"]


REFERENCE = SimpleNamespace(sgd_momentum_step=sgd_momentum_step)


def run(f, c):
    buffer, params, buffers = None, [], []
    for grad, lr in zip(c.grads, c.lrs):
        buffer = f.sgd_momentum_step(c.param, grad, buffer, lr, c.momentum)
        params.append(c.param.copy())
        buffers.append(buffer.copy())
    return {"param (by step)": np.stack(params), "momentum_buffer (by step)": np.stack(buffers)}


def _case(rng, shape, steps, momentum=0.9, lr=0.1):
    return Case(writable=("param",), param=array(rng, shape), grads=array(rng, (steps, *shape)),
                lrs=tuple(lr if k < 2 else lr / 2 for k in range(steps)), momentum=momentum)


def cases():
    rng = np.random.default_rng(14)
    return [_case(rng, (3, 4), 3), _case(rng, (5,), 4, momentum=0.5, lr=0.5)]


def draw(d):
    shape = tuple(d.integer(1, 4) for _ in range(d.integer(1, 3)))
    return _case(np.random.default_rng(d.integer(0, 2**16)), shape, d.integer(1, 4), d.pick((0.9, 0.5, 0.99)),
                 d.pick((0.01, 0.1, 1.0)))


def _sgd(c, dampen=False, lr_inside=False, step_with_grad=False, carry=True, in_place=True):
    """The steps of the case by the rule with one thing changed: param and the buffer after every step."""
    p, b, params, buffers = c.param.copy(), None, [], []
    for g, lr in zip(c.grads, c.lrs):
        grad = lr * g if lr_inside else g
        if b is None or not carry:
            b = grad  # b_1 = g, dampening or not
        else:
            b = c.momentum * b + ((1 - c.momentum) * grad if dampen else grad)
        new_p = p - (lr * g if step_with_grad else b if lr_inside else lr * b)
        if in_place:
            p = new_p
        params.append(p)
        buffers.append(b)
    return {"param (by step)": np.stack(params), "momentum_buffer (by step)": np.stack(buffers)}


MISTAKES = (
    Mistake("the buffer averages, b_t = momentum * b + (1 - momentum) * g (dampening = momentum): PyTorch's "
            "buffer adds g itself, b_t = momentum * b_{t-1} + g", lambda c: _sgd(c, dampen=True)),
    Mistake("the buffer holds lr * g (the classical velocity form, p -= v): PyTorch's buffer holds gradients, "
            "b_t = momentum * b_{t-1} + g, and the step is p -= lr * b_t; the two part ways when lr changes",
            lambda c: _sgd(c, lr_inside=True)),
    Mistake("the step uses g: with momentum it is p -= lr * b_t, the buffer", lambda c: _sgd(c, step_with_grad=True)),
    Mistake("the buffer does not carry over: b_t = momentum * b_{t-1} + g starts from the buffer passed in "
            "(the one your function returned at the step before)", lambda c: _sgd(c, carry=False)),
    Mistake("param did not change: update it in place (param -= lr * buffer); 'param = param - ...' makes a "
            "new array and leaves the caller's as it was", lambda c: _sgd(c, in_place=False)),
)

HINTS = (
    "What does the buffer hold after one step, and after two? What is new at each step, and what is kept? "
    "Which of the arrays must change in place?",
    "b = grad.copy() when momentum_buffer is None, else b = momentum * momentum_buffer + grad (in place or "
    "new, but never grad itself); param -= lr * b; return b.",
    "param, grad, momentum_buffer and the returned buffer: one shape, param's dtype; lr and momentum "
    "numbers. grad is only read: a buffer that is grad itself would change it at the next step.",
)

STARTER = '''"""Exercise sgd_momentum: one step of SGD with momentum, PyTorch's way.

    b_1 = g                              at the first step (momentum_buffer is None): a copy of the gradient
    b_t = momentum * b_{t-1} + g         after that: the buffer holds gradients, not steps
    p   = p - lr * b_t

param is updated IN PLACE; grad is only read; the new buffer is returned, and passed back in as
momentum_buffer at the next step. All arrays share one shape and param's dtype.

The math:  {docs}
Check:     minicnn exercise check sgd_momentum          A hint:  minicnn exercise hint sgd_momentum
"""
import numpy as np


def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum):
    """One step, in place on param; returns the new momentum buffer."""
    raise NotImplementedError("sgd_momentum_step: replace this line with your code")
'''

EXERCISE = Exercise(
    name="sgd_momentum", title="SGD with momentum",
    functions={"sgd_momentum_step": ("momentum_buffer",)}, reference=REFERENCE, run=run, cases=cases, draw=draw,
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/optimizers.md#sgd",
    drawn="shapes, step counts, momenta, learning rates")
