"""Fused layers: a Conv2d -> ReLU pair and a Conv2d -> ReLU -> MaxPool2d run as one module each.

A network is written with its layers one by one, and that is what ``model(x)``
runs.  :func:`minicnn.nn.fuse` (minicnn/nn/fusion.py) is the explicit step that
puts one of these modules in the place of each such run, so that a backend with
fused kernels (Numba) can compute it in one pass; the fused module prints as
itself and holds the convolution's own Parameter objects under the
convolution's name, so the state dict is the same.

ConvReLU, in training (gradients on) and inference:

    y = relu(conv2d(x))                                 one call of conv2d_relu
    dx = conv2d_backward(dy * [y > 0])                  one call of conv2d_relu_backward

ConvReLUMaxPool2d, in training:

    z, argmax = maxpool2d(relu(conv2d(x)))              one call of conv2d_relu_maxpool2d_train
    dx = conv2d_backward(unpool(dz * [z > 0], argmax))  one call of conv2d_relu_maxpool2d_backward

ReLU's mask is needed only where max-pooling sends a gradient, at each window's
maximum, which is z: so the run keeps z and argmax, and neither the
convolution's output nor ReLU's.  In inference (under :func:`minicnn.no_grad`)
nothing is kept, and one call of ``conv2d_relu_maxpool2d`` computes z.

The functions below are the references: the layers' functions one after the
other, so every backend gives the numbers of the layers run one by one.  The
Numba backend overrides them (minicnn/backend/numba_conv.py): it pools, clips
and notes the argmax as the convolution stores its product, and builds dY from
dz in one pass as the convolution's backward reads it, so ReLU and max-pooling
make no passes of their own over the largest arrays of the network.

Docs: docs/backends.md#fusion
"""
from __future__ import annotations

from minicnn.backend import kernel
from minicnn.nn import functional as F
from minicnn.nn._validate import check_window
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.module import Module
from minicnn.nn.unfold import window

__all__ = ["ConvReLU", "ConvReLUMaxPool2d", "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_maxpool2d",
           "conv2d_relu_maxpool2d_backward", "conv2d_relu_maxpool2d_train"]


# --- the references: the layers' functions one after the other ----------------------------------

@kernel
def conv2d_relu(x, weight, bias, stride, padding):
    """``relu(conv2d(x))``: returns ``(y, saved)`` as :func:`F.conv2d` does, y = max(conv2d(x) + bias, 0)."""
    y, saved = F.conv2d(x, weight, bias, stride, padding)
    return F.relu_forward(y), saved


@kernel
def conv2d_relu_backward(grad_output, y, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu`, from its output ``y`` and its ``saved``:

        dY' = dY * [y > 0]                      ReLU's backward
        (dx, dweight, dbias) = conv2d_backward(dY', saved, ...)"""
    return F.conv2d_backward(F.relu_backward(grad_output, y), saved, weight, x_shape, stride, padding, input_grad)


@kernel
def conv2d_relu_maxpool2d(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Inference's ``maxpool2d(relu(conv2d(x)))``; nothing is kept for a backward pass.

    ReLU is monotone, so it commutes with the max of a window (``max(relu(a), relu(b)) =
    relu(max(a, b))``), and so does adding the bias: a fused kernel can pool each product as it
    stores it, never writing the full-size convolution output."""
    y, _ = F.conv2d(x, weight, bias, stride, padding)
    z, _ = F.maxpool2d_forward(F.relu_forward(y), pool_kernel, pool_stride, pool_padding, with_argmax=False)
    return z


@kernel
def conv2d_relu_maxpool2d_train(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Training's ``maxpool2d(relu(conv2d(x)))``: ``(z, saved, argmax)``, ``saved`` as :func:`F.conv2d`
    keeps it and ``argmax`` as :func:`F.maxpool2d_forward` gives it; neither the convolution's output
    nor ReLU's is kept."""
    y, saved = F.conv2d(x, weight, bias, stride, padding)
    z, argmax = F.maxpool2d_forward(F.relu_forward(y), pool_kernel, pool_stride, pool_padding)
    return z, saved, argmax


@kernel
def conv2d_relu_maxpool2d_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding,
                                   pool_kernel, pool_stride, pool_padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu_maxpool2d_train`:

        dR = maxpool2d_backward(dZ * [z > 0], argmax)     max-pool's and ReLU's backward
        (dx, dweight, dbias) = conv2d_backward(dR, saved, ...)

    ReLU's mask [r > 0] is needed only at each window's argmax, and there r is z."""
    OH, OW = window(x_shape, weight.shape[2:], stride, padding)[-2:]
    r_shape = (x_shape[0], weight.shape[0], OH, OW)
    dr = F.maxpool2d_backward(grad_output * (z > 0), argmax, r_shape, pool_kernel, pool_stride, pool_padding)
    return F.conv2d_backward(dr, saved, weight, x_shape, stride, padding, input_grad)


# --- the modules ----------------------------------------------------------------------------------

class ConvReLU(Module):
    """A Conv2d and the ReLU after it, as one module: the same Parameter objects as ``conv``
    (``weight``, ``bias``), so the same state-dict keys under the convolution's name.

    ``layers`` are the modules it stands for, in order, and ``names`` their names in the
    Sequential they came from (``("conv1", "relu1")``), for messages and pictures."""

    def __init__(self, conv, relu, names=("conv", "relu")):
        super().__init__()
        object.__setattr__(self, "conv", conv)  # not a child: the parameters are this module's own
        object.__setattr__(self, "layers", (conv, relu))
        object.__setattr__(self, "names", tuple(names))
        self.weight = conv.weight
        if conv.bias is not None:
            self.bias = conv.bias
        else:
            object.__setattr__(self, "bias", None)

    def _bias(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        conv = self.conv
        conv._check(x)
        y, saved = conv2d_relu(x, self.weight.data, self._bias(), conv.stride, conv.padding)
        self.save_for_backward(saved, tuple(x.shape), y, output=y)
        return y

    def backward(self, grad_output):
        return self._backward(grad_output, input_grad=True)

    def parameter_backward(self, grad_output) -> None:
        self._backward(grad_output, input_grad=False)  # the network's input: no dX

    def _backward(self, grad_output, input_grad):
        conv = self.conv
        saved, x_shape, y = self.saved_tensors(grad_output)
        dx, dweight, dbias = conv2d_relu_backward(grad_output, y, saved, self.weight.data, x_shape,
                                                  conv.stride, conv.padding, input_grad=input_grad)
        self._accumulate(dweight, dbias)
        return dx

    def _accumulate(self, dweight, dbias) -> None:
        self.weight.accumulate_grad(dweight)
        if self.bias is not None:
            self.bias.accumulate_grad(dbias)

    def extra_repr(self) -> str:
        return " -> ".join(repr(layer) for layer in self.layers)


class ConvReLUMaxPool2d(ConvReLU):
    """A Conv2d, its ReLU and the MaxPool2d after them, as one module (see :class:`ConvReLU`)."""

    def __init__(self, conv, relu, pool, names=("conv", "relu", "pool")):
        super().__init__(conv, relu, names)
        object.__setattr__(self, "pool", pool)
        object.__setattr__(self, "layers", (conv, relu, pool))

    def _pool_args(self):
        pool = self.pool
        return pool.kernel_size, pool.stride, pool.padding

    def forward(self, x):
        conv = self.conv
        conv._check(x)
        y_shape = (len(x), conv.out_channels, *window(x.shape, conv.kernel_size, conv.stride, conv.padding)[-2:])
        check_window(y_shape, self.pool.kernel_size, self.pool.padding, repr(self.pool), "window")
        args = (x, self.weight.data, self._bias(), conv.stride, conv.padding, *self._pool_args())
        if not is_grad_enabled():
            self._forget()
            return conv2d_relu_maxpool2d(*args)
        z, saved, argmax = conv2d_relu_maxpool2d_train(*args)
        self.save_for_backward(saved, tuple(x.shape), z, argmax, output=z)
        return z

    def _backward(self, grad_output, input_grad):
        conv = self.conv
        saved, x_shape, z, argmax = self.saved_tensors(grad_output)
        dx, dweight, dbias = conv2d_relu_maxpool2d_backward(
            grad_output, z, argmax, saved, self.weight.data, x_shape, conv.stride, conv.padding,
            *self._pool_args(), input_grad=input_grad)
        self._accumulate(dweight, dbias)
        return dx
