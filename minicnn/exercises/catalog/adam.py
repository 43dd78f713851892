"""Exercise adam: one Adam step for one parameter, with bias correction.

For a parameter p with gradient g at step t = 1, 2, ... (m and v start at 0):

    m     = beta1 * m + (1 - beta1) * g
    v     = beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^t)         v_hat = v / (1 - beta2^t)        (bias correction)
    p     = p - lr * m_hat / (sqrt(v_hat) + eps)

The learner writes ``adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps)``,
which updates param, exp_avg (m) and exp_avg_sq (v) in place, the update of
:func:`minicnn.optim.adam.adam_update`; the reference is :class:`minicnn.optim.Adam` itself.
Each case runs a few steps in a row, the learning rate halved at the third as a schedule would,
and compares the three arrays after every step (the first index of each tensor is the step).

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import optim
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.nn import Parameter


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    p = Parameter(param.copy())
    optimizer = optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)
    optimizer.state[p] = {"step": step - 1, "exp_avg": exp_avg.copy(), "exp_avg_sq": exp_avg_sq.copy()}
    p.grad = grad.copy()
    optimizer.step()  # step t: the state's count goes from t - 1 to t
    param[...], exp_avg[...], exp_avg_sq[...] = p.data, optimizer.state[p]["exp_avg"], optimizer.state[p]["exp_avg_sq"]


REFERENCE = SimpleNamespace(adam_step=adam_step)


def run(f, c):
    out = {"param": [], "exp_avg": [], "exp_avg_sq": []}
    for k, (grad, lr) in enumerate(zip(c.grads, c.lrs)):
        f.adam_step(c.param, grad, c.exp_avg, c.exp_avg_sq, c.first_step + k, lr, c.beta1, c.beta2, c.eps)
        for name in out:
            out[name].append(getattr(c, name).copy())
    return {f"{name} (by step)": np.stack(arrays) for name, arrays in out.items()}


def _case(rng, shape, steps, first_step=1, betas=(0.9, 0.999), eps=1e-8, lr=0.01):
    started = first_step > 1
    return Case(writable=("param", "exp_avg", "exp_avg_sq"), param=array(rng, shape),
                grads=array(rng, (steps, *shape)), exp_avg=array(rng, shape) * 0.1 * started,
                exp_avg_sq=rng.uniform(0.0, 0.1, shape) * started, first_step=first_step,
                lrs=tuple(lr if k < 2 else lr / 2 for k in range(steps)), beta1=betas[0], beta2=betas[1], eps=eps)


def cases():
    rng = np.random.default_rng(13)
    return [_case(rng, (3, 4), 3), _case(rng, (5,), 3, first_step=4, betas=(0.5, 0.9), eps=1e-3, lr=0.1)]


def draw(d):
    shape = tuple(d.integer(1, 4) for _ in range(d.integer(1, 3)))
    return _case(np.random.default_rng(d.integer(0, 2**16)), shape, d.integer(1, 3), d.integer(1, 5),
                 d.pick(((0.9, 0.999), (0.5, 0.9))), d.pick((1e-8, 1e-3)), d.pick((1e-3, 0.1)))


def _adam(c, correct=True, square=True, eps_inside=False, swap=False, carry=True, in_place=True, t_shift=0):
    """The steps of the case by Adam's rule with one thing changed: the three tensors after every step."""
    p, m, v = c.param.copy(), c.exp_avg.copy(), c.exp_avg_sq.copy()
    beta1, beta2 = (c.beta2, c.beta1) if swap else (c.beta1, c.beta2)
    out = {"param (by step)": [], "exp_avg (by step)": [], "exp_avg_sq (by step)": []}
    for k, (g, lr) in enumerate(zip(c.grads, c.lrs)):
        t = c.first_step + k + t_shift
        m_new = beta1 * m + (1 - beta1) * g
        v_new = beta2 * v + (1 - beta2) * (g * g if square else g)
        m_hat, v_hat = (m_new / (1 - beta1**t), v_new / (1 - beta2**t)) if correct else (m_new, v_new)
        new_p = p - lr * m_hat / (np.sqrt(v_hat + c.eps) if eps_inside else np.sqrt(v_hat) + c.eps)
        if in_place:
            p = new_p
        if carry:
            m, v = m_new, v_new
        for name, value in zip(out, (p, m, v)):
            out[name].append(value)
    return {name: np.stack(values) for name, values in out.items()}


MISTAKES = (
    Mistake("no bias correction: m and v start at 0, so early averages are too small; divide by 1 - beta1^t "
            "and 1 - beta2^t", lambda c: _adam(c, correct=False)),
    Mistake("the bias correction is one step off: at step t it is 1 - beta^t, with t = step (1 at the first step)",
            lambda c: _adam(c, t_shift=1)),
    Mistake("eps is inside the square root: p -= lr * m_hat / (sqrt(v_hat) + eps)", lambda c: _adam(c, eps_inside=True)),
    Mistake("v averages g, not g^2: v = beta2 * v + (1 - beta2) * g * g", lambda c: _adam(c, square=False)),
    Mistake("beta1 and beta2 are swapped: beta1 (0.9) is m's, beta2 (0.999) is v's", lambda c: _adam(c, swap=True)),
    Mistake("param did not change: update it in place (param -= ...); 'param = param - ...' makes a new array "
            "and leaves the caller's as it was", lambda c: _adam(c, in_place=False)),
    Mistake("exp_avg and exp_avg_sq do not keep their values: update them in place (exp_avg *= beta1; "
            "exp_avg += (1 - beta1) * grad), or the next step starts from the old ones", lambda c: _adam(c, carry=False)),
)

HINTS = (
    "m and v start at 0. After the first step m = (1 - beta1) * g, a tenth of g: what factor undoes that, and "
    "how does it change from step to step? And which arrays must keep their new values for the next step?",
    "exp_avg *= beta1; exp_avg += (1 - beta1) * grad; exp_avg_sq *= beta2; exp_avg_sq += (1 - beta2) * grad**2; "
    "m_hat = exp_avg / (1 - beta1**step); v_hat = exp_avg_sq / (1 - beta2**step); "
    "param -= lr * m_hat / (np.sqrt(v_hat) + eps). Every update in place.",
    "param, grad, exp_avg, exp_avg_sq, m_hat, v_hat: one shape, param's dtype; step an int (1 at the first "
    "step); lr, beta1, beta2, eps and the two corrections plain numbers.",
)

STARTER = '''"""Exercise adam: one Adam step for one parameter, with bias correction.

At step t = step (1, 2, ...), with m = exp_avg and v = exp_avg_sq (both 0 before the first step):
    m     = beta1 * m + (1 - beta1) * g
    v     = beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^t)           v_hat = v / (1 - beta2^t)       (bias correction)
    param = param - lr * m_hat / (sqrt(v_hat) + eps)

param, exp_avg and exp_avg_sq are updated IN PLACE (the optimizer keeps these arrays from step to
step); grad is only read. All arrays share one shape and param's dtype.

The math:  {docs}
Check:     minicnn exercise check adam          A hint:  minicnn exercise hint adam
"""
import numpy as np


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step, in place on param, exp_avg and exp_avg_sq; returns nothing."""
    raise NotImplementedError("adam_step: replace this line with your code")
'''

EXERCISE = Exercise(
    name="adam", title="The Adam step, with bias correction",
    functions={"adam_step": ()}, reference=REFERENCE, run=run, cases=cases, draw=draw,
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/optimizers.md#adam",
    drawn="shapes, step counts, betas, eps, learning rates")
