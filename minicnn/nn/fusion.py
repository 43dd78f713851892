"""Inference fusion: a Conv2d -> ReLU -> MaxPool2d run of a Sequential as one kernel call.

Under :func:`minicnn.no_grad` nothing is kept for a backward pass, so the
convolution's output and ReLU's need not exist as arrays of their own:

    z = maxpool2d(relu(conv2d(x)))       one call of F.conv2d_relu_maxpool2d

Its reference is the three functions one after the other, so every backend
gives the same numbers as the layers run one by one; the Numba backend's
override pools each plane of the product as it stores it, and never writes
the full-size output (for MnistCNN's conv1 at a block of 128 images, 12.8 MB
that ReLU would read and write again and max-pooling read once more).
:meth:`minicnn.nn.Sequential.forward` takes this path for every such run
when gradients are off; with them on, each layer runs and keeps what its
backward needs.

Docs: docs/backends.md#inference-fusion
"""
from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn.activation import ReLU
from minicnn.nn.conv import Conv2d
from minicnn.nn.pooling import MaxPool2d
from minicnn.nn.unfold import window

#: The layer types of a fusable run, exactly (a subclass may compute something else).
RUN = (Conv2d, ReLU, MaxPool2d)


def fusable(layers) -> bool:
    """Whether ``layers`` (a slice of a Sequential's children) is a Conv2d, a ReLU and a MaxPool2d,
    none of them with a ``forward`` of its own: a layer whose forward is wrapped (a hook, such as
    :func:`minicnn.summary.summary`'s shape recorder) runs as itself."""
    return (len(layers) == len(RUN) and all(type(layer) is kind for layer, kind in zip(layers, RUN))
            and not any("forward" in vars(layer) for layer in layers))


def conv_relu_pool(conv: Conv2d, relu: ReLU, pool: MaxPool2d, x):
    """``pool(relu(conv(x)))`` by one fused kernel, with the layers' own input checks."""
    conv._check(x)
    OH, OW = window(x.shape, conv.kernel_size, conv.stride, conv.padding)[-2:]
    (KH, KW), (PH, PW) = pool.kernel_size, pool.padding
    if OH + 2 * PH < KH or OW + 2 * PW < KW:
        return pool(relu(conv(x)))  # the pooling window does not fit: MaxPool2d says so
    for layer in (conv, relu, pool):
        layer._forget()  # what an earlier forward kept is stale now, as after any forward under no_grad
    bias = None if conv.bias is None else conv.bias.data
    return F.conv2d_relu_maxpool2d(x, conv.weight.data, bias, conv.stride, conv.padding,
                                   pool.kernel_size, pool.stride, pool.padding)
