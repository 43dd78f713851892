"""Max-pooling: each output is the largest input in its window.

Forward
    y[n, c, oh, ow] = max over (i, j) of x_pad[n, c, oh*SH + i, ow*SW + j]
    where the border is padded with -inf, so padding never wins.

Backward
    The max is locally the identity on the winning element and constant in
    the others, so dL/dx is dL/dy routed to the argmax of each window (summed
    where overlapping windows share a winner) and zero elsewhere.  On ties the
    first maximum in window order wins, as in PyTorch.

Docs: docs/layers.md#maxpool2d
"""
from __future__ import annotations

from minicnn.backend import kernels_for
from minicnn.nn._validate import check_array, check_grad, pair
from minicnn.nn.module import Module, backward_before_forward, is_grad_enabled


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = f"MaxPool2d(kernel_size={kernel_size!r})"
        self.kernel_size = pair(kernel_size, "kernel_size", name, 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name, 1)
        self.padding = pair(padding, "padding", name, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel size "
                             f"{self.kernel_size} (a window must contain at least one input)")
        self._cache = None

    def per_sample(self) -> bool:
        return True

    def forward(self, x):
        check_array(x, repr(self), 4, "(N, C, H, W)")
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        H, W = x.shape[2:]
        if H + 2 * PH < KH or W + 2 * PW < KW:
            raise ValueError(f"{self!r}: input of spatial size {H}x{W} (padded {H + 2 * PH}x{W + 2 * PW}) "
                             f"is smaller than the window {KH}x{KW}")
        # Under no_grad no backward follows, so the kernel need not record the winners.
        keep = is_grad_enabled()
        y, argmax = kernels_for(x).maxpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                                     with_argmax=keep)
        self._cache = (argmax, x.shape, y.shape) if keep else None
        return y

    def backward(self, grad_output):
        if self._cache is None:
            raise backward_before_forward(repr(self))
        argmax, x_shape, y_shape = self._cache
        check_grad(grad_output, y_shape, repr(self))
        return kernels_for(grad_output).maxpool2d_backward(
            grad_output, argmax, x_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
