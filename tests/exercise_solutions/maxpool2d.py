import numpy as np

from col2im import col2im
from im2col import im2col


def maxpool2d_forward(x, kernel_size, stride, padding):
    N, C, H, W = x.shape
    col = im2col(x.reshape(N * C, 1, H, W), kernel_size, stride, padding, pad_value=-np.inf)
    argmax = col.argmax(axis=1)
    y = np.take_along_axis(col, argmax[:, None, :], axis=1)
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W + 2 * PW - KW) // SW + 1
    return y.reshape(N, C, OH, OW), argmax


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    N, C, H, W = x_shape
    KH, KW = kernel_size
    P = argmax.shape[1]
    dcol = np.zeros((N * C, KH * KW, P), dtype=grad_output.dtype)
    np.put_along_axis(dcol, argmax[:, None, :], grad_output.reshape(N * C, 1, P), axis=1)
    return col2im(dcol, (N * C, 1, H, W), kernel_size, stride, padding).reshape(N, C, H, W)
