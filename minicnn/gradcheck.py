"""Check a backward pass against central finite differences.

For a module ``f`` with output y = f(x; theta), pick a fixed random
projection G of the output's shape and test the scalar s = <G, f(x)>.  The
backward pass, given ``grad_output = G``, must return ds/dx and accumulate
ds/dtheta.  Numerically, element by element,

    ds/dx_i  ~  (s(x + h e_i) - s(x - h e_i)) / (2h)

whose error is O(h^2) (the h and h^3 terms of the two Taylor series cancel).
Everything runs in float64 on a copy of the module, so rounding (about
1e-16 / h) stays far below the tolerance.  A value passes when
``|analytic - numeric| <= atol + rtol * |numeric|``.

Tensors with more than ``max_elements`` entries are checked along
``directions`` random unit directions d instead (Chainer's
``check_backward`` does the same): ``<grad, d>`` against
``(s(x + h d) - s(x - h d)) / (2h)``.

Losses (whose forward returns a Python float) are checked the same way with
s = the loss itself and ``backward()`` called without arguments.

Docs: docs/gradcheck.md
"""
from __future__ import annotations

import copy

import numpy as np

from minicnn.backend import get_array_module, to_numpy
from minicnn.nn.module import Module
from minicnn.validate import is_finite_real


class GradcheckError(AssertionError):
    """The analytic gradient of a tensor disagrees with the numeric one."""


def _rng_owners(module):
    """Modules that draw random numbers (Dropout): their generator state is replayed per call."""
    if not isinstance(module, Module):
        return []
    return [m for m in module.modules() if isinstance(getattr(m, "generator", None), np.random.Generator)]


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, max_elements=4096, directions=16, seed=0):
    """Compare ``fn``'s backward pass with central differences; return True or raise.

    fn      : a Module (its backward takes ``grad_output``) or a loss (forward
              returns a float, ``backward()`` takes nothing).
    inputs  : the first is differentiated; the others (targets) are passed as
              they are, floating ones converted to float64.

    Checks the input and every parameter.  Raises :class:`GradcheckError`
    naming the tensor, the worst index, and the analytic and numeric values;
    also if the backward pass changed its input or ``grad_output``.
    """
    if not callable(fn) or not hasattr(fn, "backward"):
        raise TypeError(f"gradcheck needs a module or loss with a backward method, got {type(fn).__name__}")
    if not inputs:
        raise TypeError("gradcheck needs at least one input to differentiate")
    x0 = inputs[0]
    if not hasattr(x0, "dtype") or not np.issubdtype(x0.dtype, np.floating):
        raise TypeError(f"gradcheck: the first input must be a floating-point array, got "
                        f"{getattr(x0, 'dtype', type(x0).__name__)}")
    xp = get_array_module(x0)
    if x0.size == 0 or not bool(xp.isfinite(x0).all()):
        raise ValueError(f"gradcheck: the first input must be a non-empty array of finite values (finite "
                         f"differences of NaN or inf mean nothing), got shape {tuple(x0.shape)}"
                         + ("" if x0.size == 0 else f" with {int((~xp.isfinite(x0)).sum())} NaN or inf"))
    for name, value, smallest in (("eps", eps, "> 0"), ("atol", atol, ">= 0"), ("rtol", rtol, ">= 0")):
        if not is_finite_real(value) or value < 0 or (value == 0 and smallest == "> 0"):
            raise ValueError(f"gradcheck: {name} must be a finite number {smallest}, got {value!r}")
    for name, value, smallest in (("max_elements", max_elements, 0), ("directions", directions, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < smallest:
            raise ValueError(f"gradcheck: {name} must be an int >= {smallest}, got {value!r}")
    f = copy.deepcopy(fn)
    if isinstance(f, Module):
        f.to(np.float64)
    x = x0.astype(np.float64, copy=True)
    rest = tuple(a.astype(np.float64) if hasattr(a, "dtype") and np.issubdtype(a.dtype, np.floating) else a
                 for a in inputs[1:])
    owners = _rng_owners(f)
    rng_states = [m.generator.bit_generator.state for m in owners]
    rng = np.random.default_rng(seed)
    projection = None

    def evaluate():
        """s = <G, f(x)>, with every random draw replayed identically."""
        nonlocal projection
        for m, state in zip(owners, rng_states):
            m.generator.bit_generator.state = state
        out = f(x, *rest)
        if isinstance(out, float):
            return out, out
        if projection is None:
            projection = xp.asarray(rng.standard_normal(out.shape))
        return float((out * projection).sum()), out

    # Analytic gradients.
    params = list(f.named_parameters()) if isinstance(f, Module) else []
    for _, p in params:
        p.grad = None
    x_before = x.copy()
    _, out = evaluate()
    if isinstance(out, float):
        grad_x = f.backward()
    else:
        g_before = projection.copy()
        grad_x = f.backward(projection)
        if not bool((projection == g_before).all()):
            raise GradcheckError(f"{type(fn).__name__}.backward modified its grad_output in place")
    if not bool((x == x_before).all()):
        raise GradcheckError(f"{type(fn).__name__} modified its input in place")
    if grad_x is None or tuple(grad_x.shape) != tuple(x.shape):
        raise GradcheckError(f"{type(fn).__name__}.backward returned a gradient of shape "
                             f"{getattr(grad_x, 'shape', None)}, expected {tuple(x.shape)}")
    checks = [("input", x, grad_x)]
    for name, p in params:
        g = p.grad if p.grad is not None else xp.zeros_like(p.data)
        checks.append((name, p.data, g))

    for name, array, analytic in checks:
        _check_tensor(name, array, to_numpy(analytic), evaluate, eps, atol, rtol, max_elements, directions, rng, xp)
    return True


def _check_tensor(name, array, analytic, evaluate, eps, atol, rtol, max_elements, directions, rng, xp):
    # ``array`` is perturbed in place (by index, so any memory layout works): the module reads it.
    if array.size <= max_elements:
        labels = [tuple(int(i) for i in np.unravel_index(k, array.shape)) for k in range(array.size)]
        numeric = np.empty(array.size)
        for k, index in enumerate(labels):
            orig = array[index].item()
            array[index] = orig + eps
            plus, _ = evaluate()
            array[index] = orig - eps
            minus, _ = evaluate()
            array[index] = orig
            numeric[k] = (plus - minus) / (2 * eps)
        analytic = analytic.reshape(-1)
    else:
        orig = array.copy()
        numeric = np.empty(directions)
        analytic_dir = np.empty(directions)
        for k in range(directions):
            d = rng.standard_normal(array.shape)
            d /= np.linalg.norm(d)
            d_dev = xp.asarray(d)
            array[...] = orig + eps * d_dev
            plus, _ = evaluate()
            array[...] = orig - eps * d_dev
            minus, _ = evaluate()
            array[...] = orig
            numeric[k] = (plus - minus) / (2 * eps)
            analytic_dir[k] = float((analytic * d).sum())
        analytic = analytic_dir
        labels = [f"random direction {k}" for k in range(directions)]
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    worst = int(np.argmax(excess))
    if not np.isfinite(analytic).all() or excess[worst] > 0:
        if not np.isfinite(analytic).all():
            worst = int(np.argmin(np.isfinite(analytic)))
        raise GradcheckError(
            f"gradient of {name} (shape {tuple(array.shape)}) is wrong at {labels[worst]}: "
            f"analytic {analytic[worst]:.10g}, numeric {numeric[worst]:.10g} "
            f"(tolerance atol={atol} + rtol={rtol} * |numeric|)"
        )
