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
backward) may be replaced by a backend's override; the rest is built from
them and matrix products.  The layers in :mod:`minicnn.nn` call these and
keep what the backward pass needs; the fused layers' functions (a
convolution, its ReLU and its max-pool in one call) are beside their modules
in :mod:`minicnn.nn.fused`.

Docs: docs/convolution.md, docs/layers.md, docs/losses.md
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module, kernel
from minicnn.nn.unfold import col2im, im2col, output_size, transpose01, window

__all__ = ["col2im", "conv2d", "conv2d_backward", "im2col", "log_softmax", "log_softmax_backward",
           "maxpool2d_backward", "maxpool2d_forward", "output_size", "relu_backward", "relu_forward",
           "softmax", "softmax_backward", "transpose01", "window"]


@kernel
def conv2d(x, weight, bias, stride, padding):
    """``y = weight * x + bias`` by im2col: returns ``(y, saved)``, ``saved`` being what
    :func:`conv2d_backward` needs (here ``col``; a backend's override keeps what its own backward reads, such as ``x``).

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
