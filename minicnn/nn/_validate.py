"""Input checks shared by the layers: clear ``ValueError``s instead of NumPy tracebacks."""
from __future__ import annotations

import numpy as np


def pair(value, name: str, layer: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2)`` stays; anything else is a clear error."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {tuple(value)}")
    return int(value[0]), int(value[1])


def check_array(x, layer: str, ndim: int, layout: str):
    """``x`` must be a floating array with ``ndim`` dimensions."""
    if not hasattr(x, "ndim") or not hasattr(x, "dtype"):
        raise ValueError(f"{layer}: expected an array {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{layer}: expected a {ndim}-D input {layout}, got shape {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{layer}: expected a floating-point input, got dtype {x.dtype}")


def check_dtype(x, expected, layer: str):
    """A parametrised layer computes in its parameters' dtype; mixing is an error, as in PyTorch."""
    if x.dtype != expected:
        raise ValueError(
            f"{layer}: input dtype {x.dtype} does not match the layer's {np.dtype(expected)}; "
            f"convert the input (x.astype(np.{np.dtype(expected)})) or the model (model.to(np.{x.dtype}))"
        )
