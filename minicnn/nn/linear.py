"""Fully connected layer and Flatten.

Linear, with x (N, in), W (out, in), b (out,)
    y  = x @ W^T + b
    dW = dy^T @ x        db = sum_n dy[n]        dx = dy @ W

Flatten (start_dim=1)
    (N, C, H, W) -> (N, C*H*W); backward reshapes the gradient back.

Docs: docs/layers.md#linear
"""
from __future__ import annotations

import math

from minicnn.nn import init
from minicnn.nn._validate import check_array, check_dtype
from minicnn.nn.module import Module
from minicnn.nn.parameter import default_float, new_parameter
from minicnn.validate import check_generator, is_positive_int


class Linear(Module):
    """``y = x @ W.T + b``; weight (out_features, in_features), as in PyTorch."""

    def __init__(self, in_features, out_features, bias=True, dtype=None, generator=None):
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            if not is_positive_int(value):
                raise ValueError(f"Linear: {arg} must be a positive int, got {value!r}")
        check_generator(generator, "Linear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        dtype = dtype or default_float()
        self.weight = new_parameter(
            init.uniform_fan_in((self.out_features, self.in_features), self.in_features, generator), dtype)
        self.bias = new_parameter(
            init.uniform_fan_in((self.out_features,), self.in_features, generator), dtype) if bias else None

    def forward(self, x):
        check_array(x, repr(self), 2, "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected {self.in_features} input features, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        check_dtype(x, self.weight.dtype, repr(self))
        y = x @ self.weight.data.T                                   # y = x @ W^T + b
        if self.bias is not None:
            y += self.bias.data
        self.save_for_backward(x, output=y)
        return y

    def backward(self, grad_output):
        (x,) = self.saved_tensors(grad_output)
        self.weight.accumulate_grad(grad_output.T @ x)               # dW = dy^T @ x
        if self.bias is not None:
            self.bias.accumulate_grad(grad_output.sum(axis=0))       # db = sum_n dy[n]
        return grad_output @ self.weight.data                        # dx = dy @ W

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Merge every dimension after the first: (N, ...) -> (N, prod(...))."""

    def forward(self, x):
        if not hasattr(x, "ndim") or x.ndim < 1:
            raise ValueError(f"Flatten: expected an array with a batch dimension, got {getattr(x, 'shape', x)!r}")
        y = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: that fails for an empty batch
        self.save_for_backward(x.shape, output=y)
        return y

    def backward(self, grad_output):
        (x_shape,) = self.saved_tensors(grad_output)
        return grad_output.reshape(x_shape)
