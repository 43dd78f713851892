"""Reference kernels in plain NumPy: the math of convolution and pooling.

Every other backend's kernels are tested against these. They favour clarity;
each loops only over the kernel window (KH * KW iterations) and lets NumPy do
the rest with strided slices.

Notation
--------
N   batch size                   C   input channels
H   input height                 W   input width
KH  kernel height                KW  kernel width
SH  stride along H               SW  stride along W
PH  zero padding along H         PW  zero padding along W
OH  output height = (H + 2*PH - KH) // SH + 1
OW  output width  = (W + 2*PW - KW) // SW + 1
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module  # NumPy or CuPy: relu and adam_update serve both


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Length of a convolution output along one axis: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """Unfold every KH x KW window of ``x`` into a column.

    x    : (N, C, H, W)
    out  : (N, C*KH*KW, OH*OW); row ``(c, i, j)`` holds input channel ``c`` at
           window offset ``(i, j)``, column ``(oh, ow)`` is the window whose
           top-left corner sits at ``(oh*SH - PH, ow*SW - PW)``.

    With this layout a convolution is one matrix product per image,
    ``y[n] = W.reshape(OC, C*KH*KW) @ col[n]``.  ``pad_value`` is what the
    border holds: 0 for convolution, -inf for max-pooling.

    The array is stored K-major (a (K, N, P) array seen through a transposed
    view), so ``col.transpose(1, 0, 2).reshape(K, N*P)``, the whole batch as
    one matrix, costs no copy.
    """
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    img = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value)
    col = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            # Window offset (i, j) of every output position at once.
            col[:, i, j] = img[:, :, i:i_end:SH, j:j_end:SW].transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N, OH * OW).transpose(1, 0, 2)


def col2im(col, x_shape, kernel_size, stride, padding):
    """The adjoint of :func:`im2col`: add every column back onto its window.

    col     : (N, C*KH*KW, OH*OW), as :func:`im2col` lays it out
    x_shape : (N, C, H, W)
    out     : (N, C, H, W) where overlapping windows have been *summed*; the
              padded border is cut away.

    ``<im2col(x), col> == <x, col2im(col)>`` for all x and col, which is why
    the backward pass of a convolution w.r.t. its input is col2im of
    ``W^T @ dY``.
    """
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    col = col.reshape(N, C, KH, KW, OH, OW)
    img = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            img[:, :, i:i_end:SH, j:j_end:SW] += col[:, :, i, j]
    return img[:, :, PH:PH + H, PW:PW + W]


def maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True):
    """Max over every KH x KW window; the border is padded with -inf.

    x      : (N, C, H, W)
    out    : (N, C, OH, OW)
    argmax : (N*C, OH*OW) int, the flat window offset ``i*KW + j`` of the
             maximum (the first one on ties, as in PyTorch) - all the
             backward pass needs.  ``None`` with ``with_argmax=False``
             (inference, when no backward follows; faster kernels then skip it).
    """
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    # Pool each channel independently: treat the N*C planes as a batch of
    # one-channel images, so each column of im2col is one window.
    col = im2col(x.reshape(N * C, 1, H, W), kernel_size, stride, padding, pad_value=-np.inf)
    argmax = col.argmax(axis=1)  # (N*C, OH*OW)
    out = np.take_along_axis(col, argmax[:, None, :], axis=1)
    return out.reshape(N, C, OH, OW), (argmax if with_argmax else None)


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """Route each output gradient to the input element that won its window.

    grad_output : (N, C, OH, OW)
    argmax      : (N*C, OH*OW) from :func:`maxpool2d_forward`
    out         : (N, C, H, W); an input that wins several overlapping windows
                  receives the sum of their gradients.
    """
    N, C, H, W = x_shape
    (KH, KW) = kernel_size
    P = argmax.shape[1]
    dcol = np.zeros((N * C, KH * KW, P), dtype=grad_output.dtype)
    np.put_along_axis(dcol, argmax[:, None, :], grad_output.reshape(N * C, 1, P), axis=1)
    dx = col2im(dcol, (N * C, 1, H, W), kernel_size, stride, padding)
    return dx.reshape(N, C, H, W)


def transpose01(a, bias=None):
    """Swap the first two axes into a new C-contiguous array, adding ``bias`` on the way.

    a    : (A, B, P)
    bias : (A,) or None
    out  : (B, A, P) with ``out[b, i, p] = a[i, b, p] + bias[i]`` (no bias: just
           the transpose).

    Conv2d uses it in both directions: its forward pass turns the product
    ``W_mat @ cols`` of shape (OC, N, P) into the output (N, OC, P) and adds the
    bias; its backward pass turns ``dY`` of shape (N, OC, P) into (OC, N, P).
    """
    out = np.ascontiguousarray(a.transpose(1, 0, 2))
    if bias is not None:
        out += bias[:, None]
    return out


def relu_forward(x):
    """``max(x, 0)`` element by element, in x's dtype (NaN stays NaN)."""
    return get_array_module(x).maximum(x, x.dtype.type(0))  # a zero of x's dtype keeps float32 float32


def relu_backward(grad_output, y):
    """``grad_output * [y > 0]``: the gradient passes where ReLU's output ``y`` is positive.

    ``y > 0`` exactly where ``x > 0``, so the output is all the backward pass
    needs.  Both arrays have one shape; the result has grad_output's dtype.
    """
    return grad_output * (y > 0)

def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                eps, correction1, correction2):
    """One Adam step, in place on ``param``, ``exp_avg`` (m) and ``exp_avg_sq`` (v).

    m     <- beta1 * m + (1 - beta1) * g
    v     <- beta2 * v + (1 - beta2) * g^2
    param <- param - lr * (m / correction1) / (sqrt(v / correction2) + eps)

    with ``correction1 = 1 - beta1^t`` and ``correction2 = 1 - beta2^t``; every
    scalar already has ``param``'s dtype (see :class:`minicnn.optim.Adam`,
    which derives the rule).  The arrays share one shape.  Written with
    in-place operators only (and the array module's ``sqrt``), so the CuPy
    backend runs this same code on the GPU.
    """
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * grad * grad
    m_hat = exp_avg / correction1
    v_hat = exp_avg_sq / correction2
    param -= lr * m_hat / (get_array_module(v_hat).sqrt(v_hat) + eps)


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, one_minus_beta1, beta2, one_minus_beta2,
                     eps, correction1, correction2, weight_decay):
    """:func:`adam_update` for lists of tensors, ``weight_decay * param`` added to each gradient first.

    The reference for the fused kernels that update a whole parameter group in
    one launch (:func:`minicnn.backend.cupy_kernels.adam_update_many`).
    """
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        if weight_decay != 0:
            grad = grad + weight_decay * param
        adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
                    correction1, correction2)
