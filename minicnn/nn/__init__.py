"""Layers, containers and losses, each with its forward and backward pass side by side.

The math they call is in :mod:`minicnn.nn.functional`; :func:`fuse` puts the fused modules of
:mod:`minicnn.nn.fused` in the place of the layer runs they stand for, as an explicit step.
"""
from minicnn.nn.activation import LogSoftmax, ReLU, Softmax
from minicnn.nn.batchnorm import BatchNorm2d
from minicnn.nn.conv import Conv2d
from minicnn.nn.dropout import Dropout
from minicnn.nn.linear import Flatten, Linear
from minicnn.nn.loss import CrossEntropyLoss, NLLLoss
from minicnn.nn.containers import Sequential
from minicnn.nn.fused import ConvReLU, ConvReLUMaxPool2d
from minicnn.nn.fusion import fuse
from minicnn.nn.grad_mode import is_grad_enabled, no_grad
from minicnn.nn.module import Module
from minicnn.nn.parameter import Parameter
from minicnn.nn.state import StateDictError
from minicnn.nn.pooling import MaxPool2d
from minicnn.nn.rescaling import Rescaling

__all__ = [
    "BatchNorm2d", "Conv2d", "ConvReLU", "ConvReLUMaxPool2d", "CrossEntropyLoss", "Dropout", "Flatten", "Linear", "LogSoftmax",
    "MaxPool2d", "Module", "NLLLoss", "Parameter", "ReLU", "Rescaling", "Sequential", "Softmax", "StateDictError",
    "fuse", "is_grad_enabled", "no_grad",
]
