"""2-D convolution by im2col: a convolution is a matrix product over unfolded windows.

Notation (see :mod:`minicnn.backend.numpy_kernels`): N, C, H, W, OC (output
channels), KH, KW, SH, SW, PH, PW, OH, OW; ``P = OH*OW``, ``K = C*KH*KW``.

Forward, with the batch side by side: cols = col as (K, N*P)
    col  = im2col(x)                      (N, K, P)
    y[n] = W_mat @ col[n] + b             W_mat = W.reshape(OC, K)  ->  (N, OC, P)
         computed as one product W_mat @ cols (OC, N*P), then transpose01 swaps
         it to (N, OC, P) and adds b on the way

Backward, with the batch side by side: cols as above, dY as (OC, N*P) by transpose01
    dW    = dY @ cols^T                   (OC, K) -> (OC, C, KH, KW); one product sums over n and p
    db    = sum over n and p of dY
    dcols = W_mat^T @ dY                  (K, N*P), i.e. (N, K, P)
    dX    = col2im(dcols)                 the adjoint of im2col adds each column's
                                          gradient back onto its window

Docs: docs/convolution.md
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import kernels_for
from minicnn.backend.numpy_kernels import output_size
from minicnn.nn import init
from minicnn.nn._validate import check_array, check_dtype, check_generator, check_grad, is_positive_int, pair
from minicnn.nn.module import Module, backward_before_forward, default_float, new_parameter


class Conv2d(Module):
    """``y = W * x + b`` over (N, C, H, W) inputs; weight (OC, C, KH, KW), bias (OC,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=None, generator=None):
        super().__init__()
        name = f"Conv2d({in_channels}, {out_channels})"
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not is_positive_int(value):
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        check_generator(generator, name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", name, 1)
        self.stride = pair(stride, "stride", name, 1)
        self.padding = pair(padding, "padding", name, 0)
        dtype = dtype or default_float()
        KH, KW = self.kernel_size
        fan_in = self.in_channels * KH * KW
        self.weight = new_parameter(
            init.uniform_fan_in((self.out_channels, self.in_channels, KH, KW), fan_in, generator), dtype)
        self.bias = new_parameter(init.uniform_fan_in((self.out_channels,), fan_in, generator), dtype) if bias else None
        self._cache = None

    def _check(self, x):
        check_array(x, repr(self), 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        (KH, KW), (PH, PW) = self.kernel_size, self.padding
        H, W = x.shape[2:]
        if H + 2 * PH < KH or W + 2 * PW < KW:
            raise ValueError(f"{self!r}: input of spatial size {H}x{W} (padded {H + 2 * PH}x{W + 2 * PW}) "
                             f"is smaller than the kernel {KH}x{KW}")
        check_dtype(x, self.weight.dtype, repr(self))

    def per_sample(self) -> bool:
        return True

    def forward(self, x):
        self._check(x)
        N, _, H, W = x.shape
        OH = output_size(H, self.kernel_size[0], self.stride[0], self.padding[0])
        OW = output_size(W, self.kernel_size[1], self.stride[1], self.padding[1])
        kernels = kernels_for(x)
        col = kernels.im2col(x, self.kernel_size, self.stride, self.padding)         # (N, K, P)
        K = col.shape[1]
        w_mat = self.weight.data.reshape(self.out_channels, K)                       # (OC, K)
        # One matrix product for the whole batch (no copy for cols, see backward),
        # then (OC, N, P) -> (N, OC, P) with the bias added in the same pass.
        y = w_mat @ col.transpose(1, 0, 2).reshape(K, -1)                            # (OC, N*P)
        bias = None if self.bias is None else self.bias.data
        y = kernels.transpose01(y.reshape(self.out_channels, N, OH * OW), bias)      # (N, OC, P)
        y = y.reshape(N, self.out_channels, OH, OW)
        self._cache = (col, x.shape, y.shape)
        return y

    def backward(self, grad_output):
        if self._cache is None:
            raise backward_before_forward(repr(self))
        col, x_shape, y_shape = self._cache
        check_grad(grad_output, y_shape, repr(self))
        (N, K, P), OC = col.shape, self.out_channels
        # The batch side by side, so that dW and dcols are one matrix product each.
        # (No copy for cols: im2col stores col K-major, see numpy_kernels.im2col.)
        cols = col.transpose(1, 0, 2).reshape(K, -1)                                 # (K, N*P)
        dy = kernels_for(grad_output).transpose01(grad_output.reshape(N, OC, P))     # (OC, N, P)
        dy = dy.reshape(OC, -1)                                                      # (OC, N*P)
        w_mat = self.weight.data.reshape(OC, K)
        self.weight.accumulate_grad((dy @ cols.T).reshape(self.weight.shape))
        if self.bias is not None:
            self.bias.accumulate_grad(dy.sum(axis=1))
        dcol = (w_mat.T @ dy).reshape(K, N, P).transpose(1, 0, 2)                   # (N, K, P)
        return kernels_for(dcol).col2im(dcol, x_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s
