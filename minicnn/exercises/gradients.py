"""The numerical side of a gradient check: central differences of ``s = <G, forward(inputs)>``.

For a forward pass y = f(x, w, ...) and a fixed array G of y's shape (the ``grad_output`` a
backward pass is given), the backward pass must return ds/dx, ds/dw, ... of the scalar

    s = sum(G * f(x, w, ...))

and each of those can be measured entry by entry from the forward pass alone:

    ds/dx_i  ~  (s(x + h e_i) - s(x - h e_i)) / (2h)          error O(h^2)

in float64, on arrays of a few dozen entries (the cases of a gradient check are small).
docs/gradcheck.md derives the error and explains why float64.  A forward pass that returns a number
(a loss) is differentiated as it is (G is None).

Docs: docs/exercises.md
"""
from __future__ import annotations

import numpy as np

#: The step h of the central differences.
STEP = 1e-6


def central_differences(forward, G, **inputs) -> dict:
    """``{"dx": ds/dx, "dweight": ds/dweight, ...}`` for each array of ``inputs``, by central differences.

    ``forward(**inputs)`` returns y (an array, or a tuple whose first entry is y) or a number (then G is None).
    """
    def s(values):
        y = forward(**values)
        if isinstance(y, tuple):
            y = y[0]
        y = np.asarray(y, dtype=np.float64)
        return float(y) if G is None else float(np.sum(G * y))

    values = {name: np.array(value, dtype=np.float64) for name, value in inputs.items()}
    grads = {}
    for name, x in values.items():
        grad = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            kept = x[i]
            x[i] = kept + STEP
            up = s(values)
            x[i] = kept - STEP
            down = s(values)
            x[i] = kept
            grad[i] = (up - down) / (2 * STEP)
        grads[f"d{name}"] = grad
    return grads
