"""Exercise linear: a fully connected layer, forward and backward.

    y  = x @ W^T + b          x (N, in), W (out, in), b (out,), y (N, out)
    dW = dy^T @ x             db = sum over n of dy[n]          dx = dy @ W

The learner writes ``linear_forward(x, weight, bias)`` and ``linear_backward(grad_output, x, weight)``;
the reference is :class:`minicnn.nn.Linear` itself, given the same weight and bias.  The first case
is not square, so a transposed product shows as a wrong shape; the second is, so it shows in the
values.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn import nn
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences


def _layer(weight, bias):
    """An nn.Linear holding ``weight`` and ``bias``."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
    layer.weight.data, layer.bias.data = weight.copy(), bias.copy()
    return layer


def linear_forward(x, weight, bias):
    with nn.no_grad():
        return _layer(weight, bias)(x)


def linear_backward(grad_output, x, weight):
    layer = _layer(weight, np.zeros(len(weight), weight.dtype))
    layer(x)
    dx = layer.backward(grad_output)
    return dx, layer.weight.grad, layer.bias.grad


REFERENCE = SimpleNamespace(linear_forward=linear_forward, linear_backward=linear_backward)


def run(f, c):
    dx, dweight, dbias = f.linear_backward(c.dy, c.x, c.weight)
    return {"y": f.linear_forward(c.x, c.weight, c.bias), "dx": dx, "dweight": dweight, "dbias": dbias}


def _case(rng, N, n_in, n_out):
    return Case(x=array(rng, (N, n_in)), weight=array(rng, (n_out, n_in)), bias=array(rng, (n_out,)),
                dy=array(rng, (N, n_out)))


def cases():
    rng = np.random.default_rng(1)
    return [_case(rng, 4, 3, 5), _case(rng, 3, 3, 3)]


def draw(d):
    return _case(np.random.default_rng(d.integer(0, 2**16)), d.integer(1, 4), d.integer(1, 5), d.integer(1, 5))


def gradients(f, c):
    dx, dweight, dbias = f.linear_backward(c.dy, c.x, c.weight)
    return ({"dx": dx, "dweight": dweight, "dbias": dbias},
            central_differences(f.linear_forward, c.dy, x=c.x, weight=c.weight, bias=c.bias))


MISTAKES = (
    Mistake("dweight = x.T @ dy is the transpose, (in, out): dW = dy.T @ x is (out, in), the weight's shape",
            lambda c: {"dweight": c.x.T @ c.dy}),
    Mistake("dx = dy @ W.T: W is (out, in), so dx = dy @ W, (N, out) @ (out, in) = (N, in)",
            lambda c: {"dx": c.dy @ c.weight.T}),
    Mistake("dbias is the mean of dy over the batch: b is added to every sample, so its gradient is the sum over n",
            lambda c: {"dbias": c.dy.mean(axis=0)}),
    Mistake("dbias keeps the batch axis: sum dy over n, dy.sum(axis=0)", lambda c: {"dbias": c.dy}),
    Mistake("dweight is averaged over the batch: it is the sum over n (the loss's 1/N is already in dy)",
            lambda c: {"dweight": c.dy.T @ c.x / len(c.x)}),
    Mistake("y = x @ W: the weight is (out, in), as in PyTorch, so y = x @ W.T + b",
            lambda c: {"y": c.x @ c.weight + c.bias}),
    Mistake("y has no bias: y = x @ W.T + b", lambda c: {"y": c.x @ c.weight.T}),
)

HINTS = (
    "y[n, o] = sum over i of x[n, i] * W[o, i] + b[o]. Which entries of y does one W[o, i] change, and by how "
    "much? And one b[o]?",
    "y = x @ W.T + b;  dW = dy.T @ x;  db = dy.sum(axis=0);  dx = dy @ W. Each is a sum over the index that "
    "the product eliminates (n for dW and db, o for dx).",
    "x (N, in), W (out, in), b (out,), y and dy (N, out);  dy.T (out, N) @ x (N, in) = dW (out, in);  "
    "dy (N, out) @ W (out, in) = dx (N, in);  db (out,).  Every gradient has the shape of what it is the "
    "gradient of.",
)

STARTER = '''"""Exercise linear: a fully connected layer, forward and backward.

    y  = x @ W^T + b          y[n, o] = sum over i of x[n, i] * W[o, i] + b[o]
    dW = dy^T @ x             dW[o, i] = sum over n of dy[n, o] * x[n, i]
    db = sum over n of dy[n]
    dx = dy @ W               dx[n, i] = sum over o of dy[n, o] * W[o, i]

Shapes: x (N, in), W = weight (out, in) as in PyTorch, b = bias (out,), y and dy (N, out).
Every gradient has the shape of what it is the gradient of; float32 in, float32 out.

The math:  {docs}
Check:     minicnn exercise check linear          A hint:  minicnn exercise hint linear
"""
import numpy as np


def linear_forward(x, weight, bias):
    """y = x @ weight.T + bias, (N, out)."""
    raise NotImplementedError("linear_forward: replace this line with your code")


def linear_backward(grad_output, x, weight):
    """(dx, dweight, dbias) from grad_output = dy (N, out) and the forward's input x (N, in)."""
    raise NotImplementedError("linear_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="linear", title="Linear forward and backward",
    functions={"linear_forward": ("y",), "linear_backward": ("dx", "dweight", "dbias")}, reference=REFERENCE,
    run=run, cases=cases, draw=draw, gradients=gradients, gradient_cases=lambda: cases()[:1],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/layers.md#linear",
    shapes={"y": "(N, out)", "dx": "(N, in)", "dweight": "(out, in)", "dbias": "(out,)"})
