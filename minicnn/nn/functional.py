"""The math of the layers as functions: convolution, max-pooling, ReLU, softmax.

Notation
--------
N   batch size                   C   input channels        OC  output channels
H   input height                 W   input width
KH  kernel height                KW  kernel width
SH  stride along H               SW  stride along W
PH  zero padding along H         PW  zero padding along W
OH  output height = (H + 2*PH - KH) // SH + 1
OW  output width  = (W + 2*PW - KW) // SW + 1
K   = C*KH*KW, one unfolded window;   P = OH*OW, the windows of one image

Every function is written once, with the array module of its arguments
(NumPy or CuPy), and is the reference the faster backends are tested
against.  Those marked :func:`minicnn.backend.kernel` (im2col, col2im,
max-pooling, ReLU, the axis swap, the whole convolution forward and
backward, and the fused convolution -> ReLU (-> max-pool) of training and
inference) may be replaced by a backend's override; the rest is built from
them and matrix products.  The layers in
:mod:`minicnn.nn` call these and keep what the backward pass needs.

Docs: docs/convolution.md, docs/layers.md, docs/losses.md
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module, kernel
from minicnn.nn.unfold import col2im, im2col, output_size, transpose01, window

__all__ = ["col2im", "conv2d", "conv2d_backward", "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_maxpool2d",
           "conv2d_relu_maxpool2d_backward", "conv2d_relu_maxpool2d_train", "im2col", "log_softmax", "log_softmax_backward",
           "maxpool2d_backward", "maxpool2d_forward", "output_size", "relu_backward", "relu_forward",
           "softmax", "softmax_backward", "transpose01", "window"]


@kernel
def conv2d(x, weight, bias, stride, padding):
    """``y = weight * x + bias`` by im2col: returns ``(y, saved)``, ``saved`` being what
    :func:`conv2d_backward` needs (here ``col``; a backend's override may keep less, such as ``x``).

        col  = im2col(x)                        (N, K, P)
        y[n] = w_mat @ col[n] + bias            w_mat = weight.reshape(OC, K)  ->  (N, OC, P)

    x (N, C, H, W), weight (OC, C, KH, KW), bias (OC,) or None; y (N, OC, OH, OW).
    The whole batch is one product ``w_mat @ cols`` with cols = col as (K, N*P)
    (no copy: im2col stores col K-major), swapped to (N, OC, P) with b added.
    """
    N, OC, (KH, KW) = x.shape[0], weight.shape[0], weight.shape[2:]
    col = im2col(x, (KH, KW), stride, padding)                                   # (N, K, P)
    K, P = col.shape[1:]
    y = weight.reshape(OC, K) @ col.transpose(1, 0, 2).reshape(K, N * P)         # (OC, N*P)
    y = transpose01(y.reshape(OC, N, P), bias)                                   # (N, OC, P)
    OH, OW = window(x.shape, (KH, KW), stride, padding)[-2:]
    return y.reshape(N, OC, OH, OW), col


@kernel
def conv2d_backward(grad_output, col, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d` from ``dY`` (N, OC, OH, OW) and the forward's ``col``.

        dweight = dY @ cols^T           (OC, K) -> (OC, C, KH, KW); one product sums over n and p
        dbias   = sum over n and p of dY
        dx      = col2im(w_mat^T @ dY)  the adjoint of im2col adds each column's gradient onto its window

    with dY as (OC, N*P) and cols as (K, N*P), the batch side by side.  With
    ``input_grad=False`` (the network's input needs no gradient) dx is ``None``,
    and neither its product nor col2im is computed.
    """
    if col.ndim == 4:  # a backend's conv2d kept the input x instead of its columns
        col = im2col(col, weight.shape[2:], stride, padding)
    (N, K, P), OC = col.shape, weight.shape[0]
    dy = transpose01(grad_output.reshape(N, OC, P)).reshape(OC, N * P)           # (OC, N*P)
    cols = col.transpose(1, 0, 2).reshape(K, N * P)                              # (K, N*P)
    dweight = (dy @ cols.T).reshape(weight.shape)
    if not input_grad:
        return None, dweight, dy.sum(axis=1)
    dcol = (weight.reshape(OC, K).T @ dy).reshape(K, N, P).transpose(1, 0, 2)    # (N, K, P)
    return col2im(dcol, x_shape, weight.shape[2:], stride, padding), dweight, dy.sum(axis=1)


@kernel
def maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True):
    """Max over every KH x KW window; the border is padded with -inf, so padding never wins.

        y[n, c, oh, ow] = max over (i, j) of x_pad[n, c, oh*SH + i, ow*SW + j]

    x      : (N, C, H, W)
    out    : (N, C, OH, OW)
    argmax : (N*C, OH*OW) int, the flat window offset ``i*KW + j`` of the
             maximum (the first one on ties, as in PyTorch): all the backward
             pass needs.  ``None`` with ``with_argmax=False`` (inference, when
             no backward follows; faster kernels then skip it).
    """
    N, C, H, W = x.shape
    OH, OW = window(x.shape, kernel_size, stride, padding)[-2:]
    # Pool each channel independently: treat the N*C planes as a batch of
    # one-channel images, so each column of im2col is one window.
    col = im2col(x.reshape(N * C, 1, H, W), kernel_size, stride, padding, pad_value=-np.inf)
    argmax = col.argmax(axis=1)                                                  # (N*C, P)
    out = get_array_module(x).take_along_axis(col, argmax[:, None, :], axis=1)
    return out.reshape(N, C, OH, OW), (argmax if with_argmax else None)


@kernel
def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """Route each output gradient to the input element that won its window.

        dx = col2im(dcol)   with dcol[n*c, argmax, p] = dy[n, c, p] and 0 elsewhere

    The max is locally the identity on the winner and constant in the others.
    grad_output (N, C, OH, OW), argmax (N*C, OH*OW) from :func:`maxpool2d_forward`;
    out (N, C, H, W), where an input that wins several overlapping windows
    receives the sum of their gradients.
    """
    N, C, H, W = x_shape
    KH, KW = kernel_size
    P = argmax.shape[1]
    xp = get_array_module(grad_output)
    dcol = xp.zeros((N * C, KH * KW, P), dtype=grad_output.dtype)
    xp.put_along_axis(dcol, argmax[:, None, :], grad_output.reshape(N * C, 1, P), axis=1)
    return col2im(dcol, (N * C, 1, H, W), kernel_size, stride, padding).reshape(N, C, H, W)


@kernel
def conv2d_relu_maxpool2d(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Inference's ``maxpool2d(relu(conv2d(x)))`` in one call; nothing is kept for a backward pass.

        z = maxpool2d(relu(conv2d(x) + bias))   (N, C, H, W) -> (N, OC, ZH, ZW)

    This reference is the three functions one after the other.  A backend may
    fuse them: ReLU is monotone, so it commutes with the max of a window
    (``max(relu(a), relu(b)) = relu(max(a, b))``) and so does adding the
    bias, and a fused kernel can pool each product as it swaps it into
    place, never writing the full-size convolution output.
    """
    y, _ = conv2d(x, weight, bias, stride, padding)
    z, _ = maxpool2d_forward(relu_forward(y), pool_kernel, pool_stride, pool_padding, with_argmax=False)
    return z


@kernel
def conv2d_relu(x, weight, bias, stride, padding):
    """Training's ``relu(conv2d(x))`` in one call: returns ``(y, saved)`` as :func:`conv2d` does,
    y = max(conv2d(x) + bias, 0).  This reference is the two functions one after the other; a
    backend may clip each output as it stores it, so ReLU makes no pass over y of its own."""
    y, saved = conv2d(x, weight, bias, stride, padding)
    return relu_forward(y), saved


@kernel
def conv2d_relu_backward(grad_output, y, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu`, from its output ``y`` and its ``saved``:

        dY' = dY * [y > 0]                      ReLU's backward (see relu_backward)
        (dx, dweight, dbias) = conv2d_backward(dY', saved, ...)

    A backend may apply the mask as its convolution backward reads dY."""
    return conv2d_backward(relu_backward(grad_output, y), saved, weight, x_shape, stride, padding, input_grad)


@kernel
def conv2d_relu_maxpool2d_train(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Training's ``maxpool2d(relu(conv2d(x)))`` in one call: returns ``(z, saved, argmax)``, ``saved``
    as :func:`conv2d` keeps it and ``argmax`` as :func:`maxpool2d_forward` gives it.  Neither the
    convolution's output nor ReLU's is kept: backward needs only z and argmax (below).  This reference
    is the three functions one after the other; a backend may pool each output as it stores it."""
    y, saved = conv2d(x, weight, bias, stride, padding)
    z, argmax = maxpool2d_forward(relu_forward(y), pool_kernel, pool_stride, pool_padding)
    return z, saved, argmax


@kernel
def conv2d_relu_maxpool2d_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding,
                                   pool_kernel, pool_stride, pool_padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu_maxpool2d_train`:

        dR = maxpool2d_backward(dZ * [z > 0], argmax)     max-pool's and ReLU's backward
        (dx, dweight, dbias) = conv2d_backward(dR, saved, ...)

    ReLU's mask [r > 0] is needed only where max-pooling sends a gradient, at each window's
    argmax, and there r is the window's maximum z: so z replaces ReLU's output."""
    OH, OW = window(x_shape, weight.shape[2:], stride, padding)[-2:]
    r_shape = (x_shape[0], weight.shape[0], OH, OW)
    dr = maxpool2d_backward(grad_output * (z > 0), argmax, r_shape, pool_kernel, pool_stride, pool_padding)
    return conv2d_backward(dr, saved, weight, x_shape, stride, padding, input_grad)


@kernel
def relu_forward(x):
    """``max(x, 0)`` element by element, in x's dtype (NaN stays NaN)."""
    return get_array_module(x).maximum(x, x.dtype.type(0))  # a zero of x's dtype keeps float32 float32


@kernel
def relu_backward(grad_output, y):
    """``grad_output * [y > 0]``: the gradient passes where ReLU's output ``y`` is positive.

    ``y > 0`` exactly where ``x > 0``, so the output is all the backward pass
    needs (the subgradient at exactly 0 is taken to be 0, as in PyTorch).
    Both arrays have one shape; the result has grad_output's dtype.
    """
    return grad_output * (y > 0)


def log_softmax(x, dim):
    """``y_i = x_i - m - log sum_j exp(x_j - m)`` along ``dim``, with ``m = max_j x_j`` so exp never overflows."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output, y, dim):
    """``dx_i = dy_i - softmax(x)_i * sum_j dy_j``, with ``softmax(x) = exp(y)`` from the forward output ``y``."""
    return grad_output - get_array_module(y).exp(y) * grad_output.sum(axis=dim, keepdims=True)


def softmax(x, dim):
    """``s_i = exp(x_i - m) / sum_j exp(x_j - m)`` along ``dim``, ``m = max_j x_j``."""
    e = get_array_module(x).exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(grad_output, s, dim):
    """``dx_i = s_i * (dy_i - sum_j dy_j s_j)``, from the forward output ``s``."""
    return s * (grad_output - (grad_output * s).sum(axis=dim, keepdims=True))
