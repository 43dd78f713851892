"""Fused layer runs of a Sequential: Conv2d -> ReLU (training) and Conv2d -> ReLU -> MaxPool2d (inference).

Training, gradients on: a Conv2d followed by a ReLU is one step,

    y = relu(conv2d(x))                  one call of F.conv2d_relu
    dx = conv2d_backward(dy * [y > 0])   one call of F.conv2d_relu_backward

whose references are the layers' functions one after the other.  The Numba
backend clips the convolution's output as it stores it and applies ReLU's mask
as the convolution's backward reads dY, so ReLU makes no pass of its own over
the largest arrays of the network (conv1's output in MnistCNN: 6.4 MB at
batch 64, read and written once forward and twice backward by the ReLU layer).

Inference, under :func:`minicnn.no_grad`: nothing is kept for a backward pass,
so the convolution's output and ReLU's need not exist as arrays of their own:

    z = maxpool2d(relu(conv2d(x)))       one call of F.conv2d_relu_maxpool2d

The Numba backend's override pools each plane of the product as it stores it,
and never writes the full-size output (for MnistCNN's conv1 at a block of 128
images, 12.8 MB that ReLU would read and write again and max-pooling read once
more).  :meth:`minicnn.nn.Sequential.forward` takes these paths for every such
run; every backend gives the numbers of the layers run one by one.

Docs: docs/backends.md#fusion
"""
from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn._validate import check_grad
from minicnn.nn.activation import ReLU
from minicnn.nn.conv import Conv2d
from minicnn.nn.pooling import MaxPool2d
from minicnn.nn.unfold import window

#: The layer types of the fused runs, exactly (a subclass may compute something else).
RUN = (Conv2d, ReLU, MaxPool2d)
TRAINING_RUN = (Conv2d, ReLU)


def fusable(layers, kinds=RUN) -> bool:
    """Whether ``layers`` (a slice of a Sequential's children) are exactly of the types ``kinds``, none
    of them with a ``forward`` or ``backward`` of its own: a layer whose method is wrapped (a hook,
    such as :func:`minicnn.summary.summary`'s shape recorder, or a test's counter) runs as itself."""
    return (len(layers) == len(kinds) and all(type(layer) is kind for layer, kind in zip(layers, kinds))
            and not any("forward" in vars(layer) or "backward" in vars(layer) for layer in layers))


def conv_relu_pool(conv: Conv2d, relu: ReLU, pool: MaxPool2d, x):
    """Inference's ``pool(relu(conv(x)))`` by one fused kernel, with the layers' own input checks."""
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


class ConvReLU:
    """Training's Conv2d -> ReLU as one step of a Sequential's forward and backward passes.

    It keeps what backward needs (the convolution's saved array, the input's shape and the clipped
    output y) itself; the two layers keep nothing, so calling either one's backward alone after this
    forward is reported as a backward before forward."""

    def __init__(self, conv: Conv2d, relu: ReLU):
        self.conv, self.relu = conv, relu
        self._saved = None

    def __call__(self, x):
        conv = self.conv
        conv._check(x)
        bias = None if conv.bias is None else conv.bias.data
        y, saved = F.conv2d_relu(x, conv.weight.data, bias, conv.stride, conv.padding)
        conv._forget()
        self.relu._forget()
        self._saved = (saved, tuple(x.shape), y)
        return y

    def backward(self, grad_output):
        return self._backward(grad_output, input_grad=True)

    def parameter_backward(self, grad_output) -> None:
        self._backward(grad_output, input_grad=False)  # the network's input: no dX

    def _backward(self, grad_output, input_grad):
        conv = self.conv
        if self._saved is None:
            raise RuntimeError(f"{conv!r} -> ReLU: backward called before forward")
        saved, x_shape, y = self._saved
        check_grad(grad_output, y.shape, f"{conv!r} -> ReLU")
        dx, dweight, dbias = F.conv2d_relu_backward(grad_output, y, saved, conv.weight.data, x_shape,
                                                    conv.stride, conv.padding, input_grad=input_grad)
        conv.weight.accumulate_grad(dweight)
        if conv.bias is not None:
            conv.bias.accumulate_grad(dbias)
        return dx
