import numpy as np


def dropout_forward(x, p, generator, training=True):
    if not training:
        return x, None
    keep = generator.random(x.shape) < 1 - p
    mask = keep.astype(x.dtype) / x.dtype.type(1 - p)
    return x * mask, mask


def dropout_backward(grad_output, mask):
    if mask is None:
        return grad_output
    return grad_output * mask
