"""Input checks shared by the layers: clear ``ValueError``s instead of NumPy tracebacks.

The words for plain arguments (numbers, ints, generators) are those of
:mod:`minicnn.validate`, re-exported here for the layers.
"""
from __future__ import annotations

import numpy as np

from minicnn.validate import check_generator, is_finite_real, is_int, is_positive_int, is_real, satisfies  # noqa: F401


def pair(value, name: str, layer: str, minimum: int) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2)`` stays; anything else is a clear error."""
    if is_int(value, minimum=-np.inf):
        value = (int(value), int(value))
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(is_int(v, -np.inf) for v in value):
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {tuple(value)}")
    return int(value[0]), int(value[1])


def window_args(layer: str, kernel_size, stride, padding) -> tuple[tuple[int, int], ...]:
    """``(kernel_size, stride, padding)`` of a conv or pool layer as (height, width) pairs;
    ``stride=None`` means the kernel size (the pooling default)."""
    kernel_size = pair(kernel_size, "kernel_size", layer, 1)
    stride = kernel_size if stride is None else pair(stride, "stride", layer, 1)
    return kernel_size, stride, pair(padding, "padding", layer, 0)


def check_window(x, kernel_size, padding, layer: str, what: str) -> None:
    """The padded (H, W) of ``x`` (N, C, H, W), an array or its shape, must hold at least one ``what``
    (a kernel, a window)."""
    (KH, KW), (PH, PW) = kernel_size, padding
    H, W = getattr(x, "shape", x)[2:]
    if H + 2 * PH < KH or W + 2 * PW < KW:
        raise ValueError(f"{layer}: input of spatial size {H}x{W} (padded {H + 2 * PH}x{W + 2 * PW}) "
                         f"is smaller than the {what} {KH}x{KW}")


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


def check_grad(grad_output, shape, layer: str):
    """``backward``'s ``grad_output`` must be a floating array of the forward output's ``shape``."""
    shape = tuple(shape)
    if not hasattr(grad_output, "shape") or not hasattr(grad_output, "dtype"):
        raise ValueError(f"{layer}.backward: expected grad_output as an array of shape {shape} "
                         f"(the shape of the forward output), got {type(grad_output).__name__}")
    if tuple(grad_output.shape) != shape:
        raise ValueError(f"{layer}.backward: expected grad_output of shape {shape} (the shape of the "
                         f"forward output), got {tuple(grad_output.shape)}")
    if not np.issubdtype(grad_output.dtype, np.floating):
        raise ValueError(f"{layer}.backward: expected a floating-point grad_output, got dtype {grad_output.dtype}")
