"""2-D convolution by im2col: a convolution is a matrix product over unfolded windows.

Notation (see :mod:`minicnn.nn.functional`): N, C, H, W, OC (output
channels), KH, KW, SH, SW, PH, PW, OH, OW; ``P = OH*OW``, ``K = C*KH*KW``.
W is the input's width; the weight is ``weight`` (OC, C, KH, KW), as a
matrix ``w_mat``.

Forward (:func:`~minicnn.nn.functional.conv2d`)
    col  = im2col(x)                      (N, K, P)
    y[n] = w_mat @ col[n] + b             w_mat = weight.reshape(OC, K)  ->  (N, OC, P)

Backward (:func:`~minicnn.nn.functional.conv2d_backward`), the batch side by side:
cols = col as (K, N*P), dY as (OC, N*P)
    dweight = dY @ cols^T                 (OC, K) -> (OC, C, KH, KW); one product sums over n and p
    dbias   = sum over n and p of dY
    dx      = col2im(w_mat^T @ dY)        the adjoint of im2col adds each column's
                                          gradient back onto its window

Docs: docs/convolution.md
"""
from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn import init
from minicnn.nn._validate import check_array, check_dtype, check_window, window_args
from minicnn.nn.module import Module
from minicnn.nn.parameter import default_float, new_parameter
from minicnn.validate import check_generator, is_positive_int


class Conv2d(Module):
    """``y = weight * x + bias`` (``*`` the convolution) over (N, C, H, W) inputs; weight (OC, C, KH, KW), bias (OC,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=None, generator=None):
        super().__init__()
        name = f"Conv2d({in_channels}, {out_channels})"
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not is_positive_int(value):
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        check_generator(generator, name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = window_args(name, kernel_size, stride, padding)
        dtype = dtype or default_float()
        KH, KW = self.kernel_size
        fan_in = self.in_channels * KH * KW
        self.weight = new_parameter(
            init.uniform_fan_in((self.out_channels, self.in_channels, KH, KW), fan_in, generator), dtype)
        self.bias = new_parameter(init.uniform_fan_in((self.out_channels,), fan_in, generator), dtype) if bias else None

    def _check(self, x):
        check_array(x, repr(self), 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected {self.in_channels} input channels, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        check_window(x, self.kernel_size, self.padding, repr(self), "kernel")
        check_dtype(x, self.weight.dtype, repr(self))

    def forward(self, x):
        self._check(x)
        bias = None if self.bias is None else self.bias.data
        y, saved = F.conv2d(x, self.weight.data, bias, self.stride, self.padding)  # saved: col = im2col(x)
        self.save_for_backward(saved, x.shape, output=y)
        return y

    def backward(self, grad_output):
        return self._backward(grad_output, input_grad=True)

    def parameter_backward(self, grad_output) -> None:
        self._backward(grad_output, input_grad=False)  # no dX: neither W_mat^T @ dY nor col2im

    def _backward(self, grad_output, input_grad):
        saved, x_shape = self.saved_tensors(grad_output)
        dx, dweight, dbias = F.conv2d_backward(grad_output, saved, self.weight.data, x_shape,
                                               self.stride, self.padding, input_grad=input_grad)
        self.weight.accumulate_grad(dweight)                                      # dY @ cols^T
        if self.bias is not None:
            self.bias.accumulate_grad(dbias)                                      # db = sum dY
        return dx                                                                 # col2im(w_mat^T @ dY)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s
