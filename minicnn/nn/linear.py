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

import numpy as np

from minicnn.nn import init
from minicnn.nn._validate import check_array, check_dtype, check_generator, check_grad, is_positive_int
from minicnn.nn.module import Module, backward_before_forward, default_float, new_parameter


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
        self._cache = None

    def per_sample(self) -> bool:
        return True

    def forward(self, x):
        check_array(x, repr(self), 2, "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected {self.in_features} input features, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        check_dtype(x, self.weight.dtype, repr(self))
        self._cache = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_output):
        x = self._cache
        if x is None:
            raise backward_before_forward(repr(self))
        check_grad(grad_output, (x.shape[0], self.out_features), repr(self))
        self.weight.accumulate_grad(grad_output.T @ x)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_output.sum(axis=0))
        return grad_output @ self.weight.data

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Merge every dimension after the first: (N, ...) -> (N, prod(...))."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def per_sample(self) -> bool:
        return True

    def forward(self, x):
        if not hasattr(x, "ndim") or x.ndim < 1:
            raise ValueError(f"Flatten: expected an array with a batch dimension, got {getattr(x, 'shape', x)!r}")
        self._cache = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: that fails for an empty batch

    def backward(self, grad_output):
        if self._cache is None:
            raise backward_before_forward("Flatten")
        x_shape = self._cache
        check_grad(grad_output, (x_shape[0], math.prod(x_shape[1:])), "Flatten")
        return grad_output.reshape(x_shape)
