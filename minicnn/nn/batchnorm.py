"""Batch normalisation over the channels of (N, C, H, W) inputs.

Training, per channel c over the M = N*H*W values of the batch
    mu = mean(x)     var = mean((x - mu)^2)          (biased, used to normalise)
    x_hat = (x - mu) / sqrt(var + eps)
    y = gamma * x_hat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)

Backward (training), with g = dy * gamma
    dgamma = sum(dy * x_hat)        dbeta = sum(dy)
    dx = (1 / sqrt(var + eps)) * (g - mean(g) - x_hat * mean(g * x_hat))
    (mu and var depend on every x of the channel: the two mean terms are
    their contributions; docs/regularisation.md derives them.)

Evaluation uses the running statistics, so the layer is a fixed affine map
    y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
    dx = dy * gamma / sqrt(running_var + eps)

Docs: docs/regularisation.md#batchnorm2d
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module, get_backend
from minicnn.nn._validate import check_array, check_dtype
from minicnn.nn.module import Module
from minicnn.nn.parameter import default_float, new_parameter
from minicnn.validate import is_finite_real, is_positive_int, is_real, satisfies


class BatchNorm2d(Module):
    """Normalise each channel with batch statistics (train) or running statistics (eval)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=None):
        super().__init__()
        if not is_positive_int(num_features):
            raise ValueError(f"BatchNorm2d: num_features must be a positive int, got {num_features!r}")
        if not (is_real(momentum) and satisfies(momentum, "in [0, 1]")):
            raise ValueError(f"BatchNorm2d: momentum must be a number in [0, 1], got {momentum!r}")
        if not (is_finite_real(eps) and satisfies(eps, "> 0")):
            raise ValueError(f"BatchNorm2d: eps must be a finite number > 0, got {eps!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        dtype = dtype or default_float()
        self.weight = new_parameter(np.ones(self.num_features), dtype)   # gamma
        self.bias = new_parameter(np.zeros(self.num_features), dtype)    # beta
        backend = get_backend()
        self.register_buffer("running_mean", backend.asarray(np.zeros(self.num_features), dtype=dtype))
        self.register_buffer("running_var", backend.asarray(np.ones(self.num_features), dtype=dtype))
        self.register_buffer("num_batches_tracked", backend.asarray(np.array(0), dtype=np.int64))

    def forward(self, x):
        check_array(x, repr(self), 4, "(N, C, H, W)")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected {self.num_features} channels, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        check_dtype(x, self.weight.dtype, repr(self))
        xp = get_array_module(x)
        axes = (0, 2, 3)
        gamma = self.weight.data.reshape(1, -1, 1, 1)
        beta = self.bias.data.reshape(1, -1, 1, 1)
        if self.training:
            M = x.shape[0] * x.shape[2] * x.shape[3]
            if M < 2:
                raise ValueError(f"{self!r}: training needs more than one value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            mu = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = x.dtype.type(self.momentum)
            self.running_mean = (1 - m) * self.running_mean + m * mu
            self.running_var = (1 - m) * self.running_var + m * var * x.dtype.type(M / (M - 1))
            self.num_batches_tracked = xp.asarray(self.num_batches_tracked + 1)  # stays a 0-d array
        else:
            mu, var = self.running_mean, self.running_var
        inv_std = (1.0 / xp.sqrt(var + x.dtype.type(self.eps))).astype(x.dtype)
        x_hat = (x - mu.reshape(1, -1, 1, 1)) * inv_std.reshape(1, -1, 1, 1)
        y = gamma * x_hat + beta
        self.save_for_backward(x_hat, inv_std, self.training, output=y)
        return y

    def backward(self, grad_output):
        x_hat, inv_std, training = self.saved_tensors(grad_output)
        axes = (0, 2, 3)
        self.weight.accumulate_grad((grad_output * x_hat).sum(axis=axes))
        self.bias.accumulate_grad(grad_output.sum(axis=axes))
        g = grad_output * self.weight.data.reshape(1, -1, 1, 1)
        inv_std = inv_std.reshape(1, -1, 1, 1)
        if not training:
            return g * inv_std
        return inv_std * (g - g.mean(axis=axes, keepdims=True)
                          - x_hat * (g * x_hat).mean(axis=axes, keepdims=True))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
