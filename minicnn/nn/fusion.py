"""Fused layer runs of a Sequential: Conv2d -> ReLU (-> MaxPool2d) in training, Conv2d -> ReLU -> MaxPool2d
in inference.

Training, gradients on: a Conv2d -> ReLU -> MaxPool2d run is one step, and so is a
Conv2d -> ReLU pair that no MaxPool2d follows,

    z, argmax = maxpool2d(relu(conv2d(x)))              one call of F.conv2d_relu_maxpool2d_train
    dx = conv2d_backward(unpool(dz * [z > 0], argmax))  one call of F.conv2d_relu_maxpool2d_backward

    y = relu(conv2d(x))                                 one call of F.conv2d_relu
    dx = conv2d_backward(dy * [y > 0])                  one call of F.conv2d_relu_backward

whose references are the layers' functions one after the other.  ReLU's mask is
needed only where max-pooling sends a gradient, at each window's maximum, which
is z: so the run keeps z and argmax, and neither the convolution's output nor
ReLU's.  The Numba backend pools, clips and notes the argmax as the convolution
stores its product, and builds dY from dz in one pass as the convolution's
backward reads it, so ReLU and max-pooling make no passes of their own over the
largest arrays of the network (conv1's output in MnistCNN: 6.4 MB at batch 64).

Inference, under :func:`minicnn.no_grad`: nothing is kept for a backward pass,

    z = maxpool2d(relu(conv2d(x)))                      one call of F.conv2d_relu_maxpool2d

and the Numba backend never writes the full-size output either (for MnistCNN's
conv1 at a block of 128 images, 12.8 MB that ReLU would read and write again and
max-pooling read once more).  :meth:`minicnn.nn.Sequential.forward` takes these
paths for every such run; every backend gives the numbers of the layers run one
by one.

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
PAIR = (Conv2d, ReLU)


def fusable(layers, kinds=RUN) -> bool:
    """Whether ``layers`` (a slice of a Sequential's children) are exactly of the types ``kinds``, none
    of them with a ``forward`` or ``backward`` of its own: a layer whose method is wrapped (a hook,
    such as :func:`minicnn.summary.summary`'s shape recorder, or a test's counter) runs as itself."""
    return (len(layers) == len(kinds) and all(type(layer) is kind for layer, kind in zip(layers, kinds))
            and not any("forward" in vars(layer) or "backward" in vars(layer) for layer in layers))


def _pool_fits(conv: Conv2d, pool: MaxPool2d, x) -> bool:
    """Whether the pooling window fits the convolution's output (if not, MaxPool2d says so)."""
    OH, OW = window(x.shape, conv.kernel_size, conv.stride, conv.padding)[-2:]
    (KH, KW), (PH, PW) = pool.kernel_size, pool.padding
    return OH + 2 * PH >= KH and OW + 2 * PW >= KW


def conv_relu_pool(conv: Conv2d, relu: ReLU, pool: MaxPool2d, x):
    """Inference's ``pool(relu(conv(x)))`` by one fused kernel, with the layers' own input checks."""
    conv._check(x)
    if not _pool_fits(conv, pool, x):
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


class ConvReLUPool(ConvReLU):
    """Training's Conv2d -> ReLU -> MaxPool2d as one step: it keeps the convolution's saved array, the
    input's shape, the pooled output z and its argmax, and the three layers keep nothing."""

    def __init__(self, conv: Conv2d, relu: ReLU, pool: MaxPool2d):
        super().__init__(conv, relu)
        self.pool = pool

    def __call__(self, x):
        conv, pool = self.conv, self.pool
        conv._check(x)
        if not _pool_fits(conv, pool, x):
            return pool(self.relu(conv(x)))  # MaxPool2d reports the window that does not fit
        bias = None if conv.bias is None else conv.bias.data
        z, saved, argmax = F.conv2d_relu_maxpool2d_train(x, conv.weight.data, bias, conv.stride, conv.padding,
                                                         pool.kernel_size, pool.stride, pool.padding)
        for layer in (conv, self.relu, pool):
            layer._forget()
        self._saved = (saved, tuple(x.shape), z, argmax)
        return z

    def _backward(self, grad_output, input_grad):
        conv, pool = self.conv, self.pool
        label = f"{conv!r} -> ReLU -> {pool!r}"
        if self._saved is None:
            raise RuntimeError(f"{label}: backward called before forward")
        saved, x_shape, z, argmax = self._saved
        check_grad(grad_output, z.shape, label)
        dx, dweight, dbias = F.conv2d_relu_maxpool2d_backward(
            grad_output, z, argmax, saved, conv.weight.data, x_shape, conv.stride, conv.padding,
            pool.kernel_size, pool.stride, pool.padding, input_grad=input_grad)
        conv.weight.accumulate_grad(dweight)
        if conv.bias is not None:
            conv.bias.accumulate_grad(dbias)
        return dx
