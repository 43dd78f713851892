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

from minicnn.nn import functional as F
from minicnn.nn._validate import check_array, check_window, window_args
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.module import Module


class MaxPool2d(Module):
    """Max over ``kernel_size`` windows; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = f"MaxPool2d(kernel_size={kernel_size!r})"
        self.kernel_size, self.stride, self.padding = window_args(name, kernel_size, stride, padding)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel size "
                             f"{self.kernel_size} (a window must contain at least one input)")

    def forward(self, x):
        check_array(x, repr(self), 4, "(N, C, H, W)")
        check_window(x, self.kernel_size, self.padding, repr(self), "window")
        # y = the max of each window; argmax = which element of the window it was, all that
        # backward needs (under no_grad no backward follows, so the kernel need not record it).
        keep = is_grad_enabled()
        y, argmax = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding, with_argmax=keep)
        self.save_for_backward(argmax, x.shape, output=y)
        return y

    def backward(self, grad_output):
        argmax, x_shape = self.saved_tensors(grad_output)
        # dL/dx: each window's gradient goes to its argmax (summed where windows share a winner).
        return F.maxpool2d_backward(grad_output, argmax, x_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
