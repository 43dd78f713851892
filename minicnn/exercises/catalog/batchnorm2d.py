"""Exercise batchnorm2d: batch normalisation of (N, C, H, W) inputs, forward and backward, training and evaluation.

Per channel, over the M = N*H*W values of the batch (training):
    mu = mean(x)    var = mean((x - mu)^2)    x_hat = (x - mu) / sqrt(var + eps)    y = gamma * x_hat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)
    with g = dy * gamma:   dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)
                           dgamma = sum(dy * x_hat)      dbeta = sum(dy)
Evaluation: the same affine map with running_mean and running_var; dx = dy * gamma / sqrt(running_var + eps).

The learner writes ``batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training,
momentum=0.1, eps=1e-5) -> (y, cache)``, which updates the running statistics in place (as
``torch.nn.functional.batch_norm`` does), and ``batchnorm2d_backward(grad_output, cache, gamma)
-> (dx, dgamma, dbeta)``.  The reference is :class:`minicnn.nn.BatchNorm2d`.  The backward pass
gets the learner's own cache; the check compares the running statistics after a training
forward pass and after an evaluation one (which must leave them alone).

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import nn
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    layer = nn.BatchNorm2d(len(gamma), eps=eps, momentum=momentum, dtype=x.dtype).train(training)
    layer.weight.data, layer.bias.data = gamma.copy(), beta.copy()
    layer.running_mean, layer.running_var = running_mean.copy(), running_var.copy()
    y = layer(x)
    running_mean[...], running_var[...] = layer.running_mean, layer.running_var  # in place, as promised
    return y, layer  # the layer keeps x_hat and 1 / sqrt(var + eps) for its backward pass


def batchnorm2d_backward(grad_output, cache, gamma):
    dx = cache.backward(grad_output)
    return dx, cache.weight.grad, cache.bias.grad


REFERENCE = SimpleNamespace(batchnorm2d_forward=batchnorm2d_forward, batchnorm2d_backward=batchnorm2d_backward)


def run(f, c):
    eval_mean, eval_var = c.running_mean.copy(), c.running_var.copy()
    y, cache = f.batchnorm2d_forward(c.x, c.gamma, c.beta, c.running_mean, c.running_var, True, c.momentum, c.eps)
    dx, dgamma, dbeta = f.batchnorm2d_backward(c.dy, cache, c.gamma)
    y_eval, cache = f.batchnorm2d_forward(c.x, c.gamma, c.beta, eval_mean, eval_var, False, c.momentum, c.eps)
    dx_eval = f.batchnorm2d_backward(c.dy, cache, c.gamma)[0]
    return {"y": y, "running_mean": c.running_mean, "running_var": c.running_var, "dx": dx, "dgamma": dgamma,
            "dbeta": dbeta, "y (eval)": y_eval, "dx (eval)": dx_eval, "running_mean (eval)": eval_mean}


def _case(rng, shape, momentum=0.1, eps=1e-5):
    C = shape[1]
    return Case(writable=("running_mean", "running_var"), x=array(rng, shape) * 2 + 1, dy=array(rng, shape),
                gamma=rng.uniform(0.5, 2.0, C), beta=array(rng, (C,)), running_mean=array(rng, (C,)),
                running_var=rng.uniform(0.5, 2.0, C), momentum=momentum, eps=eps)


def cases():
    rng = np.random.default_rng(11)
    return [_case(rng, (4, 3, 3, 2)), _case(rng, (2, 2, 2, 2), momentum=0.3, eps=1e-3)]


def draw(d):
    N, H, W = d.integer(1, 3), d.integer(1, 3), d.integer(1, 3)
    if N * H * W < 2:
        N = 2
    return _case(np.random.default_rng(d.integer(0, 2**16)), (N, d.integer(1, 3), H, W),
                 d.pick((0.1, 0.5)), d.pick((1e-5, 1e-3)))


def gradients(f, c):
    def forward(x, gamma, beta):  # running statistics: copies, updated and dropped
        return f.batchnorm2d_forward(x, gamma, beta, c.running_mean.copy(), c.running_var.copy(), True,
                                     c.momentum, c.eps)

    dx, dgamma, dbeta = f.batchnorm2d_backward(c.dy, forward(c.x, c.gamma, c.beta)[1], c.gamma)
    numeric = central_differences(forward, c.dy, x=c.x, gamma=c.gamma, beta=c.beta)
    return {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}, numeric


# --- the statistics, for the planted mistakes --------------------------------------------------------

AXES = (0, 2, 3)


def _per_channel(a):
    return a.reshape(1, -1, 1, 1)


def _stats(c, axes=AXES, unbiased=False):
    """mu, var (biased unless ``unbiased``), M."""
    M = c.x.size // c.x.shape[1]
    mu, var = c.x.mean(axis=axes, keepdims=True), c.x.var(axis=axes, keepdims=True)
    return mu, var * (M / (M - 1) if unbiased else 1.0), M


def _y(c, axes=AXES, eps_inside=True, unbiased=False):
    mu, var, _ = _stats(c, axes, unbiased)
    x_hat = (c.x - mu) / (np.sqrt(var + c.eps) if eps_inside else np.sqrt(var) + c.eps)
    return {"y": _per_channel(c.gamma) * x_hat + _per_channel(c.beta)}


def _running(c, momentum_of_batch=True, unbiased=True):
    mu, var, M = _stats(c)
    m = c.momentum if momentum_of_batch else 1 - c.momentum
    v = var * M / (M - 1) if unbiased else var
    return {"running_mean": (1 - m) * c.running_mean + m * mu.ravel(),
            "running_var": (1 - m) * c.running_var + m * v.ravel()}


def _dx(c, mean_term=True, var_term=True, with_gamma=True):
    mu, var, _ = _stats(c)
    inv_std = 1 / np.sqrt(var + c.eps)
    x_hat = (c.x - mu) * inv_std
    g = c.dy * (_per_channel(c.gamma) if with_gamma else 1)
    dx = g - (g.mean(axis=AXES, keepdims=True) if mean_term else 0) \
        - (x_hat * (g * x_hat).mean(axis=AXES, keepdims=True) if var_term else 0)
    return {"dx": inv_std * dx}


def _x_hat(c):
    mu, var, _ = _stats(c)
    return (c.x - mu) / np.sqrt(var + c.eps)


MISTAKES = (
    Mistake("the mean and variance run over the wrong axes: per channel, over (N, H, W) together, "
            "axis=(0, 2, 3)", lambda c: _y(c, axes=(2, 3))),
    Mistake("the mean and variance run over the batch alone: per channel they take N, H and W, axis=(0, 2, 3)",
            lambda c: _y(c, axes=(0,))),
    Mistake("eps goes inside the square root: (x - mu) / sqrt(var + eps)", lambda c: _y(c, eps_inside=False)),
    Mistake("x is normalised with the unbiased variance: normalise with the biased one, mean((x - mu)^2) "
            "(np.var's default); the unbiased one, var * M / (M - 1), is for running_var",
            lambda c: _y(c, unbiased=True)),
    Mistake("running_var is updated with the biased variance: PyTorch's rule takes the unbiased one, "
            "var * M / (M - 1) with M = N*H*W", lambda c: _running(c, unbiased=False)),
    Mistake("momentum weighs the new batch: running = (1 - momentum) * running + momentum * the batch's statistic",
            lambda c: _running(c, momentum_of_batch=False)),
    Mistake("running_mean and running_var did not change: update them in place (running_mean[...] = ...); "
            "'running_mean = ...' only rebinds the local name",
            lambda c: {"running_mean": c.running_mean, "running_var": c.running_var}),
    Mistake("in evaluation use running_mean and running_var, not the batch's statistics",
            lambda c: {"y (eval)": _y(c)["y"]}),
    Mistake("evaluation changed the running statistics: only a training forward pass updates them",
            lambda c: {"running_mean (eval)": _running(c)["running_mean"]}),
    Mistake("dx ignores that mu and var depend on x: in training, dx = (g - mean(g) - x_hat * mean(g * x_hat)) "
            "/ sqrt(var + eps) with g = dy * gamma", lambda c: _dx(c, mean_term=False, var_term=False)),
    Mistake("dx lacks the variance's term: - x_hat * mean(g * x_hat)", lambda c: _dx(c, var_term=False)),
    Mistake("dx lacks the mean's term: - mean(g)", lambda c: _dx(c, mean_term=False)),
    Mistake("dx lacks gamma: y = gamma * x_hat + beta, so the gradient reaching x_hat is g = dy * gamma",
            lambda c: _dx(c, with_gamma=False)),
    Mistake("dgamma = sum(dy): y = gamma * x_hat + beta, so dgamma = sum(dy * x_hat) over (N, H, W)",
            lambda c: {"dgamma": c.dy.sum(axis=AXES)}),
    Mistake("dgamma and dbeta are means: gamma and beta act on every value of the channel, so their gradients "
            "are sums over (N, H, W)", lambda c: {"dgamma": (c.dy * _x_hat(c)).mean(axis=AXES),
                                                  "dbeta": c.dy.mean(axis=AXES)}),
)

HINTS = (
    "mu and var are computed from every x of a channel. When one x moves, what else moves with it, and how "
    "does that reach every y of the channel? In evaluation, does anything depend on the batch?",
    "x_hat = (x - mu) / sqrt(var + eps), y = gamma * x_hat + beta. Backward with g = dy * gamma: "
    "dx = (g - g.mean(axes) - x_hat * (g * x_hat).mean(axes)) / sqrt(var + eps), axes = (0, 2, 3) with "
    "keepdims=True; dgamma = (dy * x_hat).sum(axes); dbeta = dy.sum(axes). Evaluation: dx = g / "
    "sqrt(running_var + eps). running_var takes var * M / (M - 1).",
    "x, x_hat, y, dy, g, dx (N, C, H, W); mu, var, 1/sqrt(var + eps) (1, C, 1, 1) with keepdims=True "
    "(or (C,), reshaped to (1, C, 1, 1) to broadcast); gamma, beta, dgamma, dbeta, running_mean, running_var (C,).",
)

STARTER = '''"""Exercise batchnorm2d: batch normalisation of (N, C, H, W) inputs, training and evaluation.

Training, per channel c over its M = N*H*W values (axes 0, 2, 3):
    mu    = mean(x)                 var = mean((x - mu)^2)         (biased: it normalises)
    x_hat = (x - mu) / sqrt(var + eps)
    y     = gamma * x_hat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu                   in place
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)    in place (unbiased)
Evaluation: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta; the running statistics stay.

Backward, with g = dy * gamma:
    dgamma = sum(dy * x_hat)        dbeta = sum(dy)                 (sums over N, H and W)
    training:   dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps)
    evaluation: dx = g / sqrt(running_var + eps)

Shapes: x, y, dy, dx (N, C, H, W); gamma, beta, running_mean, running_var, dgamma, dbeta (C,).
The forward pass returns (y, cache): cache is what your backward pass needs (any value you like).

The math:  {docs}
Check:     minicnn exercise check batchnorm2d          A hint:  minicnn exercise hint batchnorm2d
"""
import numpy as np


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """(y, cache); in training, running_mean and running_var are updated in place."""
    raise NotImplementedError("batchnorm2d_forward: replace this line with your code")


def batchnorm2d_backward(grad_output, cache, gamma):
    """(dx, dgamma, dbeta) from grad_output = dy and the cache your forward pass returned."""
    raise NotImplementedError("batchnorm2d_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="batchnorm2d", title="BatchNorm2d forward and backward (training and eval)",
    functions={"batchnorm2d_forward": ("y", "cache"), "batchnorm2d_backward": ("dx", "dgamma", "dbeta")},
    reference=REFERENCE, run=run, cases=cases, draw=draw, gradients=gradients,
    gradient_cases=lambda: [_case(np.random.default_rng(12), (3, 2, 2, 2))],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/regularisation.md#batchnorm2d",
    network="MnistBNCNN", shapes={"dgamma": "(C,)", "dbeta": "(C,)", "running_mean": "(C,)", "running_var": "(C,)"},
    drawn="shapes (M = N*H*W >= 2), momenta, eps")
